"""File hashes as A1111 writes them in infotexts, computed once per file version.

A checkpoint is GBs: its sha256 is cached in memory and, with a cache dir, on disk (`<data_dir>/.cache/hashes.json`)
keyed by resolved path + size + mtime_ns, so an edited or replaced file is hashed again.

- `model_hash`: sha256[:10] (A1111 "AutoV2", used for "Model hash" and "VAE hash").
- `lora_hash`: A1111's LoRA hash ("AutoV3"): for .safetensors the sha256 of everything after the header
  (8-byte little-endian length + JSON), so editing metadata keeps the hash; other files hash whole. [:12].

Errors reading the file (missing, permissions) propagate as OSError; callers wrap them in their domain error.
"""
from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path

from .fsio import write_atomic

CACHE_FILE = "hashes.json"
_BLOCK = 1 << 20

_lock = threading.Lock()
_memo: dict[tuple[str, str, int, int], str] = {}


def default_cache_dir(data_dir: str | os.PathLike) -> Path:
    return Path(data_dir) / ".cache"


def _sha256_stream(f, offset: int = 0) -> str:
    h = hashlib.sha256()
    f.seek(offset)
    for chunk in iter(lambda: f.read(_BLOCK), b""):
        h.update(chunk)
    return h.hexdigest()


def _hash_full(path: Path) -> str:
    with open(path, "rb") as f:
        return _sha256_stream(f)


def _hash_after_safetensors_header(path: Path) -> str:
    # Byte-for-byte A1111's addnet_hash_safetensors (a bogus header length hashes what is past it, maybe nothing).
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        return _sha256_stream(f, n + 8)


def _load_cache(file: Path) -> dict:
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}  # missing or corrupt cache: start over, it is only a cache


def _store_cache(file: Path, data: dict) -> None:
    write_atomic(file, json.dumps(data, indent=1, sort_keys=True), what="hash cache")


def _cached(kind: str, path, cache_dir, compute) -> str:
    p = Path(path).resolve()
    st = p.stat()
    key = (kind, str(p), st.st_size, st.st_mtime_ns)
    with _lock:
        if key in _memo:
            return _memo[key]
        cache_file = Path(cache_dir) / CACHE_FILE if cache_dir is not None else None
        if cache_file is not None:
            entry = _load_cache(cache_file).get(kind, {}).get(str(p))
            if (isinstance(entry, dict) and entry.get("size") == st.st_size
                    and entry.get("mtime_ns") == st.st_mtime_ns and isinstance(entry.get("sha256"), str)):
                _memo[key] = entry["sha256"]
                return entry["sha256"]
    # Hash outside the lock: other files can be looked up meanwhile.
    digest = compute(p)
    with _lock:
        _memo[key] = digest
        if cache_file is not None:
            data = _load_cache(cache_file)  # re-read: another process may have added entries
            data.setdefault(kind, {})[str(p)] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": digest}
            try:
                _store_cache(cache_file, data)
            except OSError:
                pass  # a read-only data dir only costs a re-hash next run
    return digest


def sha256_file(path: str | os.PathLike, cache_dir: str | os.PathLike | None = None) -> str:
    """Full sha256 hex of a file; cached in process, and on disk in `cache_dir/hashes.json` when given."""
    return _cached("sha256", path, cache_dir, _hash_full)


def model_hash(path: str | os.PathLike, cache_dir: str | os.PathLike | None = None) -> str:
    """A1111's "Model hash" / "VAE hash" (AutoV2): sha256[:10]."""
    return sha256_file(path, cache_dir)[:10]


def lora_hash(path: str | os.PathLike, cache_dir: str | os.PathLike | None = None) -> str:
    """A1111's "Lora hashes" entry (AutoV3): for .safetensors, sha256 of the bytes after the header; [:12]."""
    if Path(path).suffix.lower() == ".safetensors":
        return _cached("addnet", path, cache_dir, _hash_after_safetensors_header)[:12]
    return sha256_file(path, cache_dir)[:12]


def clear_memory_cache() -> None:
    """Forget in-process results (tests; the disk cache is untouched)."""
    with _lock:
        _memo.clear()
