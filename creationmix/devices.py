"""Device and precision choice: CUDA (fp16) > MPS > CPU (fp32), overridable."""
from __future__ import annotations

import torch

from .errors import InvalidParameter

PRECISIONS = {"fp16": torch.float16, "fp32": torch.float32, "bf16": torch.bfloat16}


def pick_device(name: str | None = None) -> torch.device:
    if name in (None, "", "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(name)
    except RuntimeError as e:
        raise InvalidParameter(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InvalidParameter("device cuda requested but no CUDA GPU is available")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise InvalidParameter("device mps requested but MPS is not available")
    if dev.type not in ("cpu", "cuda", "mps"):
        raise InvalidParameter(f"unsupported device {name!r}; use auto, cpu, cuda, cuda:N or mps")
    return dev


def pick_dtype(precision: str | None, device: torch.device) -> torch.dtype:
    if precision in (None, "", "auto"):
        # fp16 on CPU is slow and partly unsupported; A1111 runs CPU in fp32 too.
        return torch.float16 if device.type == "cuda" else torch.float32
    if precision not in PRECISIONS:
        raise InvalidParameter(f"unknown precision {precision!r}; valid: auto, {', '.join(PRECISIONS)}")
    return PRECISIONS[precision]
