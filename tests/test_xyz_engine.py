"""X/Y/Z plots and strength sweeps on the real engine with the tiny checkpoint and tiny LoRAs (64x64, 2 steps)."""
from __future__ import annotations

import re

import shutil

import numpy as np
import pytest
from PIL import Image

from creationmix.engine import Engine
from creationmix.errors import InvalidParameter, LoraError, PathError
from creationmix.infotext import parse_infotext
from creationmix.params import GenerationParams
from creationmix.paths import Folders
from creationmix.pnginfo import read_parameters
from creationmix.xyz.axes import parse_axis
from creationmix.xyz.plot import WorkCounter, plan_strength_sweep, plan_xyz, run_plot
from lora_fixtures import kohya_lora, write_lora

BASE = GenerationParams(prompt="1girl, solo", negative_prompt="lowres", steps=2, sampler="Euler", cfg_scale=7,
                        seed=10, width=64, height=64)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory, tiny_ckpt_dir, tiny_model):
    root = tmp_path_factory.mktemp("xyz_data")
    folders = Folders(root)
    folders.ensure()
    src = tiny_ckpt_dir / "models" / "Stable-diffusion"
    for p in src.iterdir():
        (shutil.copytree if p.is_dir() else shutil.copy2)(p, folders.checkpoint_dirs[0] / p.name)
    unet, te = tiny_model.pipe.unet, tiny_model.pipe.text_encoder
    write_lora(folders.lora_dirs[0] / "style.safetensors", kohya_lora(unet, te, seed=1, scale=0.3))
    write_lora(folders.lora_dirs[0] / "other.safetensors", kohya_lora(unet, te, seed=2, scale=0.3))
    return root


@pytest.fixture(scope="module")
def engine(data_dir):
    return Engine(Folders(data_dir), device="cpu", precision="fp32")


def arr(im) -> np.ndarray:
    return np.asarray(im, dtype=np.int16)


def test_2x3_grid_on_the_engine(engine, tmp_path):
    x = parse_axis("Seed", "1-2")
    y = parse_axis("LoRA strength", "0, 0.5, 1", target="style")
    plan = plan_xyz(BASE, x, y, check_lora=engine.lora_library.resolve, check_checkpoint=engine.checkpoint_path)
    res = run_plot(engine, plan, outputs_dir=tmp_path)
    assert not res.interrupted and len(res.cell_paths) == 6 and len(res.grid_paths) == 1
    for cell, path in zip(plan.cells, res.cell_paths):
        assert cell.index == cell.ix + 2 * cell.iy  # x fastest
        params, meta = parse_infotext(read_parameters(path))
        assert params.seed == x.values[cell.ix]
        strength = y.values[cell.iy]
        if strength == 0:
            assert "<lora:" not in params.prompt and "Lora hashes" not in meta
        else:
            assert f"<lora:style:{strength:g}>" in params.prompt and meta["Lora hashes"].startswith("style: ")
        assert Image.open(path).size == (64, 64)
    grid = Image.open(res.grid_paths[0]).convert("RGB")
    assert grid.width > 128 and grid.height > 192
    for cell in plan.cells:  # each cell sits where its coordinates say (bottom-right block of the grid)
        x0 = grid.width - (2 - cell.ix) * 64
        y0 = grid.height - (3 - cell.iy) * 64
        crop = grid.crop((x0, y0, x0 + 64, y0 + 64))
        assert (arr(crop) == arr(Image.open(res.cell_paths[cell.index]).convert("RGB"))).all()
    extra = parse_infotext(read_parameters(res.grid_paths[0])).ignored
    assert extra["X Type"] == "Seed" and extra["Y Type"] == "LoRA strength" and extra["Y LoRA"] == "style"
    # LoRA changes the picture.
    assert (arr(res.images[0]) != arr(res.images[4])).any()


def test_strength_zero_is_the_base_image_bit_for_bit(engine):
    plan = plan_strength_sweep(BASE, "style", strengths="0, 1", seeds=2)
    res = run_plot(engine, plan, save=False)
    assert plan.axes[0].labels() == ["base model", "1"]
    base = engine.generate(BASE.replace(batch_size=2), save=False)  # the base model, same seeds, same batch
    zero = engine.generate(BASE.replace(prompt=BASE.prompt + " <lora:style:0>", batch_size=2), save=False)
    for iy in range(2):
        cell = plan.cell(0, iy).index
        assert (arr(res.images[cell]) == arr(base.images[iy])).all()
        assert (arr(res.images[cell]) == arr(zero.images[iy])).all()
        assert (arr(res.images[plan.cell(1, iy).index]) != arr(base.images[iy])).any()


def test_sweep_loads_once_and_encodes_each_prompt_once(engine):
    plan = plan_strength_sweep(BASE.replace(seed=20), "other", strengths="0, 0.5, 1", seeds=2)
    with WorkCounter(engine) as work:
        res = run_plot(engine, plan, save=False)
    assert sum(im is not None for im in res.images) == 6
    assert work.checkpoint_loads == 0  # already loaded by earlier tests in this module: no reload
    assert work.lora_loads <= 1  # `other` is read once (or was cached from before)
    # Base + 2 strengths: the LoRA touches the text encoder, so prompt and negative are encoded once per state
    # (the base state's pair may still be cached from the previous test).
    assert work.encodings == len(set(work.encoded))
    assert 4 <= work.encodings <= 6 and len(engine.lora_library.names()) == 2


def test_fresh_engine_loads_checkpoint_and_each_lora_once(data_dir):
    engine = Engine(Folders(data_dir), device="cpu", precision="fp32")
    plan = plan_xyz(BASE, parse_axis("LoRA", "style, none, other"), parse_axis("LoRA strength", "0.5, 1"),
                    parse_axis("Seed", "1, 2"))
    with WorkCounter(engine) as work:
        run_plot(engine, plan, save=False)
    assert work.checkpoint_loads == 1
    assert work.lora_loads == 2
    assert work.encodings == len(set(work.encoded))  # no prompt encoded twice in the same text-encoder state


def test_unknown_lora_and_checkpoint_fail_before_any_image(engine, tmp_path):
    with pytest.raises(LoraError, match="ghost"):
        plan_xyz(BASE, parse_axis("LoRA", "style, ghost"), check_lora=engine.lora_library.resolve)
    with pytest.raises(PathError):
        plan_xyz(BASE, parse_axis("LoRA", "../style"), check_lora=engine.lora_library.resolve)
    with pytest.raises(PathError, match="nope"):
        plan_xyz(BASE, parse_axis("Checkpoint name", "tiny, nope"), check_checkpoint=engine.checkpoint_path)


def _cli(argv):
    from creationmix.cli import main
    return main(argv)


def test_cli_xyz_lists_files(data_dir, tmp_path, capsys):
    rc = _cli(["xyz", "--data-dir", str(data_dir), "--device", "cpu", "--prompt", "1girl", "--steps", "2",
               "--width", "64", "--height", "64", "--sampler", "Euler", "--seed", "3",
               "--x-type", "Seed", "--x-values", "3-4", "--y-type", "CFG Scale", "--y-values", "5,8",
               "--out", str(tmp_path), "--no-progress"])
    assert rc == 0
    lines = capsys.readouterr().out.split()
    assert len(lines) == 5 and sum("txt2img-grids" in line for line in lines) == 1
    assert all((tmp_path / p).exists() or __import__("pathlib").Path(p).exists() for p in lines)


def test_job_progress_bar_only_on_a_terminal(capsys):
    """Piped or logged, a job's stderr holds only warnings and errors (the README's promise); capsys is no TTY."""
    from creationmix.cli_jobs import tqdm_job_progress
    from creationmix.jobs import JobProgress

    progress, close = tqdm_job_progress(2)
    progress(JobProgress(1, 2, label="a"))
    progress(JobProgress(2, 2, label="b"))
    close()
    assert capsys.readouterr().err == ""


def test_cli_bad_axis_value_fails_before_loading(data_dir, tmp_path, capsys):
    rc = _cli(["xyz", "--data-dir", str(data_dir), "--x-type", "Steps", "--x-values", "2, abc",
               "--out", str(tmp_path)])
    out, err = capsys.readouterr()
    assert rc == 1 and out == "" and len(err.splitlines()) == 1
    assert re.search(r"X axis \(Steps\).*'abc'", err)


def test_cli_sweep_fills_the_preset_slot(data_dir, tmp_path, capsys):
    rc = _cli(["xyz", "--data-dir", str(data_dir), "--device", "cpu", "--preset", "lora-preview", "--sweep",
               "style", "--strengths", "0, 1", "--seeds", "1", "--steps", "2", "--width", "64", "--height", "64",
               "--no-hires", "--sampler", "Euler", "--out", str(tmp_path), "--no-progress"])
    assert rc == 0
    paths = capsys.readouterr().out.split()
    assert len(paths) == 3
    texts = [read_parameters(p) for p in paths if "txt2img-images" in p]
    assert "<lora:" not in texts[0].split("\n")[0]  # base model: the slot's default LoRA is not there either
    assert texts[1].split("\n")[0].endswith("<lora:style:1>")
    grid = parse_infotext(read_parameters(next(p for p in paths if "grids" in p)))
    assert grid.ignored["Script"] == "LoRA strength sweep"
