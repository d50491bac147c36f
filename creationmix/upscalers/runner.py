"""Runs a named pixel upscaler on PIL images with A1111's rules; keeps the last model loaded between calls."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from PIL import Image

from ..errors import InvalidParameter
from ..paths import Folders
from .models import UpscalerModel, load_upscaler
from .pixels import model_runner, pil_do_upscale, resize_image, upscale_by, upscale_with_model
from .table import LATENT_MODES, PIL_UPSCALERS, find_model_file

log = logging.getLogger(__name__)

SMALL_GPU_BYTES = 8 * 1024**3


@dataclass(frozen=True)
class UpscaleSettings:
    """A1111's ESRGAN_tile / ESRGAN_tile_overlap (192 / 8); tile 0 = the whole image at once.

    free_after: drop the model after each use (None: only on GPUs with less than 8 GiB)."""
    tile: int = 192
    tile_overlap: int = 8
    free_after: bool | None = None

    def __post_init__(self):
        if not isinstance(self.tile, int) or self.tile < 0:
            raise InvalidParameter(f"upscaler tile size must be 0 (no tiles) or a positive number, got {self.tile!r}")
        if not isinstance(self.tile_overlap, int) or self.tile_overlap < 0 or (
                self.tile and self.tile_overlap >= self.tile):
            raise InvalidParameter(f"upscaler tile overlap must be >= 0 and smaller than the tile size "
                                   f"({self.tile}), got {self.tile_overlap!r}")


class PixelUpscalers:
    def __init__(self, folders: Folders, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
                 settings: UpscaleSettings | None = None):
        self.folders = folders
        self.device = torch.device(device)
        self.dtype = dtype
        self.settings = settings or UpscaleSettings()
        self._model: UpscalerModel | None = None
        self._key: tuple | None = None

    # -- models ---------------------------------------------------------------------------------------------
    def path_for(self, name: str) -> Path:
        return find_model_file(name, self.folders)

    def check(self, name: str) -> None:
        """Fail early (before a first pass is spent) when a model upscaler's file is missing."""
        if name not in LATENT_MODES and name not in PIL_UPSCALERS:
            self.path_for(name)

    def model(self, name: str) -> UpscalerModel:
        path = self.path_for(name)
        st = path.stat()
        key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
        if self._key != key or self._model is None:
            self.release()
            self._model = load_upscaler(path, device=self.device, dtype=self.dtype)
            self._key = key
        return self._model

    def release(self) -> None:
        self._model = self._key = None
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def finished(self) -> None:
        """End of a pass: drop the model if the settings say so (small GPUs need the memory for the UNet)."""
        free = self.settings.free_after
        if free is None:
            free = self.device.type == "cuda" and \
                torch.cuda.get_device_properties(self.device).total_memory < SMALL_GPU_BYTES
        if free:
            self.release()

    # -- A1111 operations -----------------------------------------------------------------------------------
    def _do_upscale_factory(self, name: str, should_stop) -> Callable[[float], Callable]:
        if name in PIL_UPSCALERS:
            return lambda scale: pil_do_upscale(name, scale)
        if name in LATENT_MODES:
            raise InvalidParameter(f"{name!r} is a latent upscaler: it works on latents in the hires pass, "
                                   f"not on images")
        m = self.model(name)
        run = model_runner(m.module, m.device, m.dtype)
        s = self.settings
        return lambda scale: (lambda img: upscale_with_model(run, img, tile_size=s.tile, tile_overlap=s.tile_overlap,
                                                              should_stop=should_stop))

    def resize(self, img: Image.Image, width: int, height: int, name: str,
               should_stop: Callable[[], bool] | None = None) -> Image.Image:
        """The hires pass's images.resize_image(0, img, width, height, upscaler_name=name)."""
        factory = self._do_upscale_factory(name, should_stop) if name != "None" else None
        return resize_image(img, width, height, name, factory)

    def upscale(self, img: Image.Image, scale: float, name: str,
                should_stop: Callable[[], bool] | None = None) -> Image.Image:
        """Extras "Scale by": Upscaler.upscale(img, scale) (the result is rounded down to a multiple of 8)."""
        if not 1 <= scale <= 8:
            raise InvalidParameter(f"upscale factor must be between 1 and 8, got {scale!r}")
        return upscale_by(img.convert("RGB"), scale, self._do_upscale_factory(name, should_stop)(scale))
