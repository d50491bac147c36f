"""A1111's pixel upscaling rules, step for step (they decide the pixels a recipe gets):

- `upscale_with_model` (modules/upscaler_utils.py): the image is cut by `split_grid` into tiles (192 px, 8 px
  overlap by default), each tile goes through the model as a BGR float tensor in [0, 1], the output is clamped,
  *rounded* to uint8, and `combine_grid` pastes the tiles back with linear 8-bit masks over the overlap.
- `upscale_by` (Upscaler.upscale): the model runs up to 3 times until the image reaches the target rounded down
  to a multiple of 8, then LANCZOS to exactly that size.
- `resize_image` (images.resize_image, mode 0 "Just resize"): "None" is a plain LANCZOS resize; otherwise the
  upscaler runs when the target is larger, then LANCZOS to the exact size.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from PIL import Image

LANCZOS = Image.Resampling.LANCZOS
NEAREST = Image.Resampling.NEAREST

Run = Callable[[Image.Image], Image.Image]


# -- tiles (modules/images.py split_grid / combine_grid) ----------------------------------------------------------

@dataclass
class Grid:
    tiles: list = field(default_factory=list)  # [y, h, [[x, w, tile], ...]]
    tile_w: int = 0
    tile_h: int = 0
    image_w: int = 0
    image_h: int = 0
    overlap: int = 0

    @property
    def tile_count(self) -> int:
        return sum(len(row) for _, _, row in self.tiles)


def split_grid(image: Image.Image, tile_w: int, tile_h: int, overlap: int) -> Grid:
    w, h = image.size
    cols = math.ceil((w - overlap) / (tile_w - overlap))
    rows = math.ceil((h - overlap) / (tile_h - overlap))
    dx = (w - tile_w) / (cols - 1) if cols > 1 else 0
    dy = (h - tile_h) / (rows - 1) if rows > 1 else 0
    grid = Grid([], tile_w, tile_h, w, h, overlap)
    for row in range(rows):
        y = int(row * dy)
        if y + tile_h >= h:
            y = h - tile_h  # negative for an image smaller than a tile: crop() pads with black
        cells = []
        for col in range(cols):
            x = int(col * dx)
            if x + tile_w >= w:
                x = w - tile_w
            cells.append([x, tile_w, image.crop((x, y, x + tile_w, y + tile_h))])
        grid.tiles.append([y, tile_h, cells])
    return grid


def _mask(length: int, across: int, horizontal: bool) -> Image.Image:
    ramp = (np.arange(length, dtype=np.float32) * 255 / length).astype(np.uint8)
    arr = np.repeat(ramp[None, :], across, axis=0) if horizontal else np.repeat(ramp[:, None], across, axis=1)
    return Image.fromarray(arr, "L")


def combine_grid(grid: Grid) -> Image.Image:
    o = grid.overlap
    out = Image.new("RGB", (grid.image_w, grid.image_h))
    mask_w = _mask(o, grid.tile_h, True) if o else None
    mask_h = _mask(o, grid.image_w, False) if o else None
    for y, h, row in grid.tiles:
        line = Image.new("RGB", (grid.image_w, h))
        for x, w, tile in row:
            if x == 0 or not o:
                line.paste(tile, (x, 0))
                continue
            line.paste(tile.crop((0, 0, o, h)), (x, 0), mask=mask_w)
            line.paste(tile.crop((o, 0, w, h)), (x + o, 0))
        if y == 0 or not o:
            out.paste(line, (0, y))
            continue
        out.paste(line.crop((0, 0, line.width, o)), (0, y), mask=mask_h)
        out.paste(line.crop((0, o, line.width, h)), (0, y + o))
    return out


# -- model on PIL images (modules/upscaler_utils.py) --------------------------------------------------------------

def pil_to_bgr(img: Image.Image):
    import torch
    arr = np.array(img.convert("RGB"))[:, :, ::-1]
    arr = np.ascontiguousarray(np.transpose(arr, (2, 0, 1))) / 255  # float64, as A1111, cast later
    return torch.from_numpy(arr).unsqueeze(0)


def bgr_to_pil(t) -> Image.Image:
    arr = t.squeeze(0).float().cpu().clamp_(0, 1).numpy()
    arr = (255.0 * np.moveaxis(arr, 0, 2)).round().astype(np.uint8)
    return Image.fromarray(np.ascontiguousarray(arr[:, :, ::-1]), "RGB")


def model_runner(module, device, dtype) -> Run:
    import torch

    def run(img: Image.Image) -> Image.Image:
        with torch.inference_mode():
            x = pil_to_bgr(img).to(device=device, dtype=dtype)
            return bgr_to_pil(module(x))

    return run


def upscale_with_model(run: Run, img: Image.Image, *, tile_size: int, tile_overlap: int,
                       should_stop: Callable[[], bool] | None = None) -> Image.Image:
    if tile_size <= 0:
        return run(img)
    grid = split_grid(img, tile_size, tile_size, tile_overlap)
    scale = None
    rows = []
    for y, h, row in grid.tiles:
        cells = []
        for x, w, tile in row:
            if should_stop is not None and should_stop():
                return img  # A1111 returns the input when interrupted mid-grid
            out = run(tile)
            scale = out.width // tile.width
            cells.append([x * scale, w * scale, out])
        rows.append([y * scale, h * scale, cells])
    return combine_grid(Grid(rows, grid.tile_w * scale, grid.tile_h * scale, grid.image_w * scale,
                             grid.image_h * scale, grid.overlap * scale))


# -- A1111's size rules -------------------------------------------------------------------------------------------

def upscale_by(img: Image.Image, scale: float, do_upscale: Run) -> Image.Image:
    """Upscaler.upscale: apply `do_upscale` until the multiple-of-8 target is reached (at most 3 times)."""
    dest_w = int((img.width * scale) // 8 * 8)
    dest_h = int((img.height * scale) // 8 * 8)
    for i in range(3):
        if img.width >= dest_w and img.height >= dest_h and (i > 0 or scale != 1):
            break
        shape = img.size
        img = do_upscale(img)
        if shape == img.size:
            break
    if img.size != (dest_w, dest_h):
        img = img.resize((int(dest_w), int(dest_h)), resample=LANCZOS)
    return img


def pil_do_upscale(name: str, scale: float) -> Run:
    """UpscalerNone / UpscalerLanczos / UpscalerNearest.do_upscale at `scale`."""
    if name == "None":
        return lambda img: img
    resample = {"Lanczos": LANCZOS, "Nearest": NEAREST}[name]
    return lambda img: img.resize((int(img.width * scale), int(img.height * scale)), resample=resample)


def resize_image(img: Image.Image, width: int, height: int, name: str,
                 make_do_upscale: Callable[[float], Run]) -> Image.Image:
    """images.resize_image(0, ...): `make_do_upscale(scale)` gives the upscaler's do_upscale at that scale."""
    if name == "None" or img.mode == "L":
        return img.resize((width, height), resample=LANCZOS)
    scale = max(width / img.width, height / img.height)
    if scale > 1.0:
        img = upscale_by(img, scale, make_do_upscale(scale))
    if img.size != (width, height):
        img = img.resize((width, height), resample=LANCZOS)
    return img
