"""Work-size guard: refuse a request whose activations cannot fit the device before anything is allocated.

Without it 4096x4096 x batch 64 (inside the validated ranges) dies deep in sampling with
"DefaultCPUAllocator: can't allocate memory" or a CUDA OOM. The estimate is a lower bound for SD 1.5
(attention matrices are left out: SDPA may not build them), so what it refuses cannot run; what it lets
through can still fail on a crowded machine.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from .errors import InvalidParameter

# Per-pixel activation footprint in "channels" (multiply by the element size):
# VAE decoder, last up block at full resolution: a 256-channel input, its GroupNorm copy and the
# 128/256-channel conv outputs live at once.
VAE_DECODE_CHANNELS = 768
VAE_TILE = 512  # diffusers' AutoencoderKL tile (pixels): a tiled decode holds one tile at a time
# UNet per latent pixel and sample: the 12 skip tensors (320..1280 channels at falling resolution) plus the
# working block, summed at latent resolution.
UNET_CHANNELS = 2560
LATENT_CHANNELS = 4


@dataclass(frozen=True)
class WorkSize:
    unet_bytes: int
    decode_bytes: int

    @property
    def total(self) -> int:
        return max(self.unet_bytes, self.decode_bytes)  # the UNet's activations are freed before the decode


def estimate(width: int, height: int, batch: int, elem_size: int, *, tiled_vae: bool = False,
             cfg: bool = True) -> WorkSize:
    latent_px = (width // 8) * (height // 8)
    samples = batch * (2 if cfg else 1)
    unet = samples * latent_px * (UNET_CHANNELS + LATENT_CHANNELS) * elem_size
    px = min(width, VAE_TILE) * min(height, VAE_TILE) if tiled_vae else width * height * batch
    return WorkSize(unet, px * VAE_DECODE_CHANNELS * elem_size)


def free_bytes(device) -> int | None:
    """Memory the work may use on `device` (a torch.device or its type name); None when unknown."""
    kind = getattr(device, "type", str(device))
    if kind == "cuda":
        import torch
        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    if kind == "cpu":
        return available_ram()
    return None  # MPS shares RAM with the system and reports nothing useful


def available_ram() -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _gib(n: int) -> str:
    return f"{n / 2**30:.1f} GiB"


def need(width: int, height: int, batch: int, elem_size: int, *, tiled_vae: bool = False,
         hires_size: tuple[int, int] | None = None) -> int:
    """Bytes of the largest step: the first pass's UNet, the hires pass's UNet, the decode of the final size."""
    first = estimate(width, height, batch, elem_size, tiled_vae=tiled_vae)
    if not hires_size:
        return first.total
    final = estimate(*hires_size, batch, elem_size, tiled_vae=tiled_vae)
    return max(first.unet_bytes, final.total)


def check(width: int, height: int, batch: int, elem_size: int, free: int | None, *, tiled_vae: bool = False,
          hires_size: tuple[int, int] | None = None, device_name: str = "device") -> None:
    """Raise InvalidParameter when the request needs more than `free` bytes, saying what would fit."""
    if free is None:
        return
    def bytes_for(b: int, tiled: bool = tiled_vae) -> int:
        return need(width, height, b, elem_size, tiled_vae=tiled, hires_size=hires_size)
    needed = bytes_for(batch)
    if needed <= free:
        return
    advice = []
    fits = next((b for b in range(batch - 1, 0, -1) if bytes_for(b) <= free), 0)
    if fits:
        advice.append(f"batch size {fits} (or fewer)")
    if not tiled_vae and bytes_for(batch, True) <= free:
        advice.append("--tiled-vae (Tiled VAE in the UI)")
    if not advice:
        advice.append("a smaller size or batch")
    size = f"{width}x{height}" + (f" (hires {hires_size[0]}x{hires_size[1]})" if hires_size else "")
    raise InvalidParameter(f"{size} x batch {batch} needs at least {_gib(needed)} on the {device_name}, only "
                           f"{_gib(free)} is free; what fits: {' or '.join(advice)}")
