"""`python -m creationmix` end to end: stdout carries only PNG paths, errors are one line on stderr."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
RECIPE = """1girl, (masterpiece:1.2)
Negative prompt: (worst quality:2.0), text, logo
Steps: 30, Sampler: DPM++ 2M Karras, CFG scale: 9.5, Seed: 106059479, Size: 672x1056, Denoising strength: 0.6, \
Clip skip: 2, Hires upscale: 1.6, Hires steps: 20, Hires upscaler: Latent
"""


def run(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "creationmix", *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=300, env={"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1",
                                                       "PYTHONPATH": str(ROOT)})


def test_txt2img_with_params_file_and_overrides(folders, tmp_path):
    recipe = tmp_path / "recipe.txt"
    recipe.write_text(RECIPE)
    r = run("txt2img", "--data-dir", folders.data_dir, "--params", recipe, "--width", 64, "--height", 64,
            "--steps", 2, "--hires-steps", 1, "--hires-scale", 1.5, "--batch-size", 2)
    assert r.returncode == 0, r.stderr
    paths = [Path(line) for line in r.stdout.splitlines()]
    assert len(paths) == 2 and all(p.is_file() for p in paths)
    img = Image.open(paths[1])
    assert img.size == (96, 96)
    text = img.text["parameters"]
    assert text.startswith("1girl, (masterpiece:1.2)\nNegative prompt: (worst quality:2.0), text, logo\n")
    for part in ("Steps: 2", "CFG scale: 9.5", "Seed: 106059480", "Size: 64x64", "Clip skip: 2",
                 "Denoising strength: 0.6", "Hires upscale: 1.5", "Hires steps: 1", "Hires upscaler: Latent"):
        assert part in text
    info = run("pnginfo", paths[1])
    assert info.returncode == 0 and info.stdout.strip() == text.strip()


@pytest.mark.parametrize("args, needle", [
    (["--width", "100"], "width must be a multiple of 8"),
    (["--sampler", "Euler z"], "unknown sampler 'Euler z'"),
    (["--hires", "--hires-upscaler", "ESRGAN_4x"], "needs the file ESRGAN_4x.pth"),
    (["--hires-upscaler", "../x"], "hires upscaler '../x' contains '..'"),
    (["--denoising-strength", "0"], "denoising strength"),
    (["--checkpoint", "../../etc/passwd"], "contains '..'"),
    (["--steps", "x"], "invalid int value"),
])
def test_bad_input_is_one_line_and_writes_nothing(folders, args, needle):
    r = run("txt2img", "--data-dir", folders.data_dir, "--width", 64, "--height", 64, "--steps", 1, *args)
    assert r.returncode != 0
    assert r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], r.stderr
    assert not list(folders.outputs_dir.rglob("*.png"))


def test_garbage_checkpoint_is_a_clear_error(folders):
    (folders.checkpoint_dirs[0] / "broken.safetensors").write_bytes(b"not a model at all")
    r = run("txt2img", "--data-dir", folders.data_dir, "--checkpoint", "broken", "--width", 64, "--height", 64,
            "--steps", 1)
    assert r.returncode == 1 and "broken.safetensors" in r.stderr and r.stdout == ""


def test_presets_listed_and_usable(folders):
    r = run("presets")
    assert r.returncode == 0
    ids = [line.split("\t")[0] for line in r.stdout.splitlines()]
    assert {"in-general", "lora-well-trained", "lora-less-trained", "lora-preview"} <= set(ids)
    r = run("txt2img", "--data-dir", folders.data_dir, "--preset", "in-general", "--width", 64, "--height", 64,
            "--steps", 1, "--hires-steps", 1, "--hires-scale", 1.25)
    assert r.returncode == 0, r.stderr
    text = Image.open(r.stdout.strip()).text["parameters"]
    assert "Seed: 106059479" in text and "CFG scale: 9.5" in text


def test_pnginfo_on_an_image_without_metadata(tmp_path):
    p = tmp_path / "plain.png"
    Image.new("RGB", (4, 4)).save(p)
    r = run("pnginfo", p)
    assert r.returncode != 0 and "no generation parameters" in r.stderr
