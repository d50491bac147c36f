"""Applying LoRAs to a loaded checkpoint: which LoRAs are on, at what strength, cached between generations.

A LoRA file is read, validated and converted by formats.py, then applied by apply.py as forward hooks on the
layers it touches (unfused, never merged: the checkpoint weights and modules are never changed). A component
whose weight is 0 gets no hook, so weight 0 is bit-identical to no LoRA; nothing has a gradient.

Converted LoRAs stay cached after use (LRU, `max_cached`), so switching back to a LoRA or changing its strength
never reads the file again (`load_count` counts file loads). `prefetch` reads and checks the next LoRAs of a job
(file bytes, header, NaN check, key mapping, AutoV3 hash) on a background thread while the current image
samples; what is left on the generating thread is pointing a few hundred hooks at tensors already in memory.
`fuse` mode (weights merged into the checkpoint) is not supported yet.
"""
from __future__ import annotations

import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from ..errors import LoraError
from .apply import HookSet, LayerLora, layer_parts
from .formats import ConvertedLora, TargetTable, convert, detect_format, load_lora_file, non_finite
from .library import LoraInfo, LoraLibrary
from .tags import LoraRequest

log = logging.getLogger(__name__)


@dataclass
class _Adapter:
    adapter: str  # our id for this loaded file (unique per load, as the hooks name it)
    key: tuple  # (resolved path, size, mtime_ns): an edited file is a new adapter
    info: LoraInfo
    has_te: bool
    parts: list[LayerLora]
    skipped: list[str]


@dataclass(frozen=True)
class ActiveLora:
    name: str  # as the prompt wrote it
    info: LoraInfo
    te_weight: float
    unet_weight: float
    adapter: str


def _skipped_message(name: str, skipped: list[str]) -> str:
    return f"LoRA {name}: {len(skipped)} layer(s) not in this checkpoint were skipped (e.g. {skipped[0]})"


class LoraManager:
    def __init__(self, pipe, library: LoraLibrary, max_cached: int = 8) -> None:
        if max_cached < 1:
            raise ValueError("max_cached must be at least 1")
        self.pipe = pipe
        self.library = library
        self.max_cached = max_cached
        self.load_count = 0  # LoRA files read and loaded into the pipeline
        self.te_version = 0  # bumped whenever what the text encoder computes changes
        self.te_changed = False  # did the last activate() change the text encoder?
        self.active: list[ActiveLora] = []
        self.warnings: list[str] = []
        self._cache: OrderedDict[tuple, _Adapter] = OrderedDict()
        self._serial = 0
        self._table: TargetTable | None = None
        self._hooks = HookSet()
        self._te_key: tuple = ()
        self._prefetched: dict[tuple, Future] = {}  # file key -> ConvertedLora being read in the background
        self._pool: ThreadPoolExecutor | None = None
        self._table_lock = threading.Lock()
        self.prefetch_hits = 0  # activate() calls that found a file already read (what the bench reports)

    # -- public -------------------------------------------------------------------------------------------
    def activate(self, requests: list[LoraRequest]) -> list[ActiveLora]:
        """Make exactly these LoRAs active at these weights (an empty list: none). Unknown names, traversal,
        unreadable or incompatible files raise before the pipeline changes; the previous state stays active."""
        plan: list[tuple[LoraRequest, LoraInfo, float, float, tuple]] = []
        seen: set[tuple] = set()
        for req in requests:
            info = self.library.resolve(req.name)
            if info.error:
                raise LoraError(info.error)
            r = req.resolved(info.default_weight)
            key = self._file_key(info)
            if key in seen:  # the same file under two names (stem and alias): the last one wins
                plan = [p for p in plan if p[4] != key]
            seen.add(key)
            plan.append((req, info, r.te_weight, r.unet_weight, key))

        # Read and validate every new file first: a bad one must not leave others half-loaded.
        new: dict[tuple, tuple[LoraInfo, ConvertedLora]] = {}
        for req, info, _, _, key in plan:
            if key not in self._cache and key not in new:
                new[key] = (info, self._take_prefetched(key) or self._read(info))

        adapters = {key: self._adapter(key, info, conv) for key, (info, conv) in new.items()}
        adapters.update({key: self._cache[key] for *_, key in plan if key in self._cache})
        active = [ActiveLora(req.name, info, te, unet, adapters[key].adapter) for req, info, te, unet, key in plan]
        self._apply(active, adapters.values())  # raises with the previous LoRAs still the ones applied

        for key, (info, conv) in new.items():  # only now do the new files count as loaded
            self._cache[key] = adapters[key]
            self.load_count += 1
            if conv.skipped:
                msg = _skipped_message(info.name, conv.skipped)
                self.warnings.append(msg)
                log.warning(msg)
        for *_, key in plan:
            self._cache.move_to_end(key)
        self._evict({key for *_, key in plan})
        self.active = active
        return active

    def deactivate(self) -> None:
        """No LoRA active; converted LoRAs stay cached (outputs are bit-identical to the plain checkpoint)."""
        self.activate([])

    def unload_all(self) -> None:
        """Forget every cached LoRA and remove every hook: the modules run as the freshly loaded checkpoint's."""
        had_te = bool(self._te_key)
        self._hooks.clear()
        self._cache.clear()
        self.active = []
        self._set_te_key((), force=had_te)

    def prefetch(self, requests: list[LoraRequest]) -> int:
        """Start reading these LoRAs (those not loaded yet) on a background thread; activate() picks them up.
        Nothing here changes the pipeline, and a file that fails is simply read again, and reported, by
        activate(). Returns how many reads were started."""
        started = 0
        self._target_table()  # built on this thread: it walks the live modules
        for req in requests:
            try:
                info = self.library.resolve(req.name)
                key = self._file_key(info)
            except LoraError:
                continue
            if info.error or key in self._cache or key in self._prefetched:
                continue
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lora-prefetch")
            self._prefetched[key] = self._pool.submit(self._read_and_hash, info)
            started += 1
        for stale in list(self._prefetched)[:-self.max_cached]:  # a job that changed course: drop the oldest
            self._prefetched.pop(stale).cancel()
        return started

    def _read_and_hash(self, info: LoraInfo) -> ConvertedLora:
        conv = self._read(info)
        _ = info.hash  # the infotext's "Lora hashes" needs it; hashing.py caches it on disk
        return conv

    def _take_prefetched(self, key: tuple) -> ConvertedLora | None:
        fut = self._prefetched.pop(key, None)
        if fut is None or fut.cancelled():
            return None
        try:
            conv = fut.result()
        except Exception:  # read it again on this thread: the error is then reported as usual
            return None
        self.prefetch_hits += 1
        return conv

    @property
    def cached(self) -> list[str]:
        """Names of the LoRAs held converted in memory, least recently used first."""
        return [a.info.name for a in self._cache.values()]

    @property
    def te_key(self) -> tuple:
        """What the text encoder's LoRAs are, as a hashable key for a prompt-embedding cache."""
        return self._te_key

    def active_warnings(self) -> list[str]:
        """What the user must hear about the LoRAs now active (on every generation, not only the first load)."""
        by_adapter = {a.adapter: a for a in self._cache.values()}
        out = []
        for act in self.active:
            a = by_adapter.get(act.adapter)
            if a is not None and a.skipped:
                out.append(_skipped_message(act.info.name, a.skipped))
        return list(dict.fromkeys(out))

    def lora_hashes(self) -> str:
        """A1111's infotext "Lora hashes" value: `name: autov3, name2: autov3`."""
        return ", ".join(f"{a.name.replace(':', '').replace(',', '')}: {a.info.hash}" for a in self.active)

    # -- loading ------------------------------------------------------------------------------------------
    @staticmethod
    def _file_key(info: LoraInfo) -> tuple:
        p = Path(info.path).resolve()
        try:
            st = p.stat()
        except OSError as e:
            raise LoraError(f"LoRA file {info.path} cannot be read: {e}") from e
        return (str(p), st.st_size, st.st_mtime_ns)

    def _target_table(self) -> TargetTable:
        with self._table_lock:
            if self._table is None:
                self._table = TargetTable.build(getattr(self.pipe, "unet", None),
                                                getattr(self.pipe, "text_encoder", None))
            return self._table

    def _read(self, info: LoraInfo) -> ConvertedLora:
        sd, _meta = load_lora_file(info.path, info.name)
        bad = non_finite(sd)
        if bad:  # applied, NaN weights turn every image black
            raise LoraError(f"LoRA {info.name} has NaN/Inf weights ({len(bad)} tensors, e.g. {bad[0]}): "
                            "the file is broken; retrain or re-download it")
        fmt = detect_format(sd, f"LoRA {info.name}")
        return convert(sd, self._target_table(), f"LoRA {info.name}", fmt)

    def _adapter(self, key: tuple, info: LoraInfo, conv: ConvertedLora) -> _Adapter:
        self._serial += 1
        return _Adapter(f"cm_lora_{self._serial}", key, info, conv.has_te,
                        layer_parts(conv, self._target_table()), conv.skipped)

    def _evict(self, keep: set[tuple]) -> None:
        while len(self._cache) > self.max_cached:
            victim = next((k for k in self._cache if k not in keep), None)
            if victim is None:  # every cached LoRA is in use right now: allow more for this generation
                break
            del self._cache[victim]  # its hooks are gone already: only the active LoRAs have any

    # -- switching ----------------------------------------------------------------------------------------
    def _apply(self, active: list[ActiveLora], adapters) -> None:
        by_id = {a.adapter: a for a in adapters}
        try:
            self._hooks.apply([(a.adapter, {"unet": a.unet_weight, "text_encoder": a.te_weight},
                                by_id[a.adapter].parts) for a in active])
        except Exception as e:
            names = ", ".join(a.info.name for a in active) or "(none)"
            raise LoraError(f"LoRA {names} could not be applied to this checkpoint: {e}") from e
        te_key = tuple((a.adapter, a.te_weight) for a in active if a.te_weight != 0 and by_id[a.adapter].has_te)
        self._set_te_key(te_key)

    def _set_te_key(self, key: tuple, force: bool = False) -> None:
        self.te_changed = force or key != self._te_key
        if self.te_changed:
            self.te_version += 1
        self._te_key = key
