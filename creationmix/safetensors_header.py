"""The one reader of a .safetensors header (8-byte length + JSON) that checks it without reading tensor data.

Torch-free. Callers turn a HeaderProblem into their own domain error (ModelError, LoraError) and wording.
"""
from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path

MAX_HEADER_BYTES = 100 * 1024 * 1024


class HeaderProblem(ValueError):
    """kind: "short" (no 8-byte length), "length" (absurd header length), "json" (not a JSON object),
    "entry" (a tensor entry without valid data_offsets), "past-end" (tensor data past the end of the file).
    `facts` carries size, header_len, key, need, have, detail as they apply."""

    def __init__(self, kind: str, **facts):
        super().__init__(kind)
        self.kind = kind
        self.facts = facts


@dataclass
class SafetensorsHeader:
    entries: dict[str, dict]  # {key: {"dtype", "shape", "data_offsets"}}
    metadata: dict[str, str] = field(default_factory=dict)  # __metadata__
    size: int = 0  # file size
    header_len: int = 0


def read_header(path: Path) -> SafetensorsHeader:
    """Raises OSError when the file cannot be read, HeaderProblem when it is not a complete safetensors file."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise HeaderProblem("short", size=size)
        (n,) = struct.unpack("<Q", head)
        if n == 0 or n > MAX_HEADER_BYTES or n > size - 8:
            raise HeaderProblem("length", size=size, header_len=n)
        raw = f.read(n)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise HeaderProblem("json", size=size, detail=str(e)) from None
    if not isinstance(header, dict):
        raise HeaderProblem("json", size=size, detail="header is not a JSON object")
    meta = header.pop("__metadata__", None) or {}
    if not isinstance(meta, dict):
        meta = {}
    have = size - 8 - n
    for key, entry in header.items():
        offs = entry.get("data_offsets") if isinstance(entry, dict) else None
        if not (isinstance(offs, list) and len(offs) == 2 and all(isinstance(o, int) for o in offs)
                and 0 <= offs[0] <= offs[1]):
            raise HeaderProblem("entry", size=size, key=key)
    need = max((e["data_offsets"][1] for e in header.values()), default=0)
    if need > have:
        key = next(k for k, e in header.items() if e["data_offsets"][1] > have)
        raise HeaderProblem("past-end", size=size, key=key, need=need, have=have)
    return SafetensorsHeader(header, {str(k): str(v) for k, v in meta.items()}, size, n)
