"""The A1111 `parameters` text inside image files: PNG text chunks, JPEG/WebP EXIF UserComment.

A1111 stores PNG infotext as a `parameters` tEXt/iTXt chunk and JPEG/WebP infotext as EXIF UserComment
written by piexif (`UNICODE\\0` + UTF-16BE). Other tools write UTF-16LE after the same prefix, or ASCII; the
reader copes with all of them. Writing goes through fsio.write_atomic, so a failed save never leaves a
partial image behind.
"""
from __future__ import annotations

import io
import os
from pathlib import Path
from typing import BinaryIO

from PIL import Image, PngImagePlugin, UnidentifiedImageError

from .errors import CreationMixError
from .fsio import write_atomic

PARAMETERS_KEY = "parameters"
EXIF_IFD = 0x8769
USER_COMMENT = 0x9286

_UNICODE = b"UNICODE\x00"
_ASCII = b"ASCII\x00\x00\x00"
_JIS = b"JIS\x00\x00\x00\x00\x00"
_UNDEFINED = b"\x00" * 8

ImageSource = str | os.PathLike | bytes | BinaryIO | Image.Image


# -- EXIF UserComment -----------------------------------------------------------------------------------------
def encode_user_comment(text: str) -> bytes:
    """piexif.helper.UserComment.dump(text, encoding="unicode"), as A1111 writes it."""
    return _UNICODE + text.encode("utf-16-be")


def decode_user_comment(data: bytes | str) -> str:
    if isinstance(data, str):  # some Pillow paths hand back already-decoded text
        return data.rstrip("\x00")
    prefix, body = data[:8], data[8:]
    if prefix == _UNICODE:
        return _decode_utf16(body)
    if prefix == _ASCII:
        return body.decode("ascii", errors="replace").rstrip("\x00")
    if prefix == _JIS:
        return body.decode("shift_jis", errors="replace").rstrip("\x00")
    if prefix == _UNDEFINED:
        return body.decode("utf-8", errors="ignore").rstrip("\x00")
    # No known prefix: what A1111 does when piexif refuses it.
    return data.decode("utf-8", errors="ignore").rstrip("\x00")


def _decode_utf16(body: bytes) -> str:
    if body[:2] == b"\xfe\xff":
        return body[2:].decode("utf-16-be", errors="replace").rstrip("\x00")
    if body[:2] == b"\xff\xfe":
        return body[2:].decode("utf-16-le", errors="replace").rstrip("\x00")
    if len(body) % 2:  # an odd byte count is not UTF-16 at all; tools that put UTF-8 here exist
        body = body[:-1] if body.endswith(b"\x00") else body
        if len(body) % 2:
            return body.decode("utf-8", errors="replace").rstrip("\x00")
    # Mostly-ASCII text has its zero bytes first in big-endian and second in little-endian units.
    zeros_first = body[0::2].count(0)
    zeros_second = body[1::2].count(0)
    encoding = "utf-16-le" if zeros_second > zeros_first else "utf-16-be"
    return body.decode(encoding, errors="replace").rstrip("\x00")


# -- reading --------------------------------------------------------------------------------------------------
def read_parameters(source: ImageSource) -> str | None:
    """The infotext stored in an image (path, bytes, binary file or PIL image); None when it has none.

    Raises CreationMixError("not an image: ...") for anything Pillow cannot open as an image."""
    if isinstance(source, Image.Image):
        return _parameters_of(source)
    image = _open(source)
    try:
        return _parameters_of(image)
    finally:
        image.close()


def _open(source) -> Image.Image:
    name = "data"
    if isinstance(source, (bytes, bytearray)):
        source = io.BytesIO(source)
    elif isinstance(source, (str, os.PathLike)):
        name = os.fspath(source)
        if not os.path.isfile(name):
            raise CreationMixError(f"not an image: {name} does not exist or is not a file")
    try:
        return Image.open(source)
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise CreationMixError(f"not an image: {name} ({e})") from None


def _parameters_of(image: Image.Image) -> str | None:
    text_chunks = getattr(image, "text", None)  # PNG: also chunks after the image data
    if isinstance(text_chunks, dict) and PARAMETERS_KEY in text_chunks:
        return str(text_chunks[PARAMETERS_KEY])
    info = image.info
    if PARAMETERS_KEY in info:
        return str(info[PARAMETERS_KEY])
    try:
        comment = image.getexif().get_ifd(EXIF_IFD).get(USER_COMMENT)
    except Exception:  # a broken EXIF block is just "no metadata", not a failure to read the image
        comment = None
    if comment:
        text = decode_user_comment(comment)
        if text:
            return text
    comment = info.get("comment")  # GIF/JPEG comment, which A1111 also reads
    if comment:
        text = comment.decode("utf-8", errors="ignore") if isinstance(comment, bytes) else str(comment)
        return text or None
    return None


# -- writing --------------------------------------------------------------------------------------------------
def write_png(image: Image.Image, path: str | os.PathLike, parameters: str | None) -> Path:
    """Save `image` as PNG with a `parameters` text chunk (tEXt when Latin-1, else iTXt), atomically."""
    pnginfo = PngImagePlugin.PngInfo()
    if parameters is not None:
        pnginfo.add_text(PARAMETERS_KEY, parameters)
    return _atomic_save(image, path, "PNG", pnginfo=pnginfo)


def save_jpeg(image: Image.Image, path: str | os.PathLike, parameters: str | None, *,
              quality: int = 90) -> Path:
    """Save as JPEG with the infotext in EXIF UserComment (A1111's JPEG export), atomically."""
    if image.mode not in ("RGB", "L"):
        image = image.convert("RGB")
    return _atomic_save(image, path, "JPEG", quality=quality, **_exif_kwargs(parameters))


def save_webp(image: Image.Image, path: str | os.PathLike, parameters: str | None, *,
              quality: int = 90, lossless: bool = False) -> Path:
    """Save as WebP with the infotext in EXIF UserComment (A1111's WebP export), atomically."""
    return _atomic_save(image, path, "WEBP", quality=quality, lossless=lossless, **_exif_kwargs(parameters))


def _exif_kwargs(parameters: str | None) -> dict:
    if parameters is None:
        return {}
    exif = Image.Exif()
    exif.get_ifd(EXIF_IFD)[USER_COMMENT] = encode_user_comment(parameters)
    return {"exif": exif.tobytes()}


def _atomic_save(image: Image.Image, path: str | os.PathLike, fmt: str, **kwargs) -> Path:
    path = Path(path)
    folder = path.parent
    if not folder.is_dir():
        raise CreationMixError(f"cannot save {path}: folder {folder} does not exist")
    try:
        return write_atomic(path, lambda fh: image.save(fh, format=fmt, **kwargs), what=fmt)
    except ValueError as e:  # Pillow: EXIF too long for JPEG, bad mode, ...
        raise CreationMixError(f"cannot save {path} as {fmt}: {e}") from e
