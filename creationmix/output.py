"""Writing images where A1111 writes them: outputs/txt2img-images/YYYY-MM-DD/NNNNN-SEED.png.

Each file appears whole or not at all and never over another file (fsio.write_new_numbered: when another
writer took the number meanwhile, the next one is used).
"""
from __future__ import annotations

import datetime as _dt
import re
from pathlib import Path

from PIL import Image
from PIL.PngImagePlugin import PngInfo

from .fsio import write_new_numbered

_NUMBERED = re.compile(r"^(\d+)-")


def next_sequence_number(folder: Path) -> int:
    """A1111's rule: one more than the largest leading number of the files already there."""
    best = -1
    if folder.is_dir():
        for p in folder.iterdir():
            m = _NUMBERED.match(p.name)
            if m:
                best = max(best, int(m.group(1)))
    return best + 1


def png_info(parameters: str | None) -> PngInfo:
    info = PngInfo()
    if parameters:
        info.add_text("parameters", parameters)
    return info


def save_numbered_png(image: Image.Image, folder: Path, seed: int, parameters: str | None,
                      suffix: str = "") -> Path:
    folder = Path(folder)
    return write_new_numbered(folder, lambda fh: image.save(fh, format="PNG", pnginfo=png_info(parameters)),
                              lambda: f"{next_sequence_number(folder):05d}-{seed}{suffix}.png", what="PNG")


def dated_folder(outputs_dir: Path, kind: str = "txt2img-images", today: _dt.date | None = None) -> Path:
    return Path(outputs_dir, kind, (today or _dt.date.today()).isoformat())
