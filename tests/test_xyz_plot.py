"""X/Y/Z planning, batching, grids and interrupts with a fake engine (torch-free, fast).

The same behaviour on the real tiny checkpoint is in test_xyz_engine.py."""
from __future__ import annotations

import hashlib
import random

import pytest
from PIL import Image

from creationmix.errors import InvalidParameter, PathError
from creationmix.infotext import format_infotext, parse_infotext
from creationmix.params import GenerationParams
from creationmix.pnginfo import read_parameters
from creationmix.jobs import Control, GenerationResult, ProgressEvent
from creationmix.xyz.axes import parse_axis
from creationmix.xyz.grid import draw_grid
from creationmix.xyz.plot import (DEFAULT_STRENGTHS, parse_axes, plan_runs, plan_strength_sweep, plan_xyz,
                                  run_plot)

BASE = GenerationParams(prompt="a cat <lora:style:0.8>", steps=2, sampler="Euler", cfg_scale=7, seed=100,
                        width=64, height=64)


def colour(p: GenerationParams, seed: int) -> tuple[int, int, int]:
    key = repr((p.replace(seed=0, batch_size=1), seed)).encode()
    d = hashlib.sha256(key).digest()
    return d[0], d[1], d[2]


class FakeEngine:
    """Engine.generate's contract: batch image i comes from seed + i; the infotext is per image."""

    def __init__(self, tmp_path, interrupt_after: int | None = None):
        from creationmix.paths import Folders
        self.folders = Folders(tmp_path)
        self.calls: list[GenerationParams] = []
        self.interrupt_after = interrupt_after
        self.model = None

    def generate(self, params, *, save=False, progress=None, control=None, outputs_dir=None, preview_every=0):
        assert not save
        self.calls.append(params)
        if self.interrupt_after is not None and len(self.calls) > self.interrupt_after:
            raise KeyboardInterrupt
        seeds = [params.seed + i for i in range(params.batch_size)]
        if progress:
            progress(ProgressEvent(step=1, total=params.steps, pass_name="first", image_index=0, image_count=1))
        images = [Image.new("RGB", (params.width, params.height), colour(params, s)) for s in seeds]
        texts = [format_infotext(params.replace(seed=s), {"Model": "fake"}) for s in seeds]
        return GenerationResult(paths=(), seeds=tuple(seeds), infotexts=tuple(texts), images=tuple(images))


def cell_centre(grid: Image.Image, rows: int, cols: int, r: int, c: int, w: int = 64, h: int = 64):
    # Cells fill the bottom-right corner of the grid (labels and title are above and to the left).
    return grid.width - (cols - c) * w + w // 2, grid.height - (rows - r) * h + h // 2


def test_2x3_grid_size_labels_order_and_infotexts(tmp_path):
    x = parse_axis("Seed", "1-2")
    y = parse_axis("CFG Scale", "5, 7, 9")
    plan = plan_xyz(BASE, x, y)
    assert plan.shape == (2, 3, 1)
    # A1111 order: x fastest, then y.
    assert [(c.params.seed, c.params.cfg_scale) for c in plan.cells] == [
        (1, 5.0), (2, 5.0), (1, 7.0), (2, 7.0), (1, 9.0), (2, 9.0)]
    engine = FakeEngine(tmp_path)
    res = run_plot(engine, plan, outputs_dir=tmp_path / "out")
    assert not res.interrupted
    assert len(res.cell_paths) == 6 and all(p.is_file() for p in res.cell_paths)
    assert len(res.grid_paths) == 1 and "txt2img-grids" in str(res.grid_paths[0])
    for cell, path in zip(plan.cells, res.cell_paths):
        params, meta = parse_infotext(read_parameters(path))
        assert (params.seed, params.cfg_scale) == (x.values[cell.ix], y.values[cell.iy])
        assert params.prompt == BASE.prompt
    grid = Image.open(res.grid_paths[0]).convert("RGB")
    assert grid.width > 2 * 64 and grid.height > 3 * 64  # label bands and the title
    for cell in plan.cells:
        px = grid.getpixel(cell_centre(grid, 3, 2, cell.iy, cell.ix))
        assert px == colour(cell.params, cell.params.seed)
    assert x.labels() == ["Seed: 1", "Seed: 2"] and y.labels() == ["CFG Scale: 5", "CFG Scale: 7", "CFG Scale: 9"]
    text = read_parameters(res.grid_paths[0])
    parsed = parse_infotext(text)
    extra = parsed.ignored  # pasting a grid's infotext does not set up a plot: reported as not applied
    assert extra["Script"] == "X/Y/Z plot"
    assert extra["X Type"] == "Seed" and extra["X Values"] == "1-2" and extra["Fixed X Values"] == "1, 2"
    assert extra["Y Type"] == "CFG Scale" and extra["Y Values"] == "5, 7, 9"
    # Consecutive seeds sharing everything else ran as one batch per CFG value.
    assert [(c.seed, c.batch_size, c.cfg_scale) for c in engine.calls] == [(1, 2, 5.0), (1, 2, 7.0), (1, 2, 9.0)]


def test_non_consecutive_seeds_run_separately(tmp_path):
    plan = plan_xyz(BASE, parse_axis("Seed", "1, 3, 4"))
    assert [(r.params.seed, r.params.batch_size) for r in plan.runs] == [(1, 1), (3, 2)]
    engine = FakeEngine(tmp_path)
    res = run_plot(engine, plan, outputs_dir=tmp_path)
    for cell, img in zip(plan.cells, res.images):
        assert img.getpixel((0, 0)) == colour(cell.params, cell.params.seed)


def test_max_batch_splits_runs():
    plan = plan_xyz(BASE, parse_axis("Seed", "1-5"), max_batch=2)
    assert [(r.params.seed, r.params.batch_size) for r in plan.runs] == [(1, 2), (3, 2), (5, 1)]


def test_batch_respects_pixel_budget():
    big = BASE.replace(width=1024, height=1024)
    plan = plan_xyz(big, parse_axis("Seed", "1-4"))
    assert [r.params.batch_size for r in plan.runs] == [1, 1, 1, 1]


def test_z_axis_one_grid_per_value(tmp_path):
    plan = plan_xyz(BASE, parse_axis("Seed", "1,2"), parse_axis("Steps", "2,3"), parse_axis("CFG Scale", "4,5,6"))
    assert plan.shape == (2, 2, 3)
    assert [c.index for c in plan.cells] == list(range(12))
    assert plan.cell(1, 0, 2).params.cfg_scale == 6 and plan.cell(1, 0, 2).params.seed == 2
    res = run_plot(FakeEngine(tmp_path), plan, outputs_dir=tmp_path)
    assert len(res.grid_paths) == 3
    for iz, text in enumerate(res.grid_infotexts):
        parsed = parse_infotext(text)
        assert parsed.params.cfg_scale == (4, 5, 6)[iz]
        assert parsed.ignored["Z Type"] == "CFG Scale"


def test_identical_cells_share_one_image(tmp_path):
    # LoRA `none` makes every strength the same cell.
    plan = plan_xyz(BASE, parse_axis("LoRA", "style, none"), parse_axis("LoRA strength", "0.5, 1"))
    assert len(plan.cells) == 4 and plan.image_count == 3
    res = run_plot(FakeEngine(tmp_path), plan, outputs_dir=tmp_path)
    assert all(p.is_file() for p in res.cell_paths)
    assert plan.cells[1].params.prompt == plan.cells[3].params.prompt == "a cat "


def test_runs_grouped_by_checkpoint_and_lora():
    plan = plan_xyz(BASE.replace(prompt="a cat"), parse_axis("Checkpoint name", "a, b"),
                    parse_axis("LoRA", "l1, l2, none"), parse_axis("Seed", "1, 2"))
    ckpts = [r.params.checkpoint for r in plan.runs]
    assert ckpts == sorted(ckpts)  # each checkpoint comes up once
    for ck in ("a", "b"):
        loras = [r.params.prompt for r in plan.runs if r.params.checkpoint == ck]
        assert len(loras) == len(set(loras)) == 3  # each LoRA once, both seeds batched


def test_plan_checks_names_before_any_image():
    def no_lora(name):
        raise PathError(f"LoRA {name!r} not found")
    with pytest.raises(PathError, match="'ghost'"):
        plan_xyz(BASE.replace(prompt="x"), parse_axis("LoRA", "ghost"), check_lora=no_lora)


def test_too_many_cells_refused_with_count():
    x, y = parse_axis("Seed", "1-50"), parse_axis("Steps", "1-21")
    with pytest.raises(InvalidParameter, match="1050 cells"):
        plan_xyz(BASE, x, y)
    assert len(plan_xyz(BASE, x, y, allow_large=True).cells) == 1050


def test_random_seeds_fixed_once():
    plan = plan_xyz(BASE.replace(seed=-1), parse_axis("Seed", "-1, 5"), parse_axis("Steps", "2, 3"),
                    rand=random.Random(0))
    s = plan.cells[0].params.seed
    assert s != -1 and plan.cells[2].params.seed == s
    assert dict(plan.grid_keys())["Fixed X Values"] == f"{s}, 5"


def test_parse_axes_nothing():
    axes = parse_axes([("Seed", "1", None), ("Nothing", None, None), (None, None, None)])
    assert axes[1] is None and axes[2] is None
    with pytest.raises(InvalidParameter, match="Y axis"):
        parse_axes([("Seed", "1", None), (None, "1,2", None), (None, None, None)])


def test_bad_cell_value_named():
    # Hires upscale 4 on a 1024 image would ask for 4096+ hires size: the cell fails planning, naming the axis.
    with pytest.raises(InvalidParameter, match=r"X axis \(Prompt S/R\)"):
        plan_xyz(BASE, parse_axis("Prompt S/R", "dog, cat"))


def test_interrupt_keeps_finished_cells(tmp_path):
    plan = plan_xyz(BASE, parse_axis("Seed", "1, 3, 5"))  # three separate runs
    engine = FakeEngine(tmp_path, interrupt_after=2)
    res = run_plot(engine, plan, outputs_dir=tmp_path)
    assert res.interrupted
    assert [p is not None for p in res.cell_paths] == [True, True, False]
    assert all(p.is_file() for p in res.cell_paths[:2])
    assert len(res.grid_paths) == 1  # partial grid with a grey box
    grid = Image.open(res.grid_paths[0]).convert("RGB")
    assert grid.getpixel(cell_centre(grid, 1, 3, 0, 2)) == (224, 224, 224)


def test_control_interrupt_between_runs(tmp_path):
    control = Control()
    plan = plan_xyz(BASE, parse_axis("Seed", "1, 3"))
    engine = FakeEngine(tmp_path)
    seen = []

    def progress(jp):
        seen.append(jp.done)
        if jp.done == 1:
            control.interrupt()
    res = run_plot(engine, plan, outputs_dir=tmp_path, control=control, progress=progress)
    assert res.interrupted and len(engine.calls) == 1 and res.cell_paths[0].is_file()


def test_strength_sweep_plan():
    plan = plan_strength_sweep(BASE, "style", seeds=2)
    x, y, _ = plan.axes
    assert x.values == DEFAULT_STRENGTHS
    assert x.labels() == ["base model", "0.4", "0.6", "0.8", "1", "1.2"]
    assert y.values == (100, 101)
    base_cell = plan.cell(0, 0)
    assert "<lora:" not in base_cell.params.prompt and base_cell.params.prompt == "a cat"
    assert plan.cell(3, 1).params.prompt == "a cat <lora:style:0.8>" and plan.cell(3, 1).params.seed == 101
    # One batch of both seeds per strength.
    assert [(r.params.seed, r.params.batch_size) for r in plan.runs] == [(100, 2)] * 6
    assert dict(plan.grid_keys())["Script"] == "LoRA strength sweep"


def test_draw_grid_without_row_labels():
    im = Image.new("RGB", (64, 64), (1, 2, 3))
    g = draw_grid([[im, im]], ["a", "b"], [""])
    assert g.width == 128 and g.height > 64
    g2 = draw_grid([[im], [im]], [""], ["r1", "r2"])
    assert g2.height == 128 and g2.width > 64


def test_draw_grid_mixed_sizes_centred():
    small, big = Image.new("RGB", (64, 64), (9, 9, 9)), Image.new("RGB", (96, 96), (7, 7, 7))
    g = draw_grid([[small, big]], ["", ""], [""])
    assert g.size == (192, 96)
    assert g.getpixel((32, 48)) == (9, 9, 9) and g.getpixel((0, 0)) == (255, 255, 255)


def test_plan_runs_cover_every_cell_once():
    plan = plan_xyz(BASE, parse_axis("Seed", "1,2,5,6,7"), parse_axis("CFG Scale", "3,4"))
    covered = [i for r in plan.runs for img in r.images for i in img]
    assert sorted(covered) == list(range(10))
    assert plan_runs(plan.cells) == list(plan.runs)
