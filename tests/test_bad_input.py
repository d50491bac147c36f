"""Bad input and faults (issue 14): every case is one clear error line, exit code != 0, nothing written."""
from __future__ import annotations

import errno
from pathlib import Path

import pytest

from creationmix import fsio
from creationmix.cli import main
from creationmix.errors import CreationMixError, InvalidParameter, LoraError, PathError

SMALL = ["--width", "64", "--height", "64", "--steps", "1"]


def cli(capfd, *args):
    rc = main([str(a) for a in args])
    out, err = capfd.readouterr()
    return rc, out, err


def one_error_line(rc, out, err, *needles):
    assert rc != 0 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


def pngs(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.png")) + sorted(folder.rglob("*.tmp")) if folder.exists() else []


# -- 1. --params file that is not UTF-8 ---------------------------------------------------------------------------
@pytest.mark.parametrize("content, offset", [
    (b"1girl\nSteps: 20, Sampler: Euler a, Seed: 1, Size: 64x64, CFG scale: 7, Model: caf\xe9\n", 81),  # Latin-1
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", 0),  # binary
])
def test_params_file_not_utf8_names_file_and_offset(folders, tmp_path, capfd, content, offset):
    bad = tmp_path / "recipe.txt"
    bad.write_bytes(content)
    rc, out, err = cli(capfd, "txt2img", "--data-dir", folders.data_dir, "--params", bad, *SMALL)
    one_error_line(rc, out, err, str(bad), "not UTF-8", f"byte {offset}")
    assert pngs(folders.data_dir / "outputs") == []


# -- 2. very long checkpoint / VAE / LoRA names -------------------------------------------------------------------
@pytest.mark.parametrize("flag", ["--checkpoint", "--vae"])
def test_cli_5000_char_model_name(folders, capfd, flag):
    rc, out, err = cli(capfd, "txt2img", "--data-dir", folders.data_dir, flag, "x" * 5000, *SMALL)
    one_error_line(rc, out, err, "name is too long", "5000 characters")
    assert pngs(folders.data_dir / "outputs") == []


@pytest.mark.parametrize("method", ["resolve_checkpoint", "resolve_vae"])
def test_folder_names_are_bounded(folders, method):
    with pytest.raises(PathError, match="too long"):
        getattr(folders, method)("y" * 5000)
    with pytest.raises(PathError, match="too long"):
        getattr(folders, method)("sub/" + "z" * 300)


def test_lora_name_too_long_is_a_lora_error(folders):
    from creationmix.lora.library import LoraLibrary
    with pytest.raises(CreationMixError, match="too long"):
        LoraLibrary(folders.lora_dirs).resolve("l" * 5000)


# -- 3. --out that cannot be written --------------------------------------------------------------------------------
def test_out_is_a_file(folders, tmp_path, capfd):
    target = tmp_path / "afile"
    target.write_bytes(b"keep me")
    rc, out, err = cli(capfd, "txt2img", "--data-dir", folders.data_dir, "--out", target, *SMALL)
    one_error_line(rc, out, err, "cannot write PNG to", str(target))
    assert target.read_bytes() == b"keep me"


def test_out_unwritable_dir(folders, tmp_path, capfd):
    import os
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        if os.access(ro, os.W_OK):
            pytest.skip("running as root: permissions are not enforced")
        rc, out, err = cli(capfd, "txt2img", "--data-dir", folders.data_dir, "--out", ro, *SMALL)
        one_error_line(rc, out, err, "cannot write PNG to", str(ro), "Permission denied")
        assert list(ro.iterdir()) == []
    finally:
        ro.chmod(0o755)


def test_out_disk_full(folders, tmp_path, capfd, monkeypatch):
    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(fsio.os, "fsync", full)
    out_dir = tmp_path / "out"
    rc, out, err = cli(capfd, "txt2img", "--data-dir", folders.data_dir, "--out", out_dir, *SMALL)
    one_error_line(rc, out, err, "cannot write PNG to", str(out_dir), "No space left on device")
    assert [p for p in out_dir.rglob("*") if p.is_file()] == []


# -- 4. the launcher's --port -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("port", ["99999", "0", "-1"])
def test_launcher_port_out_of_range(capsys, port):
    from creationmix.ui.launcher import parse_args
    with pytest.raises(SystemExit) as e:
        parse_args(["--port", port])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "--port" in err and "1 to 65535" in err and "Traceback" not in err


# -- 7. LoRA tags ----------------------------------------------------------------------------------------------------
def test_lora_tag_with_drive_letter_path():
    from creationmix.lora.tags import extract_lora_tags
    with pytest.raises(LoraError, match=r"drive-letter path, not a LoRA name"):
        extract_lora_tags(r"1girl, <lora:C:\Windows\x:1>")
    with pytest.raises(LoraError, match=r"absolute path, not a LoRA name"):
        extract_lora_tags("<lora:/etc/passwd:1>")


def test_malformed_lora_tag_is_not_silently_used():
    from creationmix.lora.tags import extract_lora_tags
    with pytest.raises(LoraError, match=r"malformed LoRA tag <lora:style_Rella>x:1>"):
        extract_lora_tags("1girl, <lora:style_Rella>x:1>")
    # a '>' that only follows a tag in the text is fine
    assert extract_lora_tags("<lora:a:0.5> >_<")[0] == " >_<"


# -- 8. prompt editing with an infinite step ---------------------------------------------------------------------------
@pytest.mark.parametrize("prompt", ["[a:b:1e999]", "[a:b:-1e999]", "[a:[b:c:1e400]:0.5]"])
def test_prompt_editing_infinite_step(prompt):
    from creationmix.prompt.schedule import get_learned_conditioning_prompt_schedules
    with pytest.raises(InvalidParameter, match="is not a finite number"):
        get_learned_conditioning_prompt_schedules([prompt], 20)


def test_prompt_editing_nan_step_is_plain_text():
    """`nan` is not a number in A1111's grammar: the bracket stays text, as A1111 leaves it."""
    from creationmix.prompt.schedule import get_learned_conditioning_prompt_schedules
    assert get_learned_conditioning_prompt_schedules(["[a:b:nan]"], 20) == [[[20, "[a:b:nan]"]]]


# -- 11. --listen without --auth -----------------------------------------------------------------------------------------
def test_listen_without_auth_warns():
    from creationmix.ui.launcher import open_door_warnings, parse_args
    [line] = open_door_warnings(parse_args(["--listen"]))
    assert "anyone on your network can use this" in line
    assert open_door_warnings(parse_args(["--listen", "--auth", "u:p"])) == []
    assert open_door_warnings(parse_args([])) == []


# -- 9. a failed load keeps the working model -------------------------------------------------------------------------
def test_failed_vae_load_keeps_the_loaded_checkpoint(folders):
    from creationmix.engine import Engine
    from creationmix.errors import ModelError
    # listed before tiny.safetensors: the old fallback to the first listed file would pick it
    (folders.checkpoint_dirs[0] / "a_corrupt.safetensors").write_bytes(b"\x00" * 64)
    (folders.vae_dirs[0] / "broken.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}garbage")
    engine = Engine(folders, device="cpu", precision="fp32")
    model = engine.load("tiny")
    with pytest.raises(ModelError):
        engine.load("tiny", vae="broken.safetensors")
    assert engine.model is model and engine.encoder is not None and engine.loras is not None
    assert engine.checkpoint_path(None) == model.path
    assert engine.load(None) is model


# -- 10. messages that must not leak file bytes / must name the key ------------------------------------------------------
PASSWD = b"root:x:0:0:root:/root:/bin/bash\n"


def test_symlinked_lora_header_error_does_not_echo_file_bytes(folders, tmp_path):
    from creationmix.lora.library import read_safetensors_header
    secret = tmp_path / "passwd"
    secret.write_bytes(PASSWD)
    link = folders.lora_dirs[0] / "evil.safetensors"
    link.symlink_to(secret)
    with pytest.raises(LoraError) as e:
        read_safetensors_header(link)
    assert str(int.from_bytes(PASSWD[:8], "little")) not in str(e.value)
    assert "evil.safetensors" in str(e.value) and f"{len(PASSWD)} bytes" in str(e.value)


def test_symlinked_checkpoint_header_error_does_not_echo_file_bytes(folders, tmp_path, capfd):
    secret = tmp_path / "passwd"
    secret.write_bytes(PASSWD)
    (folders.checkpoint_dirs[0] / "evil.safetensors").symlink_to(secret)
    rc, out, err = cli(capfd, "txt2img", "--data-dir", folders.data_dir, "--checkpoint", "evil", *SMALL)
    line = one_error_line(rc, out, err, "evil.safetensors", "not a safetensors file")
    assert str(int.from_bytes(PASSWD[:8], "little")) not in line


@pytest.mark.parametrize("key", ["Steps", "Seed", "Clip skip", "Hires steps"])
def test_23_digit_integer_names_the_key(key):
    from creationmix.errors import InfotextError
    from creationmix.infotext import parse_infotext
    values = {"Steps": "20", "Sampler": "Euler a", "CFG scale": "7", "Seed": "1", "Size": "64x64"}
    values[key] = "1" * 23
    if key.startswith("Hires"):  # hires keys count only with hires fix on (A1111: Denoising strength present)
        values["Denoising strength"] = "0.5"
    with pytest.raises(InfotextError, match=f"^{key}: '1{{23}}'"):
        parse_infotext("1girl\n" + ", ".join(f"{k}: {v}" for k, v in values.items()))


# -- 5. work-size guard -----------------------------------------------------------------------------------------------
def test_huge_request_refused_before_any_load(folders, capfd, monkeypatch):
    import creationmix.engine as engine_mod

    def no_load(*a, **k):
        raise AssertionError("the model was loaded before the size check")
    monkeypatch.setattr(engine_mod, "load_checkpoint", no_load)
    rc, out, err = cli(capfd, "txt2img", "--data-dir", folders.data_dir, "--width", 4096, "--height", 4096,
                       "--batch-size", 64, "--steps", 1)
    line = one_error_line(rc, out, err, "4096x4096 x batch 64 needs at least", "GiB on the cpu", "is free")
    assert "what fits" in line


def test_worksize_says_what_fits():
    from creationmix import worksize
    gib = 2 ** 30
    worksize.check(512, 512, 1, 4, 4 * gib)  # fits: no error
    with pytest.raises(InvalidParameter, match=r"batch size \d+ \(or fewer\) or --tiled-vae"):
        worksize.check(1024, 1024, 8, 2, 8 * gib)
    with pytest.raises(InvalidParameter, match=r"\(hires 2048x2048\) x batch 1 .* what fits: --tiled-vae"):
        worksize.check(1024, 1024, 1, 4, 8 * gib, hires_size=(2048, 2048))
    with pytest.raises(InvalidParameter, match="a smaller size or batch"):
        worksize.check(4096, 4096, 1, 4, 1 * gib, tiled_vae=True)
    assert worksize.free_bytes("cpu") is None or worksize.free_bytes("cpu") > 0


# -- 6. NaN/Inf guards, non-float weights -------------------------------------------------------------------------------
def _edit_ckpt(src: Path, dst: Path, edit) -> Path:
    import shutil

    from safetensors.torch import load_file, save_file
    sd = load_file(str(src))
    edit(sd)
    save_file(sd, str(dst))
    shutil.copytree(src.with_suffix(".config"), dst.with_suffix(".config"))
    return dst


def test_nan_unet_weights_raise_nans_error_not_a_black_image(folders, tiny_ckpt, capfd):
    key = "model.diffusion_model.out.2.weight"
    _edit_ckpt(tiny_ckpt, folders.checkpoint_dirs[0] / "nanunet.safetensors",
               lambda sd: sd[key].fill_(float("nan")))
    rc, out, err = cli(capfd, "txt2img", "--data-dir", folders.data_dir, "--checkpoint", "nanunet", *SMALL)
    one_error_line(rc, out, err, "UNet produced NaN/Inf", "nanunet.safetensors is probably broken")
    assert pngs(folders.data_dir / "outputs") == []


def test_nan_vae_weights_raise_nans_error(folders, tiny_ckpt):
    from creationmix.engine import Engine
    from creationmix.errors import NansError
    from creationmix.params import GenerationParams
    key = "first_stage_model.decoder.conv_out.weight"
    _edit_ckpt(tiny_ckpt, folders.checkpoint_dirs[0] / "nanvae.safetensors", lambda sd: sd[key].fill_(float("inf")))
    engine = Engine(folders, device="cpu", precision="fp32")
    with pytest.raises(NansError, match="VAE produced NaN/Inf .* the VAE inside nanvae.safetensors is probably broken"):
        engine.generate(GenerationParams(prompt="x", width=64, height=64, steps=1, seed=1, checkpoint="nanvae"))
    assert pngs(folders.outputs_dir) == []


def test_int8_checkpoint_refused_naming_dtype(folders, tiny_ckpt):
    import torch

    from creationmix.errors import ModelError
    from creationmix.models.loader import load_checkpoint
    key = "model.diffusion_model.input_blocks.0.0.weight"

    def to_int8(sd):
        sd[key] = sd[key].to(torch.int8)
    path = _edit_ckpt(tiny_ckpt, folders.checkpoint_dirs[0] / "int8.safetensors", to_int8)
    with pytest.raises(ModelError, match=f"checkpoint int8.safetensors has int8 weights \\({key}\\)"):
        load_checkpoint(path)


def test_nan_embedding_refused_at_load_with_its_name(folders):
    import torch
    from safetensors.torch import save_file

    from creationmix.prompt.embeddings import EmbeddingLibrary
    emb_dir = folders.embedding_dirs[0]
    save_file({"emb_params": torch.full((2, 32), float("nan"))}, str(emb_dir / "badneg.safetensors"))
    save_file({"emb_params": torch.ones(2, 32)}, str(emb_dir / "good.safetensors"))
    lib = EmbeddingLibrary([emb_dir])
    lib.reload(force=True)
    assert "good" in lib and "badneg" not in lib
    assert "NaN/Inf" in lib.skipped["badneg.safetensors"]


def test_nan_lora_refused_with_its_name(tiny_model, tmp_path):
    import torch
    from lora_fixtures import kohya_lora, write_lora

    from creationmix.lora.library import LoraLibrary
    from creationmix.lora.manager import LoraManager
    from creationmix.lora.tags import LoraRequest
    sd = kohya_lora(tiny_model.pipe.unet, None, seed=1)
    first = next(iter(sd))
    sd[first] = torch.full_like(sd[first], float("nan"))
    write_lora(tmp_path / "Lora" / "nanlora.safetensors", sd)
    manager = LoraManager(tiny_model.pipe, LoraLibrary([tmp_path / "Lora"]))
    with pytest.raises(LoraError, match=r"LoRA nanlora has NaN/Inf weights"):
        manager.activate([LoraRequest("nanlora", 1.0)])
