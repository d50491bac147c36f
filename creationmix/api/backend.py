"""Everything the HTTP API asks of the service, in one place (the glue to `creationmix.service.Service`).

The routes never touch the service, engine or folders directly: when the composition root changes, only this
module adapts. Names from HTTP resolve only against what these listings return, i.e. only inside the
configured folders.
"""
from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..paths import VAE_EXTS, list_files
from .errors import ApiError


@dataclass(frozen=True)
class CheckpointEntry:
    name: str  # relative to its checkpoint folder: what GenerationParams.checkpoint takes
    path: Path
    sha256: str | None  # only when already known (never hashed for a listing)

    @property
    def model_name(self) -> str:
        return Path(self.name).with_suffix("").as_posix().replace("/", "_")

    @property
    def shorthash(self) -> str | None:
        return self.sha256[:10] if self.sha256 else None

    @property
    def title(self) -> str:
        return f"{self.name} [{self.shorthash}]" if self.shorthash else self.name


class Backend:
    def __init__(self, service):
        self.service = service
        self.folders = service.folders
        self._loras = None
        self._lock = threading.Lock()

    # -- models -----------------------------------------------------------------------------------------------
    def checkpoints(self) -> list[CheckpointEntry]:
        from ..hashing import cached_sha256
        roots = self.folders.checkpoint_dirs
        out = []
        for p in self.folders.list_checkpoints():
            out.append(CheckpointEntry(_rel(p, roots), p, cached_sha256(p, self.folders.cache_dir)))
        return out

    def resolve_checkpoint(self, name: str) -> str:
        """A1111 accepts a checkpoint's title, file name, name without extension or short hash."""
        text = str(name).strip()
        if text.endswith("]") and " [" in text:
            text = text[: text.rindex(" [")]
        entries = self.checkpoints()
        for e in entries:
            if text in (e.name, e.title, e.model_name, Path(e.name).name, Path(e.name).stem, e.path.stem) or (
                    e.shorthash and text in (e.shorthash, e.sha256)):
                return e.name
        raise ApiError(404, f"checkpoint {name!r} not found; available: "
                            f"{', '.join(e.title for e in entries) or 'none'}", field="sd_model_checkpoint")

    def vaes(self) -> list[tuple[str, Path]]:
        roots = self.folders.vae_dirs
        return [(_rel(p, roots), p) for p in list_files(roots, VAE_EXTS)]

    def resolve_vae(self, name: str) -> str:
        if name in ("Automatic", "None"):
            return name
        for rel, p in self.vaes():
            if name in (rel, p.name, p.stem):
                return rel
        raise ApiError(404, f"VAE {name!r} not found; available: Automatic, None"
                            + "".join(f", {rel}" for rel, _ in self.vaes()), field="sd_vae")

    def current_checkpoint(self) -> str | None:
        """The checkpoint the engine has loaded (None before the first generation)."""
        engine = getattr(self.service, "_engine", None)
        model = getattr(engine, "model", None)
        if model is None:
            return None
        return _rel(Path(model.path), self.folders.checkpoint_dirs)

    def default_checkpoint(self) -> str | None:
        """What a request without a checkpoint gets: the service's selection, the loaded one, else the first."""
        cur = self.service.selected_checkpoint() or self.current_checkpoint()
        if cur:
            return cur
        names = self.service.list_checkpoints()
        return names[0] if names else None

    def load_model(self, checkpoint: str | None, vae: str) -> None:
        """Load now (in the queue) and make it the service's selected checkpoint."""
        self.service.load_model(checkpoint, vae)

    # -- LoRAs and embeddings -------------------------------------------------------------------------------------
    def loras(self, refresh: bool = False) -> list:
        from ..lora.library import LoraLibrary
        with self._lock:
            if self._loras is None:
                self._loras = LoraLibrary(self.folders.lora_dirs)
            elif refresh:
                self._loras.refresh()
            return list(self._loras)

    def embeddings(self) -> dict[str, dict[str, Any]]:
        lib = self.service.engine.embeddings
        lib.reload()
        out = {}
        for emb in lib:
            out[emb.name] = {"step": getattr(emb, "step", None), "sd_checkpoint": getattr(emb, "sd_checkpoint", None),
                             "sd_checkpoint_name": getattr(emb, "sd_checkpoint_name", None),
                             "shape": emb.width, "vectors": emb.num_vectors}
        return out

    # -- generation -----------------------------------------------------------------------------------------------
    def generate(self, params, *, save: bool, control, select: bool = True):
        return self.service.generate(params, control=control, save=save, select=select)

    def run_previews(self, preset_id: str, **kw):
        return self.service.run_lora_previews(preset_id, **kw)

    def queue(self):
        return self.service.queue

    def parse_infotext(self, text: str):
        from ..infotext import parse_infotext
        return parse_infotext(text)

    def samplers(self) -> tuple[str, ...]:
        from ..params import SAMPLERS
        return SAMPLERS

    @property
    def data_dir(self) -> Path:
        return Path(self.folders.data_dir)


def _rel(path: Path, roots: list[Path]) -> str:
    for root in roots:
        try:
            return Path(path).relative_to(root).as_posix()
        except ValueError:
            continue
    return Path(path).name


def memory() -> dict:
    """A1111's /memory: RAM of this machine and process, CUDA when torch has it."""
    ram: dict[str, Any]
    try:
        import psutil
        vm, proc = psutil.virtual_memory(), psutil.Process(os.getpid())
        ram = {"free": vm.available, "used": proc.memory_info().rss, "total": vm.total}
    except Exception as e:  # psutil missing or restricted: say so, as A1111 does
        ram = {"error": f"{type(e).__name__}: {e}"}
    import sys
    torch = sys.modules.get("torch")
    cuda: dict[str, Any] = {"error": "unavailable"}
    if torch is not None:
        try:
            if torch.cuda.is_available():
                free, total = torch.cuda.mem_get_info()
                stats = torch.cuda.memory_stats()
                cuda = {"system": {"free": free, "used": total - free, "total": total},
                        "active": {"current": stats.get("active_bytes.all.current", 0),
                                   "peak": stats.get("active_bytes.all.peak", 0)},
                        "allocated": {"current": stats.get("allocated_bytes.all.current", 0),
                                      "peak": stats.get("allocated_bytes.all.peak", 0)},
                        "reserved": {"current": stats.get("reserved_bytes.all.current", 0),
                                     "peak": stats.get("reserved_bytes.all.peak", 0)}}
        except Exception as e:
            cuda = {"error": f"{type(e).__name__}: {e}"}
    return {"ram": ram, "cuda": cuda}
