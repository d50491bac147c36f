"""The command line, in-process (`cli.main([...])`): stdout carries only PNG paths, stderr stays empty on
success, every error is one line. One end-to-end subprocess check covers a fresh interpreter's stderr."""
from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from creationmix.cli import main

ROOT = Path(__file__).resolve().parents[1]
RECIPE = """1girl, (masterpiece:1.2)
Negative prompt: (worst quality:2.0), text, logo
Steps: 30, Sampler: DPM++ 2M Karras, CFG scale: 9.5, Seed: 106059479, Size: 672x1056, Denoising strength: 0.6, \
Clip skip: 2, Hires upscale: 1.6, Hires steps: 20, Hires upscaler: Latent
"""
SMALL = ["--width", "64", "--height", "64", "--steps", "1"]


def cli(capfd, *args):
    rc = main([str(a) for a in args])
    out, err = capfd.readouterr()
    return rc, out, err


def test_txt2img_with_params_file_and_overrides(folders, tmp_path, capfd):
    recipe = tmp_path / "recipe.txt"
    recipe.write_text(RECIPE)
    rc, out, err = cli(capfd, "txt2img", "--data-dir", folders.data_dir, "--params", recipe, "--width", 64,
                       "--height", 64, "--steps", 2, "--hires-steps", 1, "--hires-scale", 1.5, "--batch-size", 2)
    assert (rc, err) == (0, "")
    paths = [Path(line) for line in out.splitlines()]
    assert len(paths) == 2 and all(p.is_file() for p in paths)
    img = Image.open(paths[1])
    assert img.size == (96, 96)
    text = img.text["parameters"]
    assert text.startswith("1girl, (masterpiece:1.2)\nNegative prompt: (worst quality:2.0), text, logo\n")
    for part in ("Steps: 2", "CFG scale: 9.5", "Seed: 106059480", "Size: 64x64", "Clip skip: 2",
                 "Denoising strength: 0.6", "Hires upscale: 1.5", "Hires steps: 1", "Hires upscaler: Latent"):
        assert part in text
    rc, out, err = cli(capfd, "pnginfo", paths[1])
    assert rc == 0 and out.strip() == text.strip() and err == ""


@pytest.mark.parametrize("args, needle", [
    (["--width", "100"], "width must be a multiple of 8"),
    (["--sampler", "Euler z"], "unknown sampler 'Euler z'"),
    (["--hires", "--hires-upscaler", "ESRGAN_4x"], "needs the file ESRGAN_4x.pth"),
    (["--hires-upscaler", "../x"], "hires upscaler '../x' contains '..'"),
    (["--denoising-strength", "0"], "denoising strength"),
    (["--checkpoint", "../../etc/passwd-nowhere"], "no such file"),
    (["--checkpoint", "nope"], "checkpoint 'nope' not found"),
    (["--vae", "/no/such/vae.safetensors"], "no such file"),
    (["--params", "/no/such/recipe.txt"], "cannot read --params file"),
    (["--steps", "x"], "invalid int value"),
])
def test_bad_input_is_one_line_and_writes_nothing(folders, capfd, args, needle):
    rc, out, err = cli(capfd, "txt2img", "--data-dir", folders.data_dir, *SMALL, *args)
    assert rc != 0 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], err
    assert not list(folders.outputs_dir.rglob("*.png"))


def test_garbage_checkpoint_is_one_line(folders, capfd):
    (folders.checkpoint_dirs[0] / "broken.safetensors").write_bytes(b"not a model at all")
    rc, out, err = cli(capfd, "txt2img", "--data-dir", folders.data_dir, "--checkpoint", "broken", *SMALL)
    assert rc == 1 and out == "" and len(err.splitlines()) == 1 and "broken.safetensors" in err


def test_checkpoint_file_anywhere(tiny_ckpt, tmp_path, capfd, monkeypatch):
    """The operator's --checkpoint may be a file outside every folder; the infotext names its stem and
    nothing is created in the working directory except outputs/ and the hash cache (no empty models/ tree)."""
    here = tmp_path / "elsewhere"
    here.mkdir()
    monkeypatch.chdir(here)
    rc, out, err = cli(capfd, "txt2img", "--checkpoint", tiny_ckpt, "--prompt", "x", *SMALL)
    assert (rc, err) == (0, "")
    png = Path(out.strip())
    assert png.is_file() and png.resolve().is_relative_to(here / "outputs")
    assert "Model: tiny," in Image.open(png).text["parameters"]
    created = {p.name for p in here.iterdir()}  # .cache only when this process had not hashed the file yet
    assert "outputs" in created and created <= {".cache", "outputs"}
    assert stat.S_IMODE(png.stat().st_mode) == 0o666 & ~_umask()


def test_out_and_relative_checkpoint_path(tiny_ckpt, tmp_path, capfd, monkeypatch):
    monkeypatch.chdir(tiny_ckpt.parent)
    rc, out, err = cli(capfd, "txt2img", "--checkpoint", f"./{tiny_ckpt.name}", "--out", tmp_path / "o", *SMALL)
    assert (rc, err) == (0, "") and Path(out.strip()).resolve().is_relative_to(tmp_path / "o")


def test_presets_listed_and_usable(folders, capfd):
    rc, out, err = cli(capfd, "presets")
    assert (rc, err) == (0, "")
    ids = [line.split("\t")[0] for line in out.splitlines()]
    assert {"in-general", "lora-well-trained", "lora-less-trained", "lora-preview"} <= set(ids)
    rc, out, err = cli(capfd, "txt2img", "--data-dir", folders.data_dir, "--preset", "in-general", *SMALL,
                       "--hires-steps", 1, "--hires-scale", 1.25)
    assert (rc, err) == (0, "")
    text = Image.open(out.strip()).text["parameters"]
    assert "Seed: 106059479" in text and "CFG scale: 9.5" in text


def test_pnginfo_on_an_image_without_metadata(tmp_path, capfd):
    p = tmp_path / "plain.png"
    Image.new("RGB", (4, 4)).save(p)
    rc, out, err = cli(capfd, "pnginfo", p)
    assert rc != 0 and out == "" and err.count("\n") == 1 and "no generation parameters" in err


def test_verbose_shows_logs(folders, capfd):
    rc, out, err = cli(capfd, "-v", "txt2img", "--data-dir", folders.data_dir, *SMALL)
    assert rc == 0 and out.strip().endswith(".png") and ("INFO" in err or "WARNING" in err)


def _umask() -> int:
    old = os.umask(0)
    os.umask(old)
    return old


def test_end_to_end_fresh_interpreter_is_quiet(folders, tmp_path):
    """A new process: import-time notices of transformers / diffusers must not reach stderr either."""
    env = {"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-m", "creationmix", "txt2img", "--data-dir", str(folders.data_dir),
                        *SMALL], cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)
    assert (r.returncode, r.stderr) == (0, "")
    assert Path(r.stdout.strip()).is_file()
    # A mistyped checkpoint is refused before torch is imported (a second, not the seconds of the imports).
    argv = ["txt2img", "--data-dir", str(folders.data_dir), "--checkpoint", "missing", *SMALL]
    probe = f"import sys\nfrom creationmix.cli import main\nrc = main({argv!r})\nprint(rc, 'torch' in sys.modules)"
    bad = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                         env=env)
    assert bad.stdout.split() == ["1", "False"] and len(bad.stderr.splitlines()) == 1
    assert "checkpoint 'missing' not found" in bad.stderr


def test_option_before_the_command_says_where_it_goes(capsys, tmp_path):
    from creationmix import cli

    assert cli.main(["--data-dir", str(tmp_path), "txt2img", "--steps", "2"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "invalid choice" in err
    assert "--data-dir is an option of a command and goes after it: creationmix txt2img --data-dir" in err
    assert cli.main(["txt2img", "--no-such-flag"]) == 2
    assert "goes after it" not in capsys.readouterr().err  # a plain unknown flag gets argparse's own message
