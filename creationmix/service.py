"""The one object the UI talks to: engine + model libraries + presets (implements service_api.ServiceAPI).

The engine (and torch) is imported on first use so that `import creationmix.service` stays cheap.
"""
from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import Callable

from .errors import CreationMixError, PresetError
from .infotext import ParsedInfotext
from .params import GenerationParams
from .presets import PRESETS_DIR
from .paths import Folders
from .jobs import Control, GenerationResult, ProgressEvent
from .queueing import GenerationQueue
from .service_api import LoraCard, PresetCard

log = logging.getLogger(__name__)

DEMO_NAME = "demo-tiny-random.safetensors"
DEMO_BANNER = ("No checkpoint was found, so CreationMix built a tiny random-weight demo model "
               f"({DEMO_NAME}): it makes noise, not pictures. Put a real SD 1.5 checkpoint "
               "(e.g. creationmixV12DStyle_v1.safetensors) in {dir} and press refresh.")


class Service:
    """Build it with `compose.build_service(ServiceOptions(...))`; the constructor is the long form."""

    def __init__(self, folders: Folders, device: str | None = None, precision: str | None = None,
                 checkpoint: str | None = None, presets_dir: Path = PRESETS_DIR, demo_if_empty: bool = True, *,
                 tiled_vae: bool = False, outputs_dir: Path | None = None, create_folders: bool = True,
                 remember_checkpoint: bool = False, max_queue: int = 20):
        self.folders = folders
        self.device, self.precision, self.tiled_vae = device, precision, tiled_vae
        self.presets_dir = presets_dir
        self.outputs_dir = Path(outputs_dir) if outputs_dir is not None else folders.outputs_dir
        self._remember = remember_checkpoint
        if create_folders:
            folders.ensure()
        self._selected = checkpoint or (self._remembered() if remember_checkpoint else None)
        self._demo = False
        if demo_if_empty and not self.list_checkpoints():
            self._build_demo()
        self._engine = None
        self._engine_lock = threading.Lock()
        self._tokenizer = None
        # UI, HTTP API and preview/plot jobs all take their turn on the engine here (bounded: QueueFull).
        self.queue = GenerationQueue(max_queue)

    # -- models ---------------------------------------------------------------------------------------------
    def _build_demo(self) -> None:
        from .models.demo import write_demo_checkpoint  # torch-free: the page must not wait for the model stack
        path = self.folders.checkpoint_dirs[0] / DEMO_NAME
        if not path.exists():
            write_demo_checkpoint(path)
        self._demo = True

    @property
    def engine(self):
        with self._engine_lock:
            if self._engine is None:
                from .logs import route_library_logs
                route_library_logs()  # before the engine's imports: their import-time notices are logs too
                from .engine import Engine
                self._engine = Engine(self.folders, device=self.device, precision=self.precision,
                                      tiled_vae=self.tiled_vae, default_checkpoint=self._selected)
            return self._engine

    def warm_up_in_background(self) -> threading.Thread:
        """Import the model stack and load the default checkpoint off the caller's thread, so the UI page is
        served first; the first generate() waits for it (the engine's lock). Failures are only logged here:
        the first generate() meets the same error and reports it."""
        def run():
            try:
                self.engine.warm_up()
            except Exception as e:  # noqa: BLE001  (a background warm-up must never kill the process)
                log.warning("model warm-up failed: %s", e)
        t = threading.Thread(target=run, name="engine-warm-up", daemon=True)
        t.start()
        return t

    def model_ready(self) -> bool:
        """False while the model is still loading (the UI shows "loading model")."""
        return self._engine is not None and self._engine.ready

    # -- the selected checkpoint ------------------------------------------------------------------------------
    def selected_checkpoint(self) -> str | None:
        """The checkpoint a request without one gets (configured, or the user's last choice); None: the
        engine's rule (the loaded model, else the first listed)."""
        return self._selected

    def _select(self, name: str) -> None:
        if name == self._selected:
            return
        self._selected = name
        if self._engine is not None:
            self._engine.default_checkpoint = name
        if self._remember:
            from .fsio import write_atomic
            try:
                write_atomic(self._selection_file, json.dumps({"checkpoint": name}) + "\n", what="settings")
            except CreationMixError as e:  # remembering is a convenience; the generation itself worked
                log.warning("%s", e)

    @property
    def _selection_file(self) -> Path:
        return Path(self.folders.cache_dir, "selected-checkpoint.json")

    def _remembered(self) -> str | None:
        try:
            name = json.loads(self._selection_file.read_text(encoding="utf-8")).get("checkpoint")
        except (OSError, ValueError, AttributeError):
            return None
        if not isinstance(name, str):
            return None
        try:
            self.folders.resolve_checkpoint(name)
        except CreationMixError:  # the file is gone: fall back to the engine's rule
            return None
        return name

    def list_checkpoints(self) -> list[str]:
        return [_rel_name(p, self.folders.checkpoint_dirs) for p in self.folders.list_checkpoints()]

    def list_vaes(self) -> list[str]:
        return ["Automatic", "None"] + [_rel_name(p, self.folders.vae_dirs) for p in self.folders.list_vaes()]

    def list_upscalers(self) -> list[str]:
        """Hires upscaler choices: latent modes, None/Lanczos/Nearest, then the model files found."""
        from .upscalers.table import list_upscalers
        return [e.name for e in list_upscalers(self.folders)]

    def list_loras(self) -> list[LoraCard]:
        from .lora.library import LoraLibrary
        library = LoraLibrary(self.folders.lora_dirs)
        # A kohya series is one card (its final file, else its last epoch) listing the other epochs.
        shown, hidden = {}, set()
        for s in library.series():
            head = s.final or s.epochs[-1]
            shown[head.path] = tuple(e.name for e in s.epochs if e is not head)
            hidden |= {e.path for e in s.epochs if e is not head}
        cards = []
        for info in library.items:
            if info.path in hidden:
                continue
            cards.append(LoraCard(name=info.name, preferred_weight=info.preferred_weight,
                                  trigger_tags=tuple(info.trigger_tags[:8]), base_model=info.base_model or "",
                                  preview=info.preview, error=info.error, epochs=shown.get(info.path, ())))
        return cards

    def list_lora_series(self) -> list:
        from .epochs.service import series_cards
        from .lora.library import LoraLibrary
        return series_cards(LoraLibrary(self.folders.lora_dirs))

    # -- presets and metadata -------------------------------------------------------------------------------
    def _presets(self):
        from .presets import load_presets
        presets, errors = load_presets(self.presets_dir)
        for e in errors:
            log.warning("%s", e)
        return presets

    def list_presets(self) -> list[PresetCard]:
        return [PresetCard(id=p.id, title=p.title, description=p.description, params=p.to_params(),
                           thumbnail=p.example_path) for p in self._presets()]

    def save_preset(self, params: GenerationParams, title: str) -> Path:
        from .presets import save_preset
        return save_preset(self.presets_dir, params, title)

    def check_preset(self, preset_id: str, checkpoint: str | None) -> str | None:
        from .hashing import sha256_file
        from .presets import verify_checkpoint
        preset = next((p for p in self._presets() if p.id == preset_id), None)
        if preset is None:
            raise PresetError(f"unknown preset {preset_id!r}")
        try:
            sha = sha256_file(self.engine.checkpoint_path(checkpoint), cache_dir=self.folders.cache_dir)
        except CreationMixError:
            sha = None
        return verify_checkpoint(preset, sha)

    def checkpoint_notice(self, checkpoint: str) -> str | None:
        """The presets document CreationMix V1: say so (without blocking) when another checkpoint is selected."""
        from .hashing import sha256_file
        from .presets import CREATIONMIX_V1_SHA256, NOT_CREATIONMIX_WARNING
        path = self.engine.checkpoint_path(checkpoint)
        if sha256_file(path, cache_dir=self.folders.cache_dir) == CREATIONMIX_V1_SHA256:
            return None
        return f"{checkpoint}: {NOT_CREATIONMIX_WARNING} (the preset cards were tuned on it)."

    def list_styles(self):
        from .styles import load_styles
        return load_styles([self.folders.data_dir, *([self.folders.a1111_dir] if self.folders.a1111_dir else [])])

    def parse_infotext(self, text: str) -> GenerationParams:
        from .infotext import parse_infotext
        return parse_infotext(text).params

    def read_infotext(self, text: str) -> ParsedInfotext:
        """The params plus what was not applied (`warnings`, `ignored`) and the source keys (`meta`)."""
        from .infotext import parse_infotext
        return parse_infotext(text)

    def read_image_info(self, path: Path) -> str | None:
        from .pnginfo import read_parameters
        return read_parameters(path)

    def token_count(self, text: str) -> tuple[int, int]:
        from .lora.tags import extract_lora_tags
        from .prompt.encoder import count_tokens, default_tokenizer
        if self._tokenizer is None:  # loading the tokenizer costs more than counting: once per service
            self._tokenizer = default_tokenizer()
        return count_tokens(extract_lora_tags(text)[0], embeddings=self.engine.embeddings, tokenizer=self._tokenizer)

    def banner(self) -> str | None:
        if self._demo and all(n == DEMO_NAME for n in self.list_checkpoints()):
            return DEMO_BANNER.format(dir=self.folders.checkpoint_dirs[0])
        return None

    # -- generation -----------------------------------------------------------------------------------------
    def generate(self, params: GenerationParams, progress: Callable[[ProgressEvent], None] | None = None,
                 control: Control | None = None, *, save: bool = True, select: bool = True) -> GenerationResult:
        """`select=False`: a one-off checkpoint (A1111's override_settings) that does not become the selection."""
        control = control or Control()
        with self.queue.run("txt2img", control, image_count=params.batch_count, hires=params.enable_hires) as job:
            result = self.engine.generate(params, progress=job.relay(progress), control=control, preview_every=4,
                                          outputs_dir=self.outputs_dir, save=save)
        if params.checkpoint and select:
            self._select(params.checkpoint)
        return result

    def load_model(self, checkpoint: str | None, vae: str = "Automatic") -> None:
        """Load (switch to) a checkpoint/VAE now, in the queue, and make it the selected one."""
        with self.queue.run("load"):
            self.engine.load(checkpoint, vae)
        if checkpoint:
            self._select(checkpoint)

    def run_strength_sweep(self, params: GenerationParams | None, lora: str, strengths, seeds: int = 2, *,
                           preset_id: str | None = None, overrides: dict | None = None, progress=None,
                           control: Control | None = None):
        from .xyz.plot import service_strength_sweep
        control = control or Control()
        with self.queue.run("sweep", control) as job:
            return service_strength_sweep(self, params, lora, strengths, seeds, preset_id=preset_id,
                                          overrides=overrides, progress=job.relay(progress), control=control)

    def run_lora_previews(self, preset_id: str, *, names=None, overwrite: bool = False,
                          append_triggers: bool = False, overrides: dict | None = None, progress=None,
                          control: Control | None = None, lora_dir: Path | None = None,
                          missing_only: bool = False, sheet_dir: Path | None = None, ray=None):
        from .previews.job import service_lora_previews
        control = control or Control()
        with self.queue.run("previews", control) as job:
            return service_lora_previews(self, preset_id, names=names, overwrite=overwrite,
                                         append_triggers=append_triggers, overrides=overrides,
                                         progress=job.relay(progress), control=control, lora_dir=lora_dir,
                                         missing_only=missing_only, sheet_dir=sheet_dir, ray=ray)

    def run_epoch_grid(self, series: str, *, prompts_file: Path | None = None, prompts_text: str | None = None,
                       prompts_format: str = "txt", preset_id: str | None = None, strengths=(0.6, 0.8, 1.0),
                       seeds: int = 1, epochs=None, overrides: dict | None = None, publish=None, force: bool = False,
                       preview_name: str = "preview", out_dir: Path | None = None, progress=None,
                       control: Control | None = None):
        from .epochs.service import service_epoch_grid
        control = control or Control()
        # Like every other job: waits its turn on the one engine, and the API's progress/interrupt see it.
        with self.queue.run("epochs", control) as job:
            return service_epoch_grid(self, series, prompts_file=prompts_file, prompts_text=prompts_text,
                                      prompts_format=prompts_format, preset_id=preset_id, strengths=strengths,
                                      seeds=seeds, epochs=epochs, overrides=overrides, publish=publish,
                                      force=force, preview_name=preview_name, out_dir=out_dir,
                                      progress=job.relay(progress), control=control)

    # -- X/Y/Z plots (the CLI plans them; the UI uses run_strength_sweep) -------------------------------------
    def plot_checks(self) -> dict:
        """What plan_xyz / plan_strength_sweep need to refuse unknown names before any image is made."""
        return dict(check_checkpoint=self.engine.checkpoint_path, check_lora=self.engine.lora_library.resolve)

    def run_plot(self, plan, *, progress=None, control: Control | None = None):
        from .xyz.plot import run_plot
        control = control or Control()
        with self.queue.run("plot", control) as job:
            return run_plot(self.engine, plan, outputs_dir=self.outputs_dir, progress=job.relay(progress),
                            control=control)


def _rel_name(path: Path, roots: list[Path]) -> str:
    for root in roots:
        try:
            return path.relative_to(root).as_posix()
        except ValueError:
            continue
    return path.name
