"""Which epoch, at which strength: every epoch of a kohya series x several strengths, one grid per prompt.

Each cell is its own PNG with the full infotext, at a path that says what it is
(`outputs/lora-epochs/<series>/<NN>-<prompt>-<key>/<e000003|final>_w<strength>_s<seed>.png`), so a re-run
skips every cell already there and an interrupted job resumes. `<key>` hashes the cell's parameters without
LoRA and seed: another preset or prompt gets another folder, never a stale cell. A random seed is drawn once
and kept in the folder's job.json, so every cell of a prompt (and every later run) shares the seeds.

Parameters: the preset (or kohya's sampling defaults: 30 steps, 512x512, CFG 7.5, DDIM, the LoRA's own clip
skip) fills what the prompt file leaves out; the file's values win; explicit overrides win over both. The LoRA
goes in as ` <lora:NAME:W>` after the prompt (into the card's LoRA slot when the prompt is the card's);
strength 0 is the base model, without the tag.
"""
from __future__ import annotations

import hashlib
import json
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from ..errors import CreationMixError, Interrupted, InvalidParameter, LoraError
from ..jobs import Control, JobProgress, ProgressEvent
from ..lora.series import EpochEntry, LoraSeries
from ..lora.tags import format_weight
from ..params import MAX_SEED, GenerationParams
from .prompts import SamplePrompt

LORA_SLOT = "<lora:{lora}:{weight}>"
SCRIPT_NAME = "LoRA epochs"
OUTPUT_KIND = "lora-epochs"
DEFAULT_STRENGTHS: tuple[float, ...] = (0.6, 0.8, 1.0)
MAX_CELLS = 2000
# What sd-scripts' sample_image_inference uses when the prompt does not say (its default --sample_sampler is ddim).
KOHYA_DEFAULTS = dict(steps=30, width=512, height=512, cfg_scale=7.5, sampler="DDIM")
JOB_FILE = "job.json"


@dataclass
class EpochCell:
    prompt_index: int
    entry: EpochEntry
    strength: float
    seed: int
    params: GenerationParams
    path: Path
    status: str = "pending"  # done | skipped (there already) | failed | pending (not reached)
    image: Any = None
    infotext: str | None = None
    reason: str = ""


@dataclass
class PromptGrid:
    index: int
    template: str  # the prompt with LORA_SLOT where the LoRA goes
    base: GenerationParams  # without LoRA, seed = the first shared seed
    folder: Path
    seeds: list[int]
    cells: list[EpochCell]
    grid_paths: list[Path] = field(default_factory=list)

    def cell(self, entry: EpochEntry, strength: float, seed: int) -> EpochCell | None:
        return next((c for c in self.cells if c.entry.path == entry.path and c.strength == strength
                     and c.seed == seed), None)


@dataclass
class EpochPlan:
    series: LoraSeries
    entries: list[EpochEntry]
    strengths: list[float]
    prompts: list[PromptGrid]
    warnings: list[str] = field(default_factory=list)

    @property
    def cells(self) -> list[EpochCell]:
        return [c for g in self.prompts for c in g.cells]


@dataclass
class EpochGridResult:
    plan: EpochPlan
    interrupted: bool = False
    warnings: list[str] = field(default_factory=list)
    published: Any = None  # publish.PublishResult

    @property
    def series(self) -> LoraSeries:
        return self.plan.series

    @property
    def cells(self) -> list[EpochCell]:
        return self.plan.cells

    @property
    def grid_paths(self) -> list[Path]:
        return [p for g in self.plan.prompts for p in g.grid_paths]

    @property
    def files(self) -> list[Path]:
        """Every cell PNG there is (made now or before), the grids, and what publishing wrote."""
        out = [c.path for c in self.cells if c.status in ("done", "skipped")] + self.grid_paths
        if self.published is not None:
            out += self.published.files
        return out

    def count(self, status: str) -> int:
        return sum(1 for c in self.cells if c.status == status)

    def summary(self) -> str:
        text = (f"{self.count('done')} cells made, {self.count('skipped')} already there, "
                f"{self.count('failed')} failed")
        if self.interrupted:
            text += f", {self.count('pending')} not reached (interrupted)"
        for c in self.cells:
            if c.status == "failed":
                text += f"\n  failed {c.entry.name} at {format_weight(c.strength)}: {c.reason}"
        return text


# -- planning ------------------------------------------------------------------------------------------------------
def parse_strengths(value: str | Sequence[float]) -> list[float]:
    if isinstance(value, str):
        parts = [p.strip() for p in value.split(",") if p.strip()]
        try:
            out = [float(p) for p in parts]
        except ValueError:
            raise InvalidParameter(f"strengths must be numbers separated by commas (0.6,0.8,1.0), got {value!r}") \
                from None
    else:
        out = [float(v) for v in value]
    if not out:
        raise InvalidParameter("give at least one strength (e.g. 0.6,0.8,1.0)")
    for v in out:
        if not -4 <= v <= 4:
            raise InvalidParameter(f"strength {v:g} is outside -4..4")
    return list(dict.fromkeys(round(v, 4) for v in out))


def _slug(text: str, n: int = 32) -> str:
    text = re.sub(r"<[^>]*>", "", text)
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:n].strip("-") or "prompt"


def _key(template: str, base: GenerationParams) -> str:
    data = base.replace(prompt=template, seed=0).to_dict()
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:8]


def fill(template: str, name: str, strength: float) -> str:
    if strength == 0:
        return template.replace(" " + LORA_SLOT, "").replace(LORA_SLOT, "").rstrip()
    return template.replace(LORA_SLOT, f"<lora:{name}:{format_weight(strength)}>")


def _preset_base(preset) -> tuple[GenerationParams, str]:
    """(the card's params without its LoRA, its prompt with the slot where the LoRA goes)."""
    data = dict(preset.params)
    data["prompt"], data["negative_prompt"] = preset.prompt, preset.negative_prompt
    if preset.has_lora_slot:
        template = preset.prompt
        data["prompt"] = preset.prompt.replace(LORA_SLOT, "")
        if LORA_SLOT in str(data.get("hires_prompt", "")):
            data["hires_prompt"] = data["hires_prompt"].replace(LORA_SLOT, "")
    else:
        template = f"{preset.prompt.rstrip()} {LORA_SLOT}"
    return GenerationParams.from_dict(data), template


def _clip_skip(series: LoraSeries) -> int | None:
    for e in reversed(series.epochs):
        raw = e.info.metadata.get("ss_clip_skip")
        try:
            v = int(raw)
        except (TypeError, ValueError):
            continue
        if 1 <= v <= 12:
            return v
    return None


def _stored_seed(folder: Path) -> int | None:
    try:
        data = json.loads((folder / JOB_FILE).read_text(encoding="utf-8"))
        seed = int(data["seed"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return seed if 0 <= seed <= MAX_SEED else None


def plan_epoch_grid(series: LoraSeries, prompts: Sequence[SamplePrompt] | None = None, *, preset=None,
                    strengths: str | Sequence[float] = DEFAULT_STRENGTHS, seeds: int = 1,
                    epochs: Sequence[str] | None = None, overrides: dict[str, Any] | None = None,
                    out_dir: Path, rand: random.Random | None = None, max_cells: int = MAX_CELLS) -> EpochPlan:
    """Every cell's parameters and file, checked; nothing is generated. `prompts` None: the preset's own prompt."""
    if not series.epochs:
        raise InvalidParameter(f"series {series.name!r} has no usable LoRA files")
    if prompts is None and preset is None:
        raise InvalidParameter("give a prompt file or a preset card (its prompt is used)")
    if isinstance(seeds, bool) or not isinstance(seeds, int) or not 1 <= seeds <= 64:
        raise InvalidParameter(f"seeds must be a whole number from 1 to 64, got {seeds!r}")
    values = parse_strengths(strengths)
    entries = [series.find(k) for k in epochs] if epochs else list(series.epochs)
    entries = list({e.path: e for e in entries}.values())
    rand = rand or random.Random()
    warnings: list[str] = []
    if preset is not None:
        base, card_template = _preset_base(preset)
    else:
        base, card_template = GenerationParams(**KOHYA_DEFAULTS), ""
        clip = _clip_skip(series)
        if clip is not None:
            base = base.replace(clip_skip=clip)
    items = list(prompts) if prompts is not None else [None]
    total = len(items) * len(entries) * len(values) * seeds
    if total > max_cells:
        raise InvalidParameter(f"the job has {total} cells ({len(items)} prompts x {len(entries)} epochs x "
                               f"{len(values)} strengths x {seeds} seeds), more than {max_cells}")
    grids = []
    root = Path(out_dir) / series.name
    for i, sp in enumerate(items):
        try:
            if sp is None:
                p, template = base, card_template
            else:
                p = base.replace(**{k: v for k, v in sp.overrides().items() if k != "prompt"})
                template = f"{sp.prompt.rstrip()} {LORA_SLOT}"
                p = p.replace(prompt=sp.prompt)
            if overrides:
                p = p.replace(**{k: v for k, v in overrides.items() if k != "prompt"})
            p = p.replace(batch_size=1, batch_count=1)
        except InvalidParameter as e:
            where = sp.where if sp is not None else f"preset {preset.id}"
            raise InvalidParameter(f"{where}: {e}") from None
        folder = root / f"{i + 1:02d}-{_slug(template)}-{_key(template, p)}"
        first = p.seed if p.seed != -1 else (_stored_seed(folder) or rand.randint(0, MAX_SEED))
        shared = [min(first + k, MAX_SEED) for k in range(seeds)]
        p = p.replace(seed=first)
        cells = []
        for entry in entries:
            for w in values:
                for s in shared:
                    cp = p.replace(prompt=fill(template, entry.name, w), seed=s)
                    if LORA_SLOT in (p.hires_prompt or ""):
                        cp = cp.replace(hires_prompt=fill(p.hires_prompt, entry.name, w))
                    name = f"{'base' if w == 0 else entry.tag}_w{format_weight(w)}_s{s}.png"
                    cells.append(EpochCell(i, entry, w, s, cp, folder / name))
        grids.append(PromptGrid(i, template, p, folder, shared, cells))
    return EpochPlan(series=series, entries=entries, strengths=values, prompts=grids, warnings=warnings)


# -- running -------------------------------------------------------------------------------------------------------
def _load_existing(cell: EpochCell) -> bool:
    from PIL import Image

    from ..pnginfo import read_parameters
    try:
        with Image.open(cell.path) as im:
            cell.image = im.convert("RGB")
        cell.infotext = read_parameters(cell.path)
    except OSError:
        return False  # a broken file is made again
    return True


def _write_job_file(grid: PromptGrid) -> None:
    from ..fsio import write_atomic
    grid.folder.mkdir(parents=True, exist_ok=True)
    data = {"script": SCRIPT_NAME, "prompt": grid.template, "seed": grid.seeds[0], "seeds": grid.seeds,
            "params": grid.base.to_dict()}
    write_atomic(grid.folder / JOB_FILE, json.dumps(data, indent=2, ensure_ascii=False) + "\n", what="job record")


def run_epoch_grid(engine, plan: EpochPlan, *, progress: Callable[[JobProgress], None] | None = None,
                   control: Control | None = None) -> EpochGridResult:
    """Make the missing cells (engine: creationmix.engine.Engine), then draw every grid.

    Cells run epoch by epoch, so each LoRA file is applied once for all its strengths and prompts. Interrupting
    (control.interrupt() or Ctrl-C) keeps every finished cell; the grids show grey boxes where cells are missing."""
    from ..previews.job import write_png_no_clobber

    control = control or Control()
    result = EpochGridResult(plan=plan, warnings=list(plan.warnings))
    for grid in plan.prompts:
        _write_job_file(grid)
    order = sorted(plan.cells, key=lambda c: (plan.entries.index(c.entry) if c.strength else -1, c.prompt_index,
                                              c.strength, c.seed))
    total, done = len(order), 0
    label = ""

    def relay(ev: ProgressEvent) -> None:
        if progress is not None:
            progress(JobProgress(done, total, ev, label=label))

    made: dict[GenerationParams, EpochCell] = {}  # strength 0 is one image for every epoch
    for i, cell in enumerate(order):
        label = f"{cell.entry.label if cell.strength else 'base model'} @ {format_weight(cell.strength)}"
        if cell.path.is_file() and _load_existing(cell):
            cell.status = "skipped"
        elif cell.params in made and made[cell.params].image is not None:
            twin = made[cell.params]
            write_png_no_clobber(twin.image, cell.path, twin.infotext)
            cell.image, cell.infotext, cell.status = twin.image, twin.infotext, "done"
        else:
            if control.interrupted.is_set():
                result.interrupted = True
                break
            try:
                if cell.entry.info.error:
                    raise LoraError(cell.entry.info.error)
                if hasattr(engine, "prefetch_loras"):  # the next epoch's file is read while this one samples
                    engine.prefetch_loras(order[i + 1].params if i + 1 < len(order) else None)
                res = engine.generate(cell.params, save=False, progress=relay, control=control)
            except (KeyboardInterrupt, Interrupted):
                result.interrupted = True
                break
            except InvalidParameter:
                raise
            except CreationMixError as e:  # this LoRA file only (corrupt, refused kind)
                cell.status, cell.reason = "failed", str(e)
                done += 1
                continue
            if res.interrupted or not res.images:
                result.interrupted = True
                break
            for w in res.warnings:
                if w not in result.warnings:
                    result.warnings.append(w)
            cell.image, cell.infotext = res.images[0], res.infotexts[0]
            if not write_png_no_clobber(cell.image, cell.path, cell.infotext):
                _load_existing(cell)  # another run wrote it meanwhile: theirs is the same cell
            cell.status = "done"
        made.setdefault(cell.params, cell)
        done += 1
        if progress is not None:
            progress(JobProgress(done, total, label=label))
    for grid in plan.prompts:
        draw_prompt_grids(plan, grid, getattr(getattr(engine, "model", None), "name", None))
    return result


# -- grids ---------------------------------------------------------------------------------------------------------
def strength_label(w: float) -> str:
    return "base model" if w == 0 else f"strength {format_weight(w)}"


def grid_title(plan: EpochPlan, grid: PromptGrid, seed: int, model: str | None) -> str:
    p = grid.base
    parts = [f"Steps: {p.steps}", f"Sampler: {p.sampler}" + (f" {p.schedule}" if p.schedule != "Automatic" else ""),
             f"CFG scale: {format_weight(p.cfg_scale)}", f"Seed: {seed}", f"Size: {p.width}x{p.height}"]
    if p.clip_skip > 1:
        parts.append(f"Clip skip: {p.clip_skip}")
    if p.enable_hires:
        parts.append(f"Hires: x{format_weight(p.hires_scale)}, denoising {format_weight(p.denoising_strength)}")
    if p.checkpoint or model:
        parts.append(f"Model: {Path(p.checkpoint or model).stem}")
    prompt = fill(grid.template, "", 0)
    prompt = prompt if len(prompt) <= 160 else prompt[:157] + "..."
    return f"LoRA: {plan.series.name} | {', '.join(parts)}\n{prompt}"


def grid_infotext(plan: EpochPlan, first_infotext: str) -> str:
    """The first cell's infotext plus the grid's keys, as X/Y/Z plot grids carry them."""
    from ..errors import InfotextError
    from ..infotext import format_infotext, parse_infotext
    keys = [("Script", SCRIPT_NAME), ("X Type", "LoRA strength"),
            ("X Values", ", ".join(format_weight(w) for w in plan.strengths)), ("Y Type", "LoRA epoch"),
            ("Y Values", ", ".join(e.tag for e in plan.entries)), ("LoRA series", plan.series.name)]
    try:
        params, meta = parse_infotext(first_infotext)
    except InfotextError:
        return first_infotext + "\n" + ", ".join(f"{k}: {v}" for k, v in keys)
    return format_infotext(params, {**meta, **dict(keys)})  # our own feature keys travel as meta


def draw_prompt_grids(plan: EpochPlan, grid: PromptGrid, model: str | None = None) -> None:
    """One grid per seed: rows are the epochs, columns the strengths."""
    from ..previews.job import write_png_no_clobber
    from ..xyz.grid import draw_grid

    grid.grid_paths = []
    cols = [strength_label(w) for w in plan.strengths]
    rows = [e.label for e in plan.entries]
    for seed in grid.seeds:
        cells = [[getattr(grid.cell(e, w, seed), "image", None) for w in plan.strengths] for e in plan.entries]
        if all(im is None for row in cells for im in row):
            continue
        first = next((c.infotext for c in grid.cells if c.seed == seed and c.infotext), "")
        image = draw_grid(cells, cols, rows, title=grid_title(plan, grid, seed, model))
        path = grid.folder / (f"grid-s{seed}.png")
        write_png_no_clobber(image, path, grid_infotext(plan, first), overwrite=True)
        grid.grid_paths.append(path)
