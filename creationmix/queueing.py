"""The one generation queue: every job that uses the engine (UI, HTTP API, previews) waits its turn here.

Bounded: more than `max_waiting` jobs waiting behind the running one are refused with QueueFull, before any
work starts. The running job is observable (`current()`): its Control, its latest progress event and preview,
which is what A1111's /progress, /interrupt and /skip act on. Torch-free.
"""
from __future__ import annotations

import contextlib
import itertools
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from .errors import Interrupted, QueueFull
from .jobs import Control, JobProgress, ProgressEvent

_ids = itertools.count(1)


@dataclass
class ActiveJob:
    kind: str  # "txt2img", "previews", "sweep", "load"
    control: Control
    image_count: int = 1  # batches (A1111's job_count before hires doubling)
    hires: bool = False
    id: int = field(default_factory=lambda: next(_ids))
    queued_at: float = field(default_factory=time.time)
    started_at: float | None = None
    event: ProgressEvent | None = None
    preview: Any = None  # the latest live preview (PIL image)
    images_done: int = 0
    images_total: int = 0
    label: str = ""
    _thread: int | None = None

    def observe(self, item) -> None:
        """Record a ProgressEvent (engine) or JobProgress (previews/sweeps) as the job's latest state."""
        if isinstance(item, JobProgress):
            self.images_done, self.images_total, self.label = item.done, item.total, item.label
            item = item.event
        if isinstance(item, ProgressEvent):
            self.event = item
            if item.preview is not None:
                self.preview = item.preview

    def relay(self, progress: Callable | None) -> Callable:
        def relay(item) -> None:
            self.observe(item)
            if progress is not None:
                progress(item)
        return relay


class GenerationQueue:
    def __init__(self, max_waiting: int = 20):
        if max_waiting < 1:
            raise ValueError("max_waiting must be at least 1")
        self.max_waiting = max_waiting
        self._cond = threading.Condition()
        self._waiting: deque[ActiveJob] = deque()
        self._active: ActiveJob | None = None

    def current(self) -> ActiveJob | None:
        return self._active

    def waiting(self) -> int:
        return len(self._waiting)

    @contextlib.contextmanager
    def run(self, kind: str, control: Control | None = None, *, image_count: int = 1,
            hires: bool = False) -> Iterator[ActiveJob]:
        """Wait for the engine, run the body as the current job, release. Re-entrant per thread (a job that
        calls another queued service method keeps its slot). Interrupting a waiting job removes it (Interrupted)."""
        control = control or Control()
        me = threading.get_ident()
        active = self._active
        if active is not None and active._thread == me:
            control.queued.set()
            yield active
            return
        job = ActiveJob(kind=kind, control=control, image_count=image_count, hires=hires)
        with self._cond:
            if len(self._waiting) >= self.max_waiting:
                raise QueueFull(f"the generation queue is full ({len(self._waiting)} job(s) waiting, at most "
                                f"{self.max_waiting}); try again when the current job has finished")
            self._waiting.append(job)
            control.queued.set()
            try:
                while not (self._active is None and self._waiting[0] is job):
                    if control.interrupted.is_set():
                        raise Interrupted("interrupted while waiting in the queue; nothing was generated")
                    self._cond.wait(timeout=0.25)
            except BaseException:
                self._waiting.remove(job)
                self._cond.notify_all()
                raise
            self._waiting.popleft()
            job._thread, job.started_at = me, time.time()
            self._active = job
        try:
            yield job
        finally:
            with self._cond:
                self._active = None
                self._cond.notify_all()
