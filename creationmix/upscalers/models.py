"""Load an upscaler model file (.pth/.pt read with weights_only, .safetensors) into a ready module.

spandrel (what A1111 >= 1.8 and ComfyUI use) is used when it can be imported: it knows every architecture.
Where it cannot (it imports torchvision, which fails with some torch builds), our own ESRGAN/RRDB and Real-ESRGAN
Compact definitions read the same state dicts; other architectures then get an error naming spandrel.
"""
from __future__ import annotations

import functools
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import ModelError
from .archs import UnsupportedArchitecture, build_from_state_dict

log = logging.getLogger(__name__)

# spandrel's canonicalize_state_dict unwraps the same containers (Real-ESRGAN files keep "params_ema").
_WRAPPERS = ("model_state_dict", "state_dict", "params_ema", "params-ema", "params", "model", "net")


@dataclass
class UpscalerModel:
    module: torch.nn.Module
    arch: str
    scale: int
    supports_half: bool
    path: Path
    via: str  # "spandrel" or "builtin"

    @property
    def dtype(self) -> torch.dtype:
        return next(self.module.parameters()).dtype

    @property
    def device(self) -> torch.device:
        return next(self.module.parameters()).device


def read_upscaler_state_dict(path: Path) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"upscaler file {path} not found")
    if path.suffix.lower() == ".safetensors":
        from safetensors.torch import load_file
        try:
            obj = load_file(str(path))
        except Exception as e:
            raise ModelError(f"cannot read upscaler {path.name}: not a complete safetensors file ({e})") from None
    else:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:
            text = str(e)
            if m := re.search(r"unsupported GLOBAL (\S+)|Unsupported global: GLOBAL (\S+)", text, re.I):
                raise ModelError(
                    f"refused upscaler {path.name}: it contains pickled code or objects other than tensors "
                    f"({m.group(1) or m.group(2)}), which are never loaded for safety; use a .safetensors version "
                    f"of it (or convert it on a machine you trust)") from None
            raise ModelError(f"cannot read upscaler {path.name}: not a readable PyTorch weights or safetensors "
                             f"file ({type(e).__name__})") from None
    for key in _WRAPPERS:
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not obj:
        raise ModelError(f"upscaler {path.name} holds a {type(obj).__name__}, not a state dict")
    sd = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not sd:
        raise ModelError(f"upscaler {path.name} holds no tensors")
    for prefix in ("module.", "netG."):
        if all(k.startswith(prefix) for k in sd):
            sd = {k[len(prefix):]: v for k, v in sd.items()}
    return sd


@functools.cache
def spandrel_status() -> tuple[object | None, str]:
    """(the spandrel module or None, why not). Any import failure counts: torchvision raises RuntimeError."""
    try:
        import spandrel
        return spandrel, ""
    except Exception as e:  # noqa: BLE001 -- ImportError, or torchvision's operator RuntimeError
        return None, f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"


def load_upscaler(path: Path, *, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
                  use_spandrel: bool | None = None) -> UpscalerModel:
    """The model in `path` on `device`; fp16/bf16 only where the architecture supports it (else fp32)."""
    path = Path(path)
    sd = read_upscaler_state_dict(path)
    spandrel, why = spandrel_status()
    if use_spandrel is None:
        use_spandrel = spandrel is not None
    if use_spandrel and spandrel is not None:
        try:
            desc = spandrel.ModelLoader().load_from_state_dict(sd)
        except Exception as e:  # noqa: BLE001 -- spandrel raises its own UnsupportedModelError and others
            raise ModelError(f"upscaler {path.name} could not be loaded by spandrel: {e}") from None
        if not isinstance(desc, spandrel.ImageModelDescriptor):
            raise ModelError(f"{path.name} is a {desc.architecture.name} inpainting/restoration model, "
                             f"not an upscaler")
        model = UpscalerModel(desc.model, desc.architecture.name, desc.scale, desc.supports_half, path, "spandrel")
    else:
        try:
            net = build_from_state_dict(sd)
        except UnsupportedArchitecture as e:
            reason = f" (spandrel is not importable here: {why})" if why else " (spandrel was not used)"
            raise ModelError(
                f"upscaler {path.name} is {e}; without spandrel only ESRGAN/Real-ESRGAN (RRDB) and Real-ESRGAN "
                f"Compact models load{reason}; other architectures need `pip install spandrel` with a torchvision "
                f"that works with this torch") from None
        model = UpscalerModel(net.module, net.arch, net.scale, True, path, "builtin")
    want = dtype if (dtype != torch.float32 and model.supports_half and torch.device(device).type != "cpu") \
        else torch.float32
    model.module.to(device=device, dtype=want).eval().requires_grad_(False)
    log.info("upscaler %s: %s x%d via %s (%s)", path.name, model.arch, model.scale, model.via, want)
    return model
