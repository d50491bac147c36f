"""What `Service.run_epoch_grid` delegates to: find the series, read the prompts, plan, run, publish.

Library code (no CLI/UI import): the CLI, the UI tab and the API all come through here.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from ..errors import InvalidParameter
from ..jobs import Control
from ..lora.series import LoraSeries, find_series
from .job import DEFAULT_STRENGTHS, OUTPUT_KIND, EpochGridResult, parse_strengths, plan_epoch_grid, run_epoch_grid
from .prompts import PromptFile, load_prompt_file, parse_prompt_text

# Where kohya_ss's GUI puts the sample prompts of a run (`<output_dir>/sample/prompt.txt`), then other habits.
PROMPT_FILE_GUESSES = ("sample/prompt.txt", "prompt.txt", "sample_prompts.txt", "sample_prompts.toml")


@dataclass(frozen=True)
class PublishSpec:
    epoch: str  # an epoch number, `final`, or a file name of the series
    strength: float

    @classmethod
    def parse(cls, text: "str | PublishSpec | tuple") -> "PublishSpec":
        if isinstance(text, PublishSpec):
            return text
        if isinstance(text, tuple):
            return cls(str(text[0]), float(text[1]))
        epoch, sep, strength = str(text).rpartition(":")
        try:
            value = float(strength)
        except ValueError:
            value = None
        if not sep or not epoch.strip() or value is None:
            raise InvalidParameter(f"publish {text!r}: write EPOCH:STRENGTH, e.g. 6:0.8 or final:1")
        return cls(epoch.strip(), value)


def guess_prompt_file(series: LoraSeries) -> Path | None:
    for rel in PROMPT_FILE_GUESSES:
        cand = series.folder / rel
        if cand.is_file():
            return cand
    return None


def run_series_epochs(engine, series_name: str, *, prompts_file: Path | None = None, prompts_text: str | None = None,
                      prompts_format: str = "txt", preset=None, strengths: str | Sequence[float] = DEFAULT_STRENGTHS,
                      seeds: int = 1, epochs: Sequence[str] | None = None, overrides: dict[str, Any] | None = None,
                      publish: "str | PublishSpec | None" = None, force: bool = False, preview_name: str = "preview",
                      out_dir: Path | None = None, progress=None, control: Control | None = None) -> EpochGridResult:
    """The whole job on an Engine. `prompts_file` is a trusted local path (CLI, an upload); `prompts_text` the
    file's content (an API caller); neither and no preset: the series folder's own sample prompts, if any."""
    from .publish import preview_target, publish as publish_cell

    library = engine.lora_library
    series = find_series(library, series_name)
    pf: PromptFile | None = None
    if prompts_text is not None:
        pf = parse_prompt_text(prompts_text, f"prompts.{prompts_format.lstrip('.')}")
    elif prompts_file is not None:
        pf = load_prompt_file(prompts_file)
    elif preset is None:
        guess = guess_prompt_file(series)
        if guess is None:
            raise InvalidParameter(f"series {series.name!r}: give a prompt file (kohya .txt/.toml/.json, OneTrainer "
                                   f"samples.json) or a preset card; none found in {series.folder} "
                                   f"({', '.join(PROMPT_FILE_GUESSES)})")
        pf = load_prompt_file(guess)
    spec = PublishSpec.parse(publish) if publish is not None else None
    values = parse_strengths(strengths)
    target_entry = None
    if spec is not None:
        target_entry = series.find(spec.epoch)
        preview_target(target_entry.path, preview_name)  # a bad name fails before any image
        if not force:  # so does a sidecar we would refuse to merge into
            from .publish import read_user_metadata
            read_user_metadata(target_entry.path.with_suffix(".json"))
        if round(spec.strength, 4) not in values:
            values.append(round(spec.strength, 4))
        if epochs and target_entry.path not in [series.find(k).path for k in epochs]:
            epochs = list(epochs) + [spec.epoch]
    out = Path(out_dir) if out_dir is not None else Path(engine.folders.outputs_dir) / OUTPUT_KIND
    if overrides and overrides.get("checkpoint"):
        engine.checkpoint_path(overrides["checkpoint"])  # an unknown checkpoint fails before any image
    plan = plan_epoch_grid(series, pf.prompts if pf else None, preset=preset, strengths=values, seeds=seeds,
                           epochs=epochs, overrides=overrides, out_dir=out)
    result = run_epoch_grid(engine, plan, progress=progress, control=control)
    result.warnings = (pf.warnings if pf else []) + result.warnings
    if spec is not None and not result.interrupted:
        grid = plan.prompts[0]
        cell = grid.cell(target_entry, round(spec.strength, 4), grid.seeds[0])
        model = getattr(getattr(engine, "model", None), "name", None)
        sample = pf.prompts[0].prompt if pf else None
        result.published = publish_cell(cell, series, force=force, preview_name=preview_name, sample_prompt=sample,
                                        checkpoint=cell.params.checkpoint or model)
        library.refresh()  # the new preview / sidecar show on the cards
    return result


def service_epoch_grid(service, series: str, *, preset_id: str | None = None, out_dir: Path | None = None,
                       **kw) -> EpochGridResult:
    """Service.run_epoch_grid: the service's engine, presets folder and outputs folder."""
    from ..presets_resolve import load_preset_by_id
    preset = load_preset_by_id(preset_id, service.presets_dir) if preset_id else None
    out = Path(out_dir) if out_dir is not None else Path(service.outputs_dir) / OUTPUT_KIND
    return run_series_epochs(service.engine, series, preset=preset, out_dir=out, **kw)


def series_cards(library) -> list:
    """service_api.SeriesCard for every kohya series in the library (the UI's epochs tab lists these)."""
    from ..service_api import SeriesCard
    cards = []
    for s in library.series():
        keys = tuple("final" if e.final else str(e.epoch) for e in s.epochs)
        shown = s.final or s.epochs[-1]
        cards.append(SeriesCard(name=s.name, epochs=tuple(s.names), labels=tuple(e.label for e in s.epochs),
                                keys=keys, preview=shown.info.preview, folder=s.folder))
    return cards
