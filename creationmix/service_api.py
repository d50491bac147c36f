"""What the UI may ask of the back end. Torch-free: the UI imports this module, never the engine.

`creationmix.service.Service` is the real implementation (built by compose.build_service); UI tests use
tests/fake_service.py, which a test holds to every method here.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

from .infotext import ParsedInfotext
from .jobs import Control, GenerationResult, JobProgress, ProgressEvent
from .params import GenerationParams
from .styles import Style


@dataclass(frozen=True)
class LoraCard:
    name: str  # what goes into <lora:NAME:w>
    preferred_weight: float = 1.0
    trigger_tags: tuple[str, ...] = ()
    base_model: str = ""
    preview: Path | None = None
    error: str | None = None
    epochs: tuple[str, ...] = ()  # a kohya series shown as this one card: its other epochs' names, in order


@dataclass(frozen=True)
class SeriesCard:
    """A kohya training run (<name>-000001 ... <name>) for the LoRA epochs tab."""
    name: str
    epochs: tuple[str, ...]  # LoRA names, by epoch, the final file last
    labels: tuple[str, ...]  # `epoch 3 (1200 steps)`, `final: epoch 10 (4000 steps)`
    keys: tuple[str, ...]  # what publish takes for each: `3`, `final`
    preview: Path | None = None
    folder: Path | None = None


@dataclass(frozen=True)
class PresetCard:
    id: str
    title: str
    description: str
    params: GenerationParams
    thumbnail: Path | None = None


class ServiceAPI(Protocol):
    def list_checkpoints(self) -> list[str]: ...
    def list_vaes(self) -> list[str]: ...
    def list_upscalers(self) -> list[str]: ...
    def list_loras(self) -> list[LoraCard]: ...
    def list_presets(self) -> list[PresetCard]: ...
    def save_preset(self, params: GenerationParams, title: str) -> Path: ...
    def parse_infotext(self, text: str) -> GenerationParams: ...
    def read_infotext(self, text: str) -> ParsedInfotext: ...
    def read_image_info(self, path: Path) -> str | None: ...
    def token_count(self, text: str) -> tuple[int, int]: ...
    def banner(self) -> str | None: ...
    def check_preset(self, preset_id: str, checkpoint: str | None) -> str | None: ...
    def checkpoint_notice(self, checkpoint: str) -> str | None: ...  # "not CreationMix V1" note, or None
    def list_styles(self) -> list[Style]: ...  # A1111 styles.csv of the data dir, then of --a1111-dir
    def selected_checkpoint(self) -> str | None: ...
    def generate(self, params: GenerationParams, progress: Callable[[ProgressEvent], None] | None = None,
                 control: Control | None = None) -> GenerationResult: ...
    # Jobs over many images: progress is jobs.JobProgress; Interrupt keeps finished images.
    def run_strength_sweep(self, params: GenerationParams | None, lora: str, strengths: Any, seeds: Any = 2, *,
                           preset_id: str | None = None, overrides: dict[str, Any] | None = None,
                           progress: Callable[[JobProgress], None] | None = None,
                           control: Control | None = None) -> Any: ...  # xyz.plot.PlotResult
    def run_lora_previews(self, preset_id: str, *, names: Any = None, overwrite: bool = False,
                          append_triggers: bool = False, overrides: dict[str, Any] | None = None,
                          progress: Callable[[JobProgress], None] | None = None, control: Control | None = None,
                          lora_dir: Path | None = None, missing_only: bool = False,
                          sheet_dir: Path | None = None,
                          ray: Any = None) -> Any: ...  # previews.job.PreviewReport; ray: ray_runner.RaySettings
    def list_lora_series(self) -> list[SeriesCard]: ...
    def run_epoch_grid(self, series: str, *, prompts_file: Path | None = None, prompts_text: str | None = None,
                       prompts_format: str = "txt", preset_id: str | None = None, strengths: Any = (0.6, 0.8, 1.0),
                       seeds: int = 1, epochs: Any = None, overrides: dict[str, Any] | None = None,
                       publish: Any = None, force: bool = False, preview_name: str = "preview",
                       out_dir: Path | None = None, progress: Callable[[JobProgress], None] | None = None,
                       control: Control | None = None) -> Any: ...  # epochs.job.EpochGridResult (.files)
