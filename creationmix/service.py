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
from .params import GenerationParams
from .presets import PRESETS_DIR
from .paths import Folders
from .jobs import Control, GenerationResult, ProgressEvent
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
                 remember_checkpoint: bool = False):
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

    # -- models ---------------------------------------------------------------------------------------------
    def _build_demo(self) -> None:
        from .models.tiny import write_tiny_checkpoint
        path = self.folders.checkpoint_dirs[0] / DEMO_NAME
        if not path.exists():
            write_tiny_checkpoint(path)
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

    def list_loras(self) -> list[LoraCard]:
        from .lora.library import LoraLibrary
        cards = []
        for info in LoraLibrary(self.folders.lora_dirs).scan():
            cards.append(LoraCard(name=info.name, preferred_weight=info.preferred_weight,
                                  trigger_tags=tuple(info.trigger_tags[:8]), base_model=info.base_model or "",
                                  preview=info.preview, error=info.error))
        return cards

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
                 control: Control | None = None) -> GenerationResult:
        result = self.engine.generate(params, progress=progress, control=control, preview_every=4,
                                      outputs_dir=self.outputs_dir)
        if params.checkpoint:
            self._select(params.checkpoint)
        return result

    def run_strength_sweep(self, params: GenerationParams | None, lora: str, strengths, seeds: int = 2, *,
                           preset_id: str | None = None, overrides: dict | None = None, progress=None,
                           control: Control | None = None):
        from .xyz.plot import service_strength_sweep
        return service_strength_sweep(self, params, lora, strengths, seeds, preset_id=preset_id,
                                      overrides=overrides, progress=progress, control=control)

    def run_lora_previews(self, preset_id: str, *, names=None, overwrite: bool = False,
                          append_triggers: bool = False, overrides: dict | None = None, progress=None,
                          control: Control | None = None, lora_dir: Path | None = None,
                          missing_only: bool = False, sheet_dir: Path | None = None):
        from .previews.job import service_lora_previews
        return service_lora_previews(self, preset_id, names=names, overwrite=overwrite,
                                     append_triggers=append_triggers, overrides=overrides, progress=progress,
                                     control=control, lora_dir=lora_dir, missing_only=missing_only,
                                     sheet_dir=sheet_dir)

    # -- X/Y/Z plots (the CLI plans them; the UI uses run_strength_sweep) -------------------------------------
    def plot_checks(self) -> dict:
        """What plan_xyz / plan_strength_sweep need to refuse unknown names before any image is made."""
        return dict(check_checkpoint=self.engine.checkpoint_path, check_lora=self.engine.lora_library.resolve)

    def run_plot(self, plan, *, progress=None, control: Control | None = None):
        from .xyz.plot import run_plot
        return run_plot(self.engine, plan, outputs_dir=self.outputs_dir, progress=progress, control=control)


def _rel_name(path: Path, roots: list[Path]) -> str:
    for root in roots:
        try:
            return path.relative_to(root).as_posix()
        except ValueError:
            continue
    return path.name
