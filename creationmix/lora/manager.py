"""Applying LoRAs to a loaded pipeline as peft adapters (never fused: the checkpoint weights are not touched).

Loading goes through diffusers (`pipe.load_lora_weights` with a state dict already validated and converted by
formats.py). Choosing which adapters are on and at what strength is done here, per peft layer, with the same
calls diffusers' `pipe.set_adapters` makes (`set_adapter` + `set_scale`), because we need three things it does
not give: a component whose weight is 0 is switched off rather than multiplied by 0 (so weight 0 is bit-identical
to no LoRA), adapter weights stay frozen (set_adapters turns requires_grad on), and a strength change only
rewrites the per-layer scales (well under a millisecond instead of re-walking every module).

Adapters stay loaded after use (LRU, `max_cached`), so switching back to a LoRA or changing its strength never
reads the file again (`load_count` counts file loads). `prefetch` reads and checks the next LoRAs of a job (file
bytes, header, NaN check, key mapping, AutoV3 hash) on a background thread while the current image samples; the
injection itself stays on the caller's thread, between images, because peft rewires the very modules the UNet is
running. `fuse` mode is not supported yet.
"""
from __future__ import annotations

import contextlib
import logging
import threading
import warnings
from concurrent.futures import Future, ThreadPoolExecutor
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from ..errors import LoraError
from .formats import ConvertedLora, TargetTable, convert, detect_format, load_lora_file
from .library import LoraInfo, LoraLibrary
from .tags import LoraRequest

log = logging.getLogger(__name__)
COMPONENTS = ("unet", "text_encoder")


@dataclass
class _Adapter:
    adapter: str  # peft adapter name inside the pipeline
    key: tuple  # (resolved path, size, mtime_ns): an edited file is a new adapter
    info: LoraInfo
    has_unet: bool
    has_te: bool
    layers: int
    skipped: list[str]


@dataclass(frozen=True)
class ActiveLora:
    name: str  # as the prompt wrote it
    info: LoraInfo
    te_weight: float
    unet_weight: float
    adapter: str


@contextlib.contextmanager
def _quiet_loading():
    """diffusers warns about "missing keys" for every adapter it loads from a state dict (a false alarm: the
    weights are checked equal in the tests) and transformers draws a progress bar; keep both off our console."""
    import diffusers.utils.logging as dlog
    import transformers.utils.logging as tlog

    d_level, t_level = dlog.get_verbosity(), tlog.get_verbosity()
    bar = tlog.is_progress_bar_enabled()
    dlog.set_verbosity_error()
    tlog.set_verbosity_error()
    tlog.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            # peft: "Already found a `peft_config` attribute" (expected: we keep several adapters) and
            # "Adapter ... was active which is now deleted" (we set the active ones right after).
            warnings.filterwarnings("ignore", message=r".*(peft_config|was active which is now deleted)",
                                    category=UserWarning)
            yield
    finally:
        dlog.set_verbosity(d_level)
        tlog.set_verbosity(t_level)
        if bar:
            tlog.enable_progress_bar()


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
        self._layers: dict[str, list] | None = None  # component -> peft tuner layers (rebuilt after load/delete)
        self._membership: tuple | None = None  # which adapters are on in which component, as last applied
        self._scale_plan: list | None = None  # (layer, component, adapters on) for a strength change
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

        loaded_now: list[str] = []
        try:
            for key, (info, conv) in new.items():
                adapter = self._inject(conv, info)
                loaded_now.append(adapter)
                self._cache[key] = _Adapter(adapter, key, info, conv.has_unet, conv.has_te, len(conv.layers),
                                            conv.skipped)
                if conv.skipped:
                    msg = _skipped_message(info.name, conv.skipped)
                    self.warnings.append(msg)
                    log.warning(msg)
        except Exception:
            for key in [k for k, a in self._cache.items() if a.adapter in loaded_now]:
                self._delete(self._cache.pop(key).adapter)  # loaded fine, but this call as a whole failed
            self._membership = self._scale_plan = None
            self._apply(self.active)  # peft activates what it loads: restore what was on before
            raise

        active = [ActiveLora(req.name, info, te, unet, self._cache[key].adapter) for req, info, te, unet, key in plan]
        for _, _, _, _, key in plan:
            self._cache.move_to_end(key)
        self._evict({key for *_, key in plan})
        self._apply(active)
        self.active = active
        return active

    def deactivate(self) -> None:
        """No LoRA active; adapters stay cached (outputs are bit-identical to the plain checkpoint)."""
        self.activate([])

    def unload_all(self) -> None:
        """Remove every adapter and every peft wrapper: the modules are the freshly loaded checkpoint's again."""
        had_te = bool(self._te_key)
        if self._cache:
            with _quiet_loading():
                self.pipe.unload_lora_weights()
        self._cache.clear()
        self._layers = None
        self._membership = self._scale_plan = None
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
        """Names of the LoRAs loaded in the pipeline, least recently used first."""
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
        bad = [k for k, v in sd.items() if v.is_floating_point() and not bool(v.isfinite().all())]
        if bad:  # applied, NaN weights turn every image black
            raise LoraError(f"LoRA {info.name} has NaN/Inf weights ({len(bad)} tensors, e.g. {bad[0]}): "
                            "the file is broken; retrain or re-download it")
        fmt = detect_format(sd, f"LoRA {info.name}")
        return convert(sd, self._target_table(), f"LoRA {info.name}", fmt)

    def _inject(self, conv: ConvertedLora, info: LoraInfo) -> str:
        self._serial += 1
        adapter = f"cm_lora_{self._serial}"
        self._layers = None
        self._membership = self._scale_plan = None
        try:
            with _quiet_loading():
                self.pipe.load_lora_weights(conv.state_dict, adapter_name=adapter)
        except Exception as e:
            self._delete(adapter)
            raise LoraError(f"LoRA {info.name} could not be applied to this checkpoint: {e}") from e
        self.load_count += 1
        return adapter

    def _delete(self, adapter: str) -> None:
        self._layers = None
        self._membership = self._scale_plan = None
        try:
            with _quiet_loading():
                self.pipe.delete_adapters([adapter])
        except Exception as e:  # a partial load may have left nothing to delete in one component
            log.debug("deleting adapter %s: %s", adapter, e)

    def _evict(self, keep: set[tuple]) -> None:
        while len(self._cache) > self.max_cached:
            victim = next((k for k in self._cache if k not in keep), None)
            if victim is None:  # every cached LoRA is in use right now: allow more for this generation
                break
            self._delete(self._cache.pop(victim).adapter)

    # -- switching ----------------------------------------------------------------------------------------
    def _tuner_layers(self) -> dict[str, list]:
        if self._layers is None:
            from peft.tuners.tuners_utils import BaseTunerLayer

            self._layers = {}
            for comp in COMPONENTS:
                model = getattr(self.pipe, comp, None)
                self._layers[comp] = [] if model is None else [
                    m for m in model.modules() if isinstance(m, BaseTunerLayer)]
        return self._layers

    def _apply(self, active: list[ActiveLora]) -> None:
        weights = {"unet": {}, "text_encoder": {}}
        for a in active:
            if a.unet_weight != 0:
                weights["unet"][a.adapter] = a.unet_weight
            if a.te_weight != 0:
                weights["text_encoder"][a.adapter] = a.te_weight
        membership = tuple((c, tuple(weights[c])) for c in COMPONENTS)
        if membership != self._membership or self._scale_plan is None:
            plan = []
            for comp in COMPONENTS:
                w = weights[comp]
                for layer in self._tuner_layers()[comp]:
                    on = [n for n in w if n in layer.lora_A]
                    if not on:
                        layer.enable_adapters(False)
                        continue
                    layer.set_adapter(on, inference_mode=True)
                    layer._disable_adapters = False  # enable_adapters(True) would turn requires_grad back on
                    plan.append((layer, comp, on))
            self._membership, self._scale_plan = membership, plan
        for layer, comp, on in self._scale_plan:  # a strength change only comes through here
            w = weights[comp]
            for n in on:
                layer.set_scale(n, w[n])
        with_te = {c.adapter for c in self._cache.values() if c.has_te}
        te_key = tuple((n, w) for n, w in weights["text_encoder"].items() if n in with_te)
        self._set_te_key(te_key)

    def _set_te_key(self, key: tuple, force: bool = False) -> None:
        self.te_changed = force or key != self._te_key
        if self.te_changed:
            self.te_version += 1
        self._te_key = key
