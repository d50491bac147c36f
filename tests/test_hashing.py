import hashlib
import json
import os
import struct

import pytest

from creationmix import hashing


@pytest.fixture(autouse=True)
def _fresh():
    hashing.clear_memory_cache()
    yield
    hashing.clear_memory_cache()


def _write(p, data: bytes):
    p.write_bytes(data)
    return p


def test_sha256_and_model_hash(tmp_path):
    f = _write(tmp_path / "m.safetensors", b"hello world" * 1000)
    want = hashlib.sha256(b"hello world" * 1000).hexdigest()
    assert hashing.sha256_file(f) == want
    assert hashing.model_hash(f) == want[:10]


def test_disk_cache_is_used_and_keyed_by_size_and_mtime(tmp_path, monkeypatch):
    cache = tmp_path / ".cache"
    f = _write(tmp_path / "m.ckpt", b"abc")
    h1 = hashing.sha256_file(f, cache)
    data = json.loads((cache / "hashes.json").read_text())
    assert data["sha256"][str(f.resolve())]["sha256"] == h1

    # A new process (memory cleared) must not hash again.
    hashing.clear_memory_cache()
    monkeypatch.setattr(hashing, "_hash_full", lambda p: pytest.fail("re-hashed a cached file"))
    assert hashing.sha256_file(f, cache) == h1
    monkeypatch.undo()

    # Same size, other content and mtime: hashed again.
    f.write_bytes(b"xyz")
    st = f.stat()
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    hashing.clear_memory_cache()
    assert hashing.sha256_file(f, cache) == hashlib.sha256(b"xyz").hexdigest()
    assert not list(cache.glob("*.tmp"))  # atomic writes leave no temp files


def test_corrupt_cache_is_ignored(tmp_path):
    cache = tmp_path / ".cache"
    cache.mkdir()
    (cache / "hashes.json").write_text("{not json")
    f = _write(tmp_path / "m.bin", b"data")
    assert hashing.sha256_file(f, cache) == hashlib.sha256(b"data").hexdigest()
    assert json.loads((cache / "hashes.json").read_text())["sha256"]


def test_memoised_without_cache_dir(tmp_path, monkeypatch):
    f = _write(tmp_path / "m.bin", b"data")
    h = hashing.sha256_file(f)
    monkeypatch.setattr(hashing, "_hash_full", lambda p: pytest.fail("re-hashed"))
    assert hashing.sha256_file(f) == h
    assert not (tmp_path / ".cache").exists()


def _safetensors_bytes(meta: dict, payload: bytes) -> bytes:
    header = json.dumps({"__metadata__": meta, "w": {"dtype": "U8", "shape": [len(payload)],
                                                    "data_offsets": [0, len(payload)]}}).encode()
    return struct.pack("<Q", len(header)) + header + payload


def test_lora_hash_ignores_header(tmp_path):
    payload = bytes(range(256)) * 4
    a = _write(tmp_path / "a.safetensors", _safetensors_bytes({"ss_name": "x"}, payload))
    b = _write(tmp_path / "b.safetensors", _safetensors_bytes({"ss_name": "a much longer name"}, payload))
    want = hashlib.sha256(payload).hexdigest()[:12]
    assert hashing.lora_hash(a) == hashing.lora_hash(b) == want
    assert hashing.model_hash(a) != hashing.model_hash(b)


def test_lora_hash_of_real_safetensors_file(tmp_path):
    import torch
    from safetensors.torch import save_file
    p = tmp_path / "l.safetensors"
    save_file({"x": torch.arange(10, dtype=torch.float32)}, str(p))
    raw = p.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    assert hashing.lora_hash(p, tmp_path / ".cache") == hashlib.sha256(raw[8 + n:]).hexdigest()[:12]


def test_lora_hash_non_safetensors_hashes_whole_file(tmp_path):
    f = _write(tmp_path / "l.pt", b"pickle bytes")
    assert hashing.lora_hash(f) == hashlib.sha256(b"pickle bytes").hexdigest()[:12]


def test_missing_file_raises_oserror(tmp_path):
    with pytest.raises(OSError):
        hashing.model_hash(tmp_path / "nope.safetensors")
