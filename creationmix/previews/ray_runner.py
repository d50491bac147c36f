"""The LoRA-library preview job on a Ray cluster: one long-lived engine per GPU (or per CPU worker).

The driver keeps everything that decides the output — the selection, the resume rule, the file writes, the
summary and the contact sheet (previews/job.py) — and only hands rendering out. Each actor builds one engine,
loads the checkpoint once and then renders one LoRA per call; the driver gives a new LoRA to whichever actor is
free (dynamic balancing, not a pre-split list), plus the one it will render next: the worker stores that file and
reads and checks it in the background while it samples (LoraManager.prefetch), as a local run does. Workers need
no shared filesystem: the LoRA's bytes travel with the call, and the model files (checkpoint, its config sidecar, VAE, embeddings) are put in Ray's object store once
unless the driver says its model folders are shared. A worker returns raw pixels and the infotext, so the driver
writes the same PNG bytes a local run writes.

Faults: a worker that dies mid-LoRA has that LoRA retried on another worker (up to MAX_ATTEMPTS); a LoRA the
engine refuses is a failed outcome, reported once. Interrupt / Ctrl-C stops handing out work, cancels what is in
flight and kills the actors; finished previews stay.
"""
from __future__ import annotations

import dataclasses
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import CreationMixError, InvalidParameter
from ..jobs import Control
from .job import STOP, Rendered

MAX_ATTEMPTS = 3
INSTALL_HINT = "Ray is not installed: pip install 'creationmix[ray]' (or pip install -r requirements-ray.txt)"


def import_ray():
    try:
        import ray
    except ImportError as e:
        raise InvalidParameter(INSTALL_HINT) from e
    return ray


class RayWorkerError(CreationMixError):
    """A LoRA could not be rendered because its workers kept dying (not the LoRA's fault as far as we know)."""


def model_bundle(folders, checkpoint: Path, vae: Path | None) -> dict[str, bytes]:
    """The files a worker needs to render like the driver, keyed by their path in a data dir: the checkpoint
    with its `<stem>.config/` and `<stem>.vae.*` sidecars, the chosen VAE, and every embedding."""
    from ..paths import EMBEDDING_EXTS, list_files
    files: dict[str, bytes] = {}
    ckpt_dir = Path("models", "Stable-diffusion")
    files[(ckpt_dir / checkpoint.name).as_posix()] = checkpoint.read_bytes()
    config = checkpoint.with_suffix(".config")
    if config.is_dir():
        for p in sorted(config.rglob("*")):
            if p.is_file():
                files[(ckpt_dir / config.name / p.relative_to(config)).as_posix()] = p.read_bytes()
    for p in checkpoint.parent.glob(checkpoint.stem + ".vae.*"):
        files[(ckpt_dir / p.name).as_posix()] = p.read_bytes()
    if vae is not None:
        files[Path("models", "VAE", vae.name).as_posix()] = vae.read_bytes()
    for root in folders.embedding_dirs:
        for p in list_files([root], EMBEDDING_EXTS):
            files[Path("embeddings", p.relative_to(root)).as_posix()] = p.read_bytes()
    return files


def worker_options(service, *, device: str):
    """ServiceOptions that rebuild the driver's service on a worker: the same folders, and the checkpoint (and
    operator VAE) a request without one gets on the driver, as files, so every worker renders with that model."""
    from ..compose import ServiceOptions
    folders = service.folders
    vae_files = getattr(folders, "vae_files", ())
    return ServiceOptions(data_dir=Path(folders.data_dir).resolve(),
                          a1111_dir=Path(folders.a1111_dir).resolve() if folders.a1111_dir else None,
                          device=device, precision=service.precision, tiled_vae=service.tiled_vae,
                          checkpoint=Path(service.engine.checkpoint_path(None)).resolve(),
                          vae=Path(vae_files[0]).resolve() if len(vae_files) == 1 else None)


class PreviewWorker:
    """Ray actor body (wrapped with ray.remote at run time, so importing this module needs no Ray).

    Builds its service through the composition root from the driver's options: the same checkpoint, VAE and
    folders (shared), or a private data dir laid out from the shipped bundle; its own LoRA folder, searched
    first, holds the LoRA it was handed."""

    def __init__(self, options, worker_id: str, bundle: dict[str, bytes] | None = None, torch_threads: int = 0):
        import dataclasses

        from .. import startup_gc
        # A fresh worker process: its torch/diffusers imports run without the cyclic GC, which the engine turns
        # back on when its first model load (the first render) ends, as in the CLI.
        startup_gc.begin()

        from ..compose import build_service
        self.id = worker_id
        private = Path(tempfile.mkdtemp(prefix="creationmix-worker-"))
        if torch_threads:
            import torch
            torch.set_num_threads(torch_threads)
        if bundle is not None:  # not shared: {relative path: bytes} of models/ and embeddings/
            data = private / "data"
            for rel, blob in bundle.items():
                dest = data / rel
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_bytes(blob)
            options = dataclasses.replace(options, data_dir=data, a1111_dir=None)
        self.lora_dir = private / "Lora"
        self.lora_dir.mkdir()
        self.engine = build_service(dataclasses.replace(options, lora_dir=self.lora_dir)).engine

    def ping(self) -> str:
        return self.id

    def _store(self, rel_name: str, lora_bytes: bytes) -> Path:
        dest = self.lora_dir / rel_name
        dest.parent.mkdir(parents=True, exist_ok=True)
        if not dest.exists() or dest.read_bytes() != lora_bytes:
            dest.write_bytes(lora_bytes)
        return dest

    def render(self, rel_name: str, lora_bytes: bytes | None, params_dict: dict,
               ahead: tuple[str, bytes, dict] | None = None) -> dict:
        """Render one LoRA. `lora_bytes` None: the file came as an earlier call's `ahead` (already stored and
        read ahead); `ahead` is the LoRA this worker renders next."""
        import numpy as np

        from ..params import GenerationParams
        dest = self.lora_dir / rel_name
        if lora_bytes is not None:
            self._store(rel_name, lora_bytes)
        start = time.perf_counter()
        try:
            if not dest.exists():
                raise CreationMixError(f"worker {self.id}: the LoRA file {rel_name} it was sent ahead is gone")
            params = GenerationParams.from_dict(params_dict)
            hits = self._prefetch_hits()
            if ahead is not None:
                next_rel, next_bytes, next_params = ahead
                self._store(next_rel, next_bytes)
                self.engine.load(params.checkpoint, params.vae)  # what generate does first; reading ahead needs it
                # The engine's LoRA names resolve in this folder: the next file is read while this one samples.
                self.engine.prefetch_loras(GenerationParams.from_dict(next_params))
            res = self.engine.generate(params, save=False)
            read_ahead = self._prefetch_hits() > hits
        except CreationMixError as e:
            return {"error": str(e), "error_type": type(e).__name__, "worker": self.id}
        finally:
            dest.unlink(missing_ok=True)
        image = res.images[0]
        return {"pixels": np.asarray(image).copy(), "infotext": res.infotexts[0], "read_ahead": read_ahead,
                "warnings": list(res.warnings), "seconds": time.perf_counter() - start, "worker": self.id}

    def _prefetch_hits(self) -> int:
        return self.engine.loras.prefetch_hits if self.engine.loras is not None else 0


def local_ray_init_kwargs(cpu_workers: int) -> dict:
    """ray.init arguments for a local cluster on this machine.

    Each actor holds one logical CPU; Ray's own worker processes need a slot besides them, or a 2-CPU box with
    2 actors waits forever for a free one. Logical CPUs are a scheduling count, not a claim on cores."""
    import os
    return dict(num_cpus=max(cpu_workers, os.cpu_count() or 1) + 1, include_dashboard=False, log_to_driver=False,
                configure_logging=False, logging_level="ERROR")


@dataclass(frozen=True)
class RaySettings:
    """How to run a previews job on Ray. `address`: None starts a local Ray sized for the workers; "auto" or
    "ray://host:port" joins a cluster. `cpu_workers`: CPU actors (tests, GPU-less boxes); 0 means one actor per
    GPU of the cluster. `shared_models`: the workers see the driver's model folders at the same paths (a local
    cluster, a shared filesystem); otherwise the model files travel through Ray's object store."""
    address: str | None = None
    cpu_workers: int = 0
    shared_models: bool = True
    torch_threads: int = 0  # 0: the driver's count for CPU workers (identical pixels), torch's default on GPUs


class RayRenderer:
    """A `previews.job` renderer that spreads the LoRAs over Ray actors built from the driver's service."""

    name = "ray"

    def __init__(self, service, settings: RaySettings = RaySettings()):
        self.ray = import_ray()
        self.folders = service.folders
        self.lora_library = service.engine.lora_library
        address, cpu_workers, torch_threads = settings.address, settings.cpu_workers, settings.torch_threads
        self._started_ray = False
        self.read_ahead = 0  # renders whose LoRA the worker had read ahead (the bench and tests report it)
        if not self.ray.is_initialized():
            if address is None:
                self.ray.init(**local_ray_init_kwargs(cpu_workers))
            else:
                self.ray.init(address=address, log_to_driver=False, logging_level="ERROR")
            self._started_ray = True
        gpus = int(self.ray.cluster_resources().get("GPU", 0))
        if cpu_workers:
            count, actor_options, dev = cpu_workers, {"num_cpus": 1}, "cpu"
        elif gpus:
            count, actor_options, dev = gpus, {"num_gpus": 1, "num_cpus": 0}, "cuda"
        else:
            raise InvalidParameter("the Ray cluster has no GPU; use --ray-cpu-workers N to render on CPUs")
        if not torch_threads and dev == "cpu":
            # Ray pins OMP_NUM_THREADS=1 in its workers; CPU kernels reduce in another order with another thread
            # count, which moves a pixel here and there. The driver's count keeps the files identical.
            import torch
            torch_threads = torch.get_num_threads()
        options = worker_options(service, device=service.device or dev)
        bundle = None
        if not settings.shared_models:
            bundle = self.ray.put(model_bundle(self.folders, Path(options.checkpoint),
                                               options.vae if isinstance(options.vae, Path) else None))
            options = dataclasses.replace(options, checkpoint=Path(options.checkpoint).name,
                                          vae=options.vae.name if isinstance(options.vae, Path) else options.vae)
        actor_cls = self.ray.remote(max_restarts=0, max_task_retries=0)(PreviewWorker).options(**actor_options)
        # The bundle goes as a top-level argument: Ray resolves those refs, not refs nested in a dataclass.
        self._spawn = lambda: {f"worker-{i}": actor_cls.remote(options, f"worker-{i}", bundle, torch_threads)
                               for i in range(count)}
        self.actors: dict[str, Any] = {}
        self.workers_started = 0

    def start(self) -> None:
        """Start the workers (each imports torch and builds its engine: seconds). render() does it when the job
        has something to render, so a resumed job with every preview made starts none."""
        if self.actors:
            return
        self.actors = self._spawn()
        self.workers_started += len(self.actors)
        try:
            self.ray.get([a.ping.remote() for a in self.actors.values()])
        except self.ray.exceptions.RayError as e:
            self.shutdown()
            raise CreationMixError(f"a Ray worker could not start its engine: {_first_line(e)}") from e

    # -- the job ------------------------------------------------------------------------------------------------
    def render(self, tasks, *, relay, control: Control):
        ray = self.ray
        queue = list(tasks)
        if not queue:
            self.shutdown()
            return
        self.start()
        attempts: dict[int, int] = {}
        in_flight: dict[Any, tuple[str, Any]] = {}  # ObjectRef -> (actor id, task)
        staged: dict[str, Any] = {}  # actor id -> the task sent to it ahead (its file is there already)
        idle = list(self.actors)

        refused: list = []  # tasks the library already knows are unusable: reported, never shipped

        def next_task():
            while queue:
                task = queue.pop(0)
                if not task.info.error:
                    return task
                refused.append(task)
            return None

        def ship(task, with_bytes: bool = True):
            """A task as render() takes it; without the bytes when the worker holds the file already."""
            data = task.info.path.read_bytes() if with_bytes else None
            return self._rel_name(task.info.path), data, task.params.to_dict()

        try:
            while queue or in_flight or staged:
                if control.interrupted.is_set():
                    self._cancel(in_flight)
                    yield None, STOP
                    return
                while idle:
                    wid = next((w for w in idle if w in staged), idle[0])
                    task = staged.pop(wid, None)
                    held = task is not None
                    if not held:
                        # A new one from the queue, else one sent ahead to a busy worker that has not begun it
                        # (an idle worker at the tail of a job takes it over).
                        task = next_task() or (staged.pop(next(iter(staged))) if staged else None)
                        if task is None:
                            break
                    # Send the next one ahead only when no other idle worker is waiting for work.
                    ahead = next_task() if len(queue) > len(idle) - 1 else None
                    if ahead is not None:
                        staged[wid] = ahead
                    idle.remove(wid)
                    ref = self.actors[wid].render.remote(*ship(task, with_bytes=not held),
                                                         ship(ahead) if ahead is not None else None)
                    in_flight[ref] = (wid, task)
                while refused:
                    from ..errors import LoraError
                    task = refused.pop(0)
                    yield task, LoraError(task.info.error)
                if not in_flight:
                    if queue:  # every worker died
                        yield queue[0], RayWorkerError("every Ray worker died; the remaining LoRAs were not rendered")
                        queue.pop(0)
                        continue
                    break
                done, _ = ray.wait(list(in_flight), num_returns=1, timeout=0.5)
                for ref in done:
                    wid, task = in_flight.pop(ref)
                    try:
                        out = ray.get(ref)
                    except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError):
                        self.actors.pop(wid, None)
                        if wid in staged:  # sent ahead to the dead worker: another one renders it
                            queue.insert(0, staged.pop(wid))
                        n = attempts[id(task)] = attempts.get(id(task), 0) + 1
                        if n >= MAX_ATTEMPTS or not self.actors:
                            yield task, RayWorkerError(f"worker died {n} time(s) while rendering {task.info.name}")
                        else:
                            queue.insert(0, task)  # retried on another worker
                        continue
                    idle.append(wid)
                    yield task, self._result(out)
        except KeyboardInterrupt:
            self._cancel(in_flight)
            yield None, STOP
        finally:
            self.shutdown()

    def _result(self, out: dict):
        from PIL import Image

        from .. import errors
        wid = out["worker"]
        if "error" in out:
            cls = getattr(errors, out.get("error_type", ""), CreationMixError)
            if not (isinstance(cls, type) and issubclass(cls, CreationMixError)):
                cls = CreationMixError
            return cls(out["error"])
        self.read_ahead += bool(out.get("read_ahead"))
        image = Image.fromarray(out["pixels"])
        return Rendered(image, out["infotext"], out["seconds"], tuple(out["warnings"]), wid)

    def _rel_name(self, path: Path) -> str:
        for root in self.folders.lora_dirs:
            try:
                return Path(path).resolve().relative_to(Path(root).resolve()).as_posix()
            except ValueError:
                continue
        return Path(path).name

    def _cancel(self, in_flight) -> None:
        for ref in list(in_flight):
            try:
                self.ray.cancel(ref, force=True)
            except Exception:  # already finished or its worker is gone
                pass
        in_flight.clear()

    def kill(self, worker_id: str) -> None:
        """Kill one worker (what a crashed node looks like to the driver)."""
        actor = self.actors.get(worker_id)
        if actor is not None:
            self.ray.kill(actor, no_restart=True)

    def shutdown(self) -> None:
        for actor in list(self.actors.values()):
            try:
                self.ray.kill(actor, no_restart=True)
            except Exception:  # already dead
                pass
        self.actors.clear()
        if self._started_ray:
            self.ray.shutdown()
            self._started_ray = False


def _first_line(error: Exception) -> str:
    """Ray wraps a worker's exception in a multi-line traceback; the user gets its last, telling line."""
    lines = [ln.strip() for ln in str(error).splitlines() if ln.strip()]
    return lines[-1] if lines else type(error).__name__
