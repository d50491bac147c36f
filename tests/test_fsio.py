"""fsio: every file written whole or not at all, mode 0666 minus umask, never-overwrite honoured,
OSError as a WriteError naming the path and the reason."""
from __future__ import annotations

import errno
import os
import stat
import threading

import pytest
from PIL import Image

from creationmix import fsio
from creationmix.errors import CreationMixError, WriteError
from creationmix.output import save_numbered_png


@pytest.fixture
def umask022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def _mode(p) -> int:
    return stat.S_IMODE(os.stat(p).st_mode)


def test_replace_writes_whole_file_with_umask_mode(tmp_path, umask022):
    target = tmp_path / "sub" / "a.txt"
    assert fsio.write_atomic(target, "one\n") == target
    fsio.write_atomic(target, b"two")
    assert target.read_bytes() == b"two" and _mode(target) == 0o644
    os.umask(0o077)
    fsio.write_atomic(target, lambda fh: fh.write(b"three"))
    assert target.read_bytes() == b"three" and _mode(target) == 0o600
    assert os.listdir(target.parent) == ["a.txt"]


def test_never_overwrite(tmp_path, umask022):
    target = tmp_path / "p.toml"
    assert fsio.write_new(target, "mine") is True and _mode(target) == 0o644
    assert fsio.write_new(target, "theirs") is False
    assert target.read_text() == "mine" and os.listdir(tmp_path) == ["p.toml"]


def test_failure_while_writing_leaves_no_temp_and_old_file(tmp_path):
    target = tmp_path / "x.png"
    target.write_bytes(b"old")

    def boom(fh):
        fh.write(b"half")
        raise OSError(errno.ENOSPC, "No space left on device")
    with pytest.raises(WriteError, match=rf"cannot write PNG to {target}: No space left on device"):
        fsio.write_atomic(target, boom, what="PNG")
    assert target.read_bytes() == b"old" and os.listdir(tmp_path) == ["x.png"]
    with pytest.raises(RuntimeError):  # not an OSError: passed through, still cleaned up
        fsio.write_new(tmp_path / "y.png", lambda fh: (_ for _ in ()).throw(RuntimeError("bug")))
    assert os.listdir(tmp_path) == ["x.png"]


def test_read_only_folder_is_a_domain_error(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root writes into read-only folders")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        with pytest.raises(WriteError, match=rf"cannot write PNG to {ro / 'a.png'}: Permission denied"):
            fsio.write_atomic(ro / "a.png", b"x", what="PNG")
    finally:
        ro.chmod(0o755)


def test_oserror_from_the_rename_names_the_path(tmp_path, monkeypatch):
    def refuse(src, dst):
        raise OSError(errno.EROFS, "Read-only file system")
    monkeypatch.setattr(fsio.os, "replace", refuse)
    with pytest.raises(CreationMixError, match=r"cannot write preset to .*a\.toml: Read-only file system"):
        fsio.write_atomic(tmp_path / "a.toml", "x", what="preset")
    assert os.listdir(tmp_path) == []


def test_no_hard_links_falls_back_to_exclusive_create(tmp_path, monkeypatch, umask022):
    def no_links(src, dst):
        raise OSError(errno.EPERM, "Operation not permitted")
    monkeypatch.setattr(fsio.os, "link", no_links)
    assert fsio.write_new(tmp_path / "a", b"1") and not fsio.write_new(tmp_path / "a", b"2")
    assert (tmp_path / "a").read_bytes() == b"1" and _mode(tmp_path / "a") == 0o644
    assert os.listdir(tmp_path) == ["a"]


def test_numbered_pngs_mode_and_no_collisions(tmp_path, umask022):
    img = Image.new("RGB", (8, 8))
    paths: list = []

    def save():
        paths.append(save_numbered_png(img, tmp_path, 7, "p\nSteps: 1"))
    threads = [threading.Thread(target=save) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(p.name for p in paths) == [f"{i:05d}-7.png" for i in range(6)]
    assert all(_mode(p) == 0o644 for p in paths)
    assert sorted(os.listdir(tmp_path)) == sorted(p.name for p in paths)
