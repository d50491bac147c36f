"""What a running job shares with its caller: control flags in, progress events and results out.

Torch-free: the engine, the X/Y/Z and previews jobs, the UI and the API all use these types.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class ProgressEvent:
    step: int  # 1-based step within the current pass
    total: int  # steps in the current pass
    pass_name: str  # "first" or "hires"
    image_index: int  # 0-based index of the batch (batch_count) being generated
    image_count: int  # batch_count
    preview: Any = None  # a PIL.Image (cheap latent->RGB) or None
    eta_s: float | None = None


@dataclass
class Control:
    """Flags the UI sets while a generation runs; the engine checks them every step."""

    interrupted: threading.Event = field(default_factory=threading.Event)
    skipped: threading.Event = field(default_factory=threading.Event)
    queued: threading.Event = field(default_factory=threading.Event)  # set once the job has its place in the queue

    def interrupt(self) -> None:
        self.interrupted.set()

    def skip(self) -> None:
        self.skipped.set()


@dataclass(frozen=True)
class GenerationResult:
    paths: tuple[Path, ...]
    seeds: tuple[int, ...]
    infotexts: tuple[str, ...]
    images: tuple[Any, ...] = ()  # PIL images, same order
    interrupted: bool = False
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class JobProgress:
    done: int  # images finished
    total: int  # images in the job
    event: ProgressEvent | None = None  # the engine's step event for the image(s) being made
    label: str = ""
