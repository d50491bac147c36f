"""Background jobs started over HTTP (LoRA-library previews): an id to poll, progress while it runs, the report
when it is done. The job runs in its own thread and takes its turn in the service's generation queue."""
from __future__ import annotations

import itertools
import logging
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

from ..errors import CreationMixError, Interrupted
from ..jobs import Control, JobProgress
from .errors import ApiError

log = logging.getLogger("creationmix.api")
KEEP = 100  # finished jobs remembered


@dataclass
class Job:
    id: str
    kind: str
    control: Control = field(default_factory=Control)
    status: str = "queued"  # queued | running | done | interrupted | failed
    created: float = field(default_factory=time.time)
    finished: float | None = None
    progress: JobProgress | None = None
    result: Any = None
    error: str | None = None
    exc: BaseException | None = None
    thread: threading.Thread | None = None


class JobStore:
    def __init__(self):
        self._jobs: dict[str, Job] = {}
        self._order = itertools.count()
        self._lock = threading.Lock()

    def start(self, kind: str, fn: Callable[..., Any], *, admit_timeout: float = 10.0) -> Job:
        """Run `fn(progress=..., control=...)` in a thread; return once it has a place in the queue.

        A full queue raises QueueFull here (the caller answers 503) and no job is recorded."""
        job = Job(id=uuid.uuid4().hex[:12], kind=kind)
        failed = threading.Event()

        def progress(p) -> None:
            if isinstance(p, JobProgress):
                job.progress = p
            job.status = "running"

        def work() -> None:
            try:
                job.result = fn(progress=progress, control=job.control)
                job.status = "interrupted" if getattr(job.result, "interrupted", False) else "done"
            except Interrupted:
                job.status = "interrupted"
            except CreationMixError as e:
                job.error, job.status, job.exc = str(e), "failed", e
                if not job.control.queued.is_set():
                    failed.set()
            except Exception as e:  # a bug: keep serving, say so in the job
                log.exception("job %s failed", job.id)
                job.error, job.status = f"unexpected error ({type(e).__name__}: {e}); see the server log", "failed"
                job.exc = e
                failed.set()
            finally:
                job.finished = time.time()

        job.thread = threading.Thread(target=work, name=f"creationmix-api-{kind}", daemon=True)
        job.thread.start()
        deadline = time.monotonic() + admit_timeout
        while not job.control.queued.is_set() and not failed.is_set() and job.thread.is_alive():
            if time.monotonic() > deadline:
                break
            time.sleep(0.01)
        if failed.is_set() and not job.control.queued.is_set():
            if isinstance(job.exc, CreationMixError):
                raise job.exc
            raise ApiError(500, job.error or "job failed")
        with self._lock:
            self._jobs[job.id] = job
            done = [j for j in self._jobs.values() if j.finished is not None]
            for old in sorted(done, key=lambda j: j.finished)[:-KEEP]:
                del self._jobs[old.id]
        return job

    def get(self, job_id: str) -> Job:
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:
            raise ApiError(404, f"no job {job_id!r} (finished jobs are kept for the last {KEEP})", field="id")
        return job
