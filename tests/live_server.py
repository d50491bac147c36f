"""Start `app.py` (or `tests/fake_app.py`) as a real server process for the live tests, and stop it.

One place for what every live test needs: a free port, the server's output in a log file (shown when it fails to
start), a readiness check (a line in that log, or an HTTP answer), and a stop that never leaves a process behind.
"""
from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Live:
    proc: subprocess.Popen
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def http_ready(path: str = "/config", codes: tuple[int, ...] = (200, 401)) -> Callable[[Live], bool]:
    """Ready when GET `path` answers one of `codes` (gradio's /config answers 401 before login)."""
    def check(live: Live) -> bool:
        import httpx
        try:
            return httpx.get(live.url + path, timeout=2).status_code in codes
        except httpx.HTTPError:
            return False
    return check


@contextlib.contextmanager
def serve(script: str, args: list[str], log_path: Path, *, ready: str | Callable[[Live], bool],
          env: dict[str, str] | None = None, timeout: float = 180) -> Iterator[Live]:
    """Run `python script --port P *args` from the repository root until the block ends. `ready`: a text the
    server prints when it listens, or a check of the Live server."""
    port = free_port()
    full_env = dict(os.environ, PYTHONUNBUFFERED="1", GRADIO_ANALYTICS_ENABLED="False", HF_HUB_OFFLINE="1",
                    PYTHONPATH=str(ROOT), **(env or {}))
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, script, "--port", str(port), *args], cwd=ROOT, env=full_env,
                                stdout=log, stderr=subprocess.STDOUT)
    live = Live(proc, port, log_path)
    is_ready = ready if callable(ready) else (lambda lv: ready in lv.log())
    try:
        deadline = time.monotonic() + timeout
        while not is_ready(live):
            if proc.poll() is not None:
                pytest.fail(f"{script} exited with {proc.returncode}:\n{live.log()[-4000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"{script} did not start in {timeout:.0f}s:\n{live.log()[-4000:]}")
            time.sleep(0.3)
        yield live
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
