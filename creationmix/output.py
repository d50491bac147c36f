"""Writing images where A1111 writes them: outputs/txt2img-images/YYYY-MM-DD/NNNNN-SEED.png.

Each file appears whole or not at all: it is written to a temp file in the same folder and then hard-linked
to its final name, which fails instead of overwriting when another writer took the number meanwhile.
"""
from __future__ import annotations

import datetime as _dt
import os
import re
import tempfile
from pathlib import Path

from PIL import Image
from PIL.PngImagePlugin import PngInfo

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


def png_info(parameters: str | None, extra_text: dict[str, str] | None = None) -> PngInfo:
    info = PngInfo()
    if parameters:
        info.add_text("parameters", parameters)
    for key, value in (extra_text or {}).items():
        info.add_text(key, value)
    return info


def save_numbered_png(image: Image.Image, folder: Path, seed: int | str, parameters: str | None,
                      suffix: str = "", extra_text: dict[str, str] | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".png", dir=folder)
    try:
        with os.fdopen(fd, "wb") as fh:
            image.save(fh, format="PNG", pnginfo=png_info(parameters, extra_text))
        for _ in range(1000):
            final = folder / f"{next_sequence_number(folder):05d}-{seed}{suffix}.png"
            try:
                os.link(tmp, final)
                return final
            except FileExistsError:
                continue
        raise OSError(f"could not find a free file name in {folder}")
    finally:
        Path(tmp).unlink(missing_ok=True)


def dated_folder(outputs_dir: Path, kind: str = "txt2img-images", today: _dt.date | None = None) -> Path:
    return Path(outputs_dir, kind, (today or _dt.date.today()).isoformat())
