"""X/Y/Z plot and LoRA strength sweep: plan every cell before any image is made, then run the plan.

Planning (torch-free) builds each cell's GenerationParams in A1111's order (x fastest, then y, then z), checks
names and values, and groups cells into engine calls: cells that differ only by seed, with consecutive seeds,
run as one batch (the engine makes batch image i from seed+i, so a batched cell is the image the cell would
be alone). Calls are ordered so that each checkpoint and each set of LoRAs comes up once: the checkpoint loads
once per job and a LoRA is applied, re-weighted and dropped without reloads (engine and LoRA manager caches).

Running saves every finished cell at once as its own PNG with its own infotext, so an interrupt keeps them,
then draws one grid per Z value with A1111's labels, a title of the fixed parameters, and A1111's grid keys
(`Script`, `X Type`, `X Values`, `Fixed X Values`, ...) in the grid's infotext.
"""
from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from ..errors import CreationMixError, InfotextError, InvalidParameter
from ..lora.tags import extract_prompt_loras, set_lora_weight
from ..params import MAX_SEED, MAX_SEED_VALUE, GenerationParams
from ..jobs import Control, JobProgress, ProgressEvent
from .axes import BASE_MODEL_LABEL, Axis, CellState, format_value, parse_axis

MAX_CELLS = 1000
DEFAULT_STRENGTHS: tuple[float, ...] = (0.0, 0.4, 0.6, 0.8, 1.0, 1.2)
# Pixels one engine call may hold (batch x width x height of the largest pass): 4 images at 512x512.
BATCH_PIXEL_BUDGET = 4 * 512 * 512
DEFAULT_MAX_BATCH = 8
SCRIPT_NAME = "X/Y/Z plot"
SEED_AXES = ("Seed", "Var. seed")  # A1111 fixes -1 on both before the grid starts and records the values
SWEEP_NAME = "LoRA strength sweep"


@dataclass(frozen=True)
class Cell:
    index: int  # A1111 order: x fastest, then y, then z
    ix: int
    iy: int
    iz: int
    params: GenerationParams


@dataclass(frozen=True)
class Run:
    """One Engine.generate call: `params.batch_size` images from consecutive seeds starting at `params.seed`.

    `images[i]` lists the cells that image i fills (several when two cells have identical parameters)."""

    params: GenerationParams
    images: tuple[tuple[int, ...], ...]


@dataclass(frozen=True)
class PlotPlan:
    base: GenerationParams
    axes: tuple[Axis | None, Axis | None, Axis | None]
    cells: tuple[Cell, ...]
    runs: tuple[Run, ...]
    script: str = SCRIPT_NAME
    title_prefix: str = ""

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(len(a) if a is not None else 1 for a in self.axes)  # type: ignore[return-value]

    @property
    def image_count(self) -> int:
        """Images the engine will make (cells with identical parameters share one)."""
        return sum(len(r.images) for r in self.runs)

    def cell(self, ix: int, iy: int = 0, iz: int = 0) -> Cell:
        nx, ny, _ = self.shape
        return self.cells[ix + nx * (iy + ny * iz)]

    def grid_keys(self) -> list[tuple[str, str]]:
        """A1111's grid infotext keys: Script, X Type, X Values, Fixed X Values (seeds), ..."""
        keys = [("Script", self.script)]
        for axis in self.axes:
            if axis is None:
                continue
            keys.append((f"{axis.name} Type", axis.kind.label))
            keys.append((f"{axis.name} Values", axis.text))
            if axis.kind.label in SEED_AXES:
                keys.append((f"Fixed {axis.name} Values", ", ".join(str(v) for v in axis.values)))
            if axis.target:
                keys.append((f"{axis.name} LoRA", axis.target))
        return keys

    def title(self, model: str | None = None, iz: int | None = None) -> str:
        """The fixed parameters: everything no axis changes (plus the Z value of this grid)."""
        varied = {a.kind.infotext_field for a in self.axes if a is not None}
        p = self.base
        parts = []
        schedule = f" {p.schedule}" if p.schedule != "Automatic" else ""
        for field_name, text in (("steps", f"Steps: {p.steps}"),
                                 ("sampler", f"Sampler: {p.sampler}{schedule}"),
                                 ("cfg_scale", f"CFG scale: {format_value(float(p.cfg_scale))}"),
                                 ("seed", f"Seed: {p.seed}"),
                                 ("size", f"Size: {p.width}x{p.height}"),
                                 ("clip_skip", f"Clip skip: {p.clip_skip}" if p.clip_skip > 1 else ""),
                                 ("checkpoint", f"Model: {Path(p.checkpoint or model or '').stem}"
                                  if (p.checkpoint or model) else "")):
            if field_name not in varied and text:
                parts.append(text)
        if p.enable_hires and "enable_hires" not in varied:
            hires = f"Hires: x{format_value(float(p.hires_scale))}" if "hires_scale" not in varied else "Hires: on"
            if "denoising_strength" not in varied:
                hires += f", denoising {format_value(float(p.denoising_strength))}"
            parts.append(hires)
        prompt = p.prompt if len(p.prompt) <= 160 else p.prompt[:157] + "..."
        head = f"{self.title_prefix}{' | ' if self.title_prefix else ''}"
        z = self.axes[2]
        zpart = f" | {z.labels()[iz]}" if z is not None and iz is not None else ""
        return f"{head}{', '.join(parts)}{zpart}\n{prompt}"


# -- planning -------------------------------------------------------------------------------------------------------
def _named(axis: Axis | None, name: str) -> Axis | None:
    return None if axis is None else dataclasses.replace(axis, name=name)


def _fix_random_seeds(axis: Axis | None, rand: random.Random) -> Axis | None:
    if axis is None or axis.kind.label not in SEED_AXES or -1 not in axis.values:
        return axis
    # A1111 fixes -1 to a random seed before the grid starts, so every row/column uses the same one.
    return dataclasses.replace(axis, values=tuple(rand.randint(0, MAX_SEED) if v == -1 else v for v in axis.values))


def batch_limit(params: GenerationParams, max_batch: int | None) -> int:
    w, h = params.hires_size if params.enable_hires else (params.width, params.height)
    fit = max(1, BATCH_PIXEL_BUDGET // max(1, w * h))
    return max(1, min(fit, max_batch if max_batch is not None else DEFAULT_MAX_BATCH, 64))


def plan_xyz(base: GenerationParams, x: Axis | None = None, y: Axis | None = None, z: Axis | None = None, *,
             max_cells: int = MAX_CELLS, allow_large: bool = False, max_batch: int | None = None,
             rand: random.Random | None = None, check_checkpoint: Callable[[str], Any] | None = None,
             check_lora: Callable[[str], Any] | None = None, script: str = SCRIPT_NAME,
             title_prefix: str = "") -> PlotPlan:
    """Every cell's parameters, checked, and the engine calls that make them. Nothing is generated here.

    Raises InvalidParameter naming the axis and value for a bad value, for a plot larger than `max_cells`
    (unless `allow_large`), and whatever `check_checkpoint` / `check_lora` raise for an unknown name."""
    rand = rand or random.Random()
    axes = [_named(a, n) for a, n in ((x, "X"), (y, "Y"), (z, "Z"))]
    axes = [_fix_random_seeds(a, rand) for a in axes]
    nx, ny, nz = (len(a) if a is not None else 1 for a in axes)
    total = nx * ny * nz
    if total > max_cells and not allow_large:
        raise InvalidParameter(f"the plot has {total} cells ({nx} x {ny} x {nz}), more than {max_cells}; "
                               f"allow it explicitly (--allow-large) if you mean it")
    base = base.replace(batch_size=1, batch_count=1).with_seed_resolved(rand)
    if base.subseed == -1:  # one variation seed for the whole grid, should a Var. strength axis switch it on
        base = base.replace(subseed=rand.randint(0, MAX_SEED))
    order = sorted((a for a in axes if a is not None), key=lambda a: a.kind.order)

    cells: list[Cell] = []
    for iz in range(nz):
        for iy in range(ny):
            for ix in range(nx):
                st = CellState(base)
                coords = {"X": ix, "Y": iy, "Z": iz}
                for axis in order:
                    axis.apply(axis.values[coords[axis.name]], st)
                cells.append(Cell(len(cells), ix, iy, iz, st.params))

    _check_names(cells, check_checkpoint, check_lora)
    runs = plan_runs(cells, max_batch)
    return PlotPlan(base=base, axes=tuple(axes), cells=tuple(cells), runs=tuple(runs), script=script,
                    title_prefix=title_prefix)


def _check_names(cells: Sequence[Cell], check_checkpoint, check_lora) -> None:
    checkpoints = list(dict.fromkeys(c.params.checkpoint for c in cells if c.params.checkpoint))
    loras: list[str] = []
    for c in cells:
        p = c.params
        for text in (p.prompt, p.negative_prompt, p.hires_prompt if p.enable_hires else ""):
            try:
                _, _, reqs = extract_prompt_loras(text)
            except CreationMixError as e:
                raise InvalidParameter(f"cell {c.index + 1}: {e}") from None
            loras += [r.name for r in reqs if r.name not in loras]
    if check_checkpoint is not None:
        for name in checkpoints:
            check_checkpoint(name)
    if check_lora is not None:
        for name in loras:
            check_lora(name)


def _lora_state(p: GenerationParams) -> tuple:
    _, _, reqs = extract_prompt_loras(p.prompt, p.negative_prompt)
    return tuple(reqs)


def plan_runs(cells: Sequence[Cell], max_batch: int | None = None) -> list[Run]:
    """Group cells into engine calls (see the module docstring); every cell is in exactly one image."""
    by_params: dict[GenerationParams, list[int]] = {}
    for c in cells:
        by_params.setdefault(c.params, []).append(c.index)
    groups: dict[GenerationParams, dict[int, tuple[int, ...]]] = {}
    for params, idxs in by_params.items():
        groups.setdefault(params.replace(seed=0), {})[params.seed] = tuple(idxs)

    first_ckpt: dict[Any, int] = {}
    first_lora: dict[Any, int] = {}
    keyed = []
    for key, seeds in groups.items():
        first = min(i for idxs in seeds.values() for i in idxs)
        ck = first_ckpt.setdefault(key.checkpoint, len(first_ckpt))
        lo = first_lora.setdefault((key.checkpoint, _lora_state(key)), len(first_lora))
        keyed.append(((ck, lo, first), key, seeds))
    keyed.sort(key=lambda t: t[0])

    runs: list[Run] = []
    for _, key, seeds in keyed:
        # With a variation strength the engine gives batch image i seed + 0 and variation seed + i, not seed + i.
        limit = 1 if key.uses_variation else batch_limit(key, max_batch)
        ordered = sorted(seeds)
        chunk: list[int] = []
        for s in ordered:
            if chunk and (s != chunk[-1] + 1 or len(chunk) >= limit):
                runs.append(_run(key, chunk, seeds))
                chunk = []
            chunk.append(s)
        if chunk:
            runs.append(_run(key, chunk, seeds))
    return runs


def _run(key: GenerationParams, chunk: list[int], seeds: dict[int, tuple[int, ...]]) -> Run:
    return Run(params=key.replace(seed=chunk[0], batch_size=len(chunk)), images=tuple(seeds[s] for s in chunk))


def plan_strength_sweep(base: GenerationParams, lora: str, strengths: Sequence[float] | str = DEFAULT_STRENGTHS,
                        seeds: int | Sequence[int] = 2, **kw) -> PlotPlan:
    """One LoRA at several strengths (columns) x seeds (rows). Strength 0 is labelled "base model" and made
    without the LoRA tag, so it is the base model's image bit for bit. The prompt's own tag for `lora`, if any,
    is taken out first; other LoRAs in the prompt stay as they are in every cell."""
    if not isinstance(strengths, str):
        strengths = ", ".join(format_value(float(s)) for s in strengths)
    rand = kw.pop("rand", None) or random.Random()
    base = base.with_seed_resolved(rand)
    if isinstance(seeds, int):
        if seeds < 1:
            raise InvalidParameter(f"the sweep needs at least 1 seed, got {seeds}")
        seeds = [min(base.seed + i, MAX_SEED_VALUE) for i in range(seeds)]
    x = parse_axis("LoRA strength", strengths, name="X", target=lora)
    x = dataclasses.replace(x, zero_label=BASE_MODEL_LABEL, short_labels=True)
    y = parse_axis("Seed", ", ".join(str(int(s)) for s in seeds), name="Y")
    # Whitespace at the end tokenizes to nothing; stripping it keeps the base cell's infotext clean.
    base = base.replace(prompt=set_lora_weight(base.prompt, lora, None).rstrip())
    return plan_xyz(base, x, y, None, rand=rand, script=SWEEP_NAME, title_prefix=f"LoRA: {lora}", **kw)


def parse_axes(specs: Sequence[tuple[str | None, str | None, str | None]]) -> list[Axis | None]:
    """[(type, values, target)] for X, Y, Z -> axes; a missing or `Nothing` type is no axis."""
    out: list[Axis | None] = []
    for name, (kind, values, target) in zip("XYZ", specs):
        if not kind or kind.strip().lower() in ("nothing", "none", ""):
            if values:
                raise InvalidParameter(f"{name} axis: values given ({values!r}) but no axis type")
            out.append(None)
            continue
        out.append(parse_axis(kind, values or "", name=name, target=target))
    return out


# -- running ---------------------------------------------------------------------------------------------------------
@dataclass
class PlotResult:
    plan: PlotPlan
    images: list[Any]  # per cell (PIL image or None when not made)
    infotexts: list[str | None]
    cell_paths: list[Path | None]
    grids: list[Any] = field(default_factory=list)  # one per Z value
    grid_paths: list[Path] = field(default_factory=list)
    grid_infotexts: list[str] = field(default_factory=list)
    interrupted: bool = False
    warnings: list[str] = field(default_factory=list)

    @property
    def written(self) -> list[Path]:
        return [p for p in self.cell_paths if p is not None] + list(self.grid_paths)


def grid_infotext(cell_infotext: str, plan: PlotPlan) -> str:
    """The cell's infotext plus A1111's plot keys (the grid is "made with" its first cell's parameters)."""
    from ..infotext import format_infotext, parse_infotext
    try:
        params, meta = parse_infotext(cell_infotext)
    except InfotextError:
        return cell_infotext + "\n" + ", ".join(f"{k}: {v}" for k, v in plan.grid_keys())
    # The plot keys describe how the grid was made; they travel with the source keys (pasting a grid's
    # infotext reports them as not applied).
    return format_infotext(params, {**meta, **dict(plan.grid_keys())})


def run_plot(engine, plan: PlotPlan, *, outputs_dir: Path | None = None, save: bool = True,
             progress: Callable[[JobProgress], None] | None = None, control: Control | None = None) -> PlotResult:
    """Make the plan's images (engine: creationmix.engine.Engine) and its grids.

    Cells go to outputs/txt2img-images/DATE/ and grids to outputs/txt2img-grids/DATE/ as A1111 puts them.
    Interrupting (control.interrupt() or Ctrl-C) keeps every finished cell and draws the grids with grey boxes
    where cells are missing."""
    from ..output import dated_folder, save_numbered_png

    control = control or Control()
    outputs_dir = Path(outputs_dir) if outputs_dir is not None else Path(engine.folders.outputs_dir)
    n = len(plan.cells)
    result = PlotResult(plan=plan, images=[None] * n, infotexts=[None] * n, cell_paths=[None] * n)
    total, done = plan.image_count, 0
    cell_folder = dated_folder(outputs_dir)

    def relay(ev: ProgressEvent) -> None:
        if progress is not None:
            progress(JobProgress(done, total, ev))

    if progress is not None:
        progress(JobProgress(0, total))
    for i, run in enumerate(plan.runs):
        if control.interrupted.is_set():
            result.interrupted = True
            break
        try:
            if hasattr(engine, "prefetch_loras"):  # the next run's LoRA files are read while this one samples
                engine.prefetch_loras(plan.runs[i + 1].params if i + 1 < len(plan.runs) else None)
            res = engine.generate(run.params, save=False, progress=relay, control=control)
        except KeyboardInterrupt:
            result.interrupted = True
            break
        result.warnings += [w for w in res.warnings if w not in result.warnings]
        by_seed = {s: (im, t) for s, im, t in zip(res.seeds, res.images, res.infotexts)}
        for i, cell_ids in enumerate(run.images):
            got = by_seed.get(run.params.seed + i)
            if got is None:
                continue
            image, text = got
            for ci in cell_ids:
                result.images[ci], result.infotexts[ci] = image, text
                if save:
                    seed = plan.cells[ci].params.seed
                    result.cell_paths[ci] = save_numbered_png(image, cell_folder, seed, text)
            done += 1
        if progress is not None:
            progress(JobProgress(done, total))
        if res.interrupted:
            result.interrupted = True
            break

    model = getattr(getattr(engine, "model", None), "name", None)
    _draw_grids(plan, result, model, outputs_dir if save else None)
    return result


def _draw_grids(plan: PlotPlan, result: PlotResult, model: str | None, outputs_dir: Path | None) -> None:
    from ..output import dated_folder, save_numbered_png
    from .grid import draw_grid

    x, y, z = plan.axes
    nx, ny, nz = plan.shape
    col_labels = x.labels() if x is not None else [""]
    row_labels = y.labels() if y is not None else [""]
    for iz in range(nz):
        ids = [plan.cell(ix, iy, iz).index for iy in range(ny) for ix in range(nx)]
        if all(result.images[i] is None for i in ids):
            continue
        cells = [[result.images[plan.cell(ix, iy, iz).index] for ix in range(nx)] for iy in range(ny)]
        grid = draw_grid(cells, col_labels, row_labels, title=plan.title(model, iz if z is not None else None))
        first = next(result.infotexts[i] for i in ids if result.infotexts[i] is not None)
        text = grid_infotext(first, plan)
        result.grids.append(grid)
        result.grid_infotexts.append(text)
        if outputs_dir is not None:
            suffix = "-xyz_grid" if nz == 1 else f"-xyz_grid-z{iz + 1}"
            seed = plan.cell(0, 0, iz).params.seed
            result.grid_paths.append(save_numbered_png(grid, dated_folder(outputs_dir, "txt2img-grids"), seed,
                                                       text, suffix=suffix))


# -- accounting -----------------------------------------------------------------------------------------------------
class WorkCounter:
    """Counts what a job really does on an Engine: checkpoint loads, LoRA file loads, prompt encodings (prompt
    encoder cache misses) and text-encoder forward passes. Tests and bench/previews.py check the caches with it.

        with WorkCounter(engine) as work:
            run_plot(engine, plan)
        work.checkpoint_loads, work.lora_loads, work.encodings, work.te_forwards, work.encoded
    """

    def __init__(self, engine) -> None:
        self.engine = engine
        self.checkpoint_loads = 0
        self.encodings = 0
        self.te_forwards = 0
        self.encoded: list[tuple] = []  # (texts, TE LoRA state) per encoding, in order
        self._managers: dict[int, tuple[Any, int]] = {}
        self._hooked: set[int] = set()
        self._handles: list = []
        self._wrapped: list = []
        self._model = None

    @property
    def lora_loads(self) -> int:
        return sum(m.load_count - start for m, start in self._managers.values())

    def _watch(self) -> None:
        e = self.engine
        model = getattr(e, "model", None)
        if model is not None and model is not self._model:
            self._model = model
            te = model.text_encoder
            if id(te) not in self._hooked:
                self._hooked.add(id(te))
                self._handles.append(te.register_forward_pre_hook(self._on_forward))
        loras = getattr(e, "loras", None)
        if loras is not None and id(loras) not in self._managers:
            self._managers[id(loras)] = (loras, loras.load_count)
        enc = getattr(e, "encoder", None)
        if enc is not None and not getattr(enc, "_work_counted", False):
            orig = enc.cached

            def cached(key, compute, _orig=orig, _enc=enc):
                def counted():
                    self.encodings += 1
                    mgr = getattr(self.engine, "loras", None)
                    self.encoded.append((key[1] if len(key) > 1 else key, getattr(mgr, "te_key", ())))
                    return compute()
                return _orig(key, counted)

            enc.cached = cached
            enc._work_counted = True
            self._wrapped.append(enc)

    def _on_forward(self, module, args) -> None:
        self.te_forwards += 1

    def __enter__(self) -> "WorkCounter":
        e = self.engine
        self._orig_load = e.load
        before = [getattr(e, "model", None)]

        def load(*a, **kw):
            model = self._orig_load(*a, **kw)
            if model is not before[0]:
                self.checkpoint_loads += 1
                before[0] = model
            self._watch()
            return model

        e.load = load
        self._watch()
        return self

    def __exit__(self, *exc) -> None:
        try:
            del self.engine.load  # back to the class's method
        except AttributeError:
            pass
        for enc in self._wrapped:
            del enc.cached
            enc._work_counted = False
        self._wrapped.clear()
        for h in self._handles:
            h.remove()
        self._handles.clear()


def service_strength_sweep(service, params: GenerationParams | None, lora: str, strengths: str | Sequence[float],
                           seeds: int | Sequence[int] = 2, *, preset_id: str | None = None,
                           overrides: dict[str, Any] | None = None, progress=None,
                           control: Control | None = None) -> PlotResult:
    """What `Service.run_strength_sweep` delegates to (the UI's LoRA previews tab): plan, check names, run.

    With `preset_id` the base is that card, its LoRA slot filled with `lora` (so a slot card sweeps the chosen
    LoRA, not its default one); `overrides` then apply (e.g. a small size for a quick look). A base without a
    checkpoint gets the engine's default."""
    from ..presets_resolve import resolve_params
    if preset_id is not None:
        params = resolve_params(preset=preset_id, lora=lora, presets_dir=service.presets_dir)
    if params is None:
        raise InvalidParameter("a strength sweep needs parameters or a preset card")
    if overrides:
        params = params.replace(**overrides)
    plan = plan_strength_sweep(params, lora, strengths, seeds, **service.plot_checks())
    return service.run_plot(plan, progress=progress, control=control)
