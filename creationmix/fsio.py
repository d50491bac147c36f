"""The one way files are written: whole or not at all, readable like any other saved file.

A temp file in the target folder is written and fsynced, then renamed over the target (`write_atomic`) or
hard-linked to a name that must not exist yet (`write_new`, `write_new_numbered`): readers never see half a
file and a never-overwrite writer never clobbers another writer's file. The result has mode 0666 minus the
umask (0644 usually; mkstemp alone would leave 0600). An OSError becomes a WriteError naming the path and
the reason, e.g. `cannot write PNG to /x/y.png: Read-only file system`.
"""
from __future__ import annotations

import errno
import os
import tempfile
import threading
from pathlib import Path
from typing import BinaryIO, Callable, Union

from .errors import WriteError

Content = Union[bytes, str, Callable[[BinaryIO], None]]  # str is written as UTF-8 with \n line ends
_umask_lock = threading.Lock()
_NO_LINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK, getattr(errno, "ENOTSUP", -1)}


def _file_mode() -> int:
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    with _umask_lock:  # no /proc: read the umask by setting it (and at once back)
        mask = os.umask(0o022)
        os.umask(mask)
    return 0o666 & ~mask


def _reason(e: OSError) -> str:
    return e.strerror or str(e)


def _stage(folder: Path, content: Content, what: str, target: Path) -> Path:
    """Write `content` to a fresh temp file in `folder`; returns its path (the caller publishes or drops it)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
    except OSError as e:
        raise WriteError(f"cannot write {what} to {target}: {_reason(e)}") from e
    try:
        with os.fdopen(fd, "wb") as fh:
            if callable(content):
                content(fh)
            else:
                fh.write(content.encode("utf-8") if isinstance(content, str) else content)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, _file_mode())
    except BaseException as e:
        _drop(tmp)
        if isinstance(e, OSError):
            raise WriteError(f"cannot write {what} to {target}: {_reason(e)}") from e
        raise
    return Path(tmp)


def _drop(tmp) -> None:
    try:
        os.unlink(tmp)
    except FileNotFoundError:
        pass


def _link_new(tmp: Path, target: Path) -> bool:
    """Publish `tmp` as `target` unless it exists (False then)."""
    try:
        os.link(tmp, target)
        return True
    except FileExistsError:
        return False
    except OSError as e:
        if e.errno not in _NO_LINKS:
            raise
    # No hard links on this file system (FAT, some network shares): exclusive create is the next best thing.
    try:
        with open(target, "xb") as out, open(tmp, "rb") as src:
            while chunk := src.read(1 << 20):
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(target, _file_mode())
        return True
    except FileExistsError:
        return False


def write_atomic(target: str | os.PathLike, content: Content, *, what: str = "file") -> Path:
    """Write `target` whole, replacing any file there. `what` names it in errors ("PNG", "preset", ...)."""
    target = Path(target)
    tmp = _stage(target.parent, content, what, target)
    try:
        os.replace(tmp, target)
    except OSError as e:
        raise WriteError(f"cannot write {what} to {target}: {_reason(e)}") from e
    finally:
        _drop(tmp)
    return target


def write_new(target: str | os.PathLike, content: Content, *, what: str = "file") -> bool:
    """Write `target` whole unless a file is there already: False, and the existing file is untouched."""
    target = Path(target)
    tmp = _stage(target.parent, content, what, target)
    try:
        return _link_new(tmp, target)
    except OSError as e:
        raise WriteError(f"cannot write {what} to {target}: {_reason(e)}") from e
    finally:
        _drop(tmp)


def write_new_numbered(folder: str | os.PathLike, content: Content, next_name: Callable[[], str], *,
                       what: str = "file", tries: int = 1000) -> Path:
    """Write once, then publish under `next_name()` in `folder`, never over an existing file: on a collision
    (another writer took that number meanwhile) `next_name()` is asked again."""
    folder = Path(folder)
    first = None
    tmp = None
    try:
        for _ in range(tries):
            target = folder / next_name()
            if tmp is None:
                first = target
                tmp = _stage(folder, content, what, target)
            if _link_new(tmp, target):
                return target
        raise WriteError(f"cannot write {what} to {folder}: no free file name after {tries} tries")
    except WriteError:
        raise
    except OSError as e:
        raise WriteError(f"cannot write {what} to {first or folder}: {_reason(e)}") from e
    finally:
        if tmp is not None:
            _drop(tmp)
