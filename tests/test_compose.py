"""The composition root: options -> Service; the operator's files; the one "which checkpoint" rule and the
remembered choice."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from creationmix.compose import ServiceOptions, build_service, file_option, folder_option
from creationmix.errors import PathError
from creationmix.params import GenerationParams
from creationmix.paths import OperatorFolders, with_operator_files

P = GenerationParams(prompt="x", steps=1, width=64, height=64, sampler="Euler", seed=1)


def _second_checkpoint(folders, name="other.safetensors") -> Path:
    src = folders.checkpoint_dirs[0] / "tiny.safetensors"
    dst = folders.checkpoint_dirs[0] / name
    shutil.copy2(src, dst)
    shutil.copytree(src.with_name("tiny.config"), dst.with_name(Path(name).stem + ".config"))
    return dst


def test_file_option_rules(tmp_path, monkeypatch):
    f = tmp_path / "m.safetensors"
    f.write_bytes(b"x")
    monkeypatch.chdir(tmp_path)
    assert file_option(str(f), "--checkpoint") == f and file_option("m.safetensors", "--checkpoint") == f
    assert file_option("anime/creationmix", "--checkpoint") == "anime/creationmix"  # a name for the folders
    for bad in ("/nowhere/x.safetensors", "~/nowhere-at-all.safetensors", "../x.safetensors"):
        with pytest.raises(PathError, match="no such file"):
            file_option(bad, "--checkpoint")
    (tmp_path / "root" / "chars").mkdir(parents=True)
    assert folder_option("chars", "--lora-dir", [tmp_path / "root"]) == (tmp_path / "root" / "chars").resolve()
    with pytest.raises(PathError, match="no such folder"):
        folder_option("nope", "--lora-dir", [tmp_path / "root"])


def test_operator_files_are_known_by_file_name(folders, tmp_path):
    outside = tmp_path / "dl" / "mine.safetensors"
    outside.parent.mkdir()
    outside.write_bytes(b"x")
    f = with_operator_files(folders, checkpoint=outside, lora_dir=tmp_path / "dl")
    assert isinstance(f, OperatorFolders)
    assert f.resolve_checkpoint("mine") == outside and f.resolve_checkpoint("mine.safetensors") == outside
    assert f.list_checkpoints()[0] == outside and f.lora_dirs[0] == tmp_path / "dl"
    with pytest.raises(PathError, match="absolute path"):  # names from outside keep the folder rule
        f.resolve_checkpoint(str(outside))
    inside = with_operator_files(folders, lora_dir=folders.lora_dirs[0])
    assert inside is folders  # a LoRA folder already configured adds nothing


def test_service_from_options_uses_the_operator_checkpoint(folders, tmp_path):
    other = _second_checkpoint(folders)
    moved = tmp_path / "elsewhere" / "moved.safetensors"
    moved.parent.mkdir()
    shutil.move(other, moved)
    shutil.move(other.with_name("other.config"), moved.with_name("moved.config"))
    svc = build_service(ServiceOptions(data_dir=folders.data_dir, device="cpu", checkpoint=moved,
                                       outputs_dir=tmp_path / "out"))
    assert svc.selected_checkpoint() == "moved.safetensors" and "moved.safetensors" in svc.list_checkpoints()
    res = svc.generate(P)  # no checkpoint asked: the configured default
    assert "Model: moved," in res.infotexts[0] and res.paths[0].is_relative_to(tmp_path / "out")


def test_the_choice_is_remembered_across_restarts(folders):
    _second_checkpoint(folders)
    opts = ServiceOptions(data_dir=folders.data_dir, device="cpu", remember_checkpoint=True)
    svc = build_service(opts)
    assert svc.selected_checkpoint() is None
    first, second = svc.list_checkpoints()
    assert f"Model: {Path(first).stem}," in svc.generate(P).infotexts[0]  # nothing chosen: the first listed
    svc.generate(P.replace(checkpoint=second))
    assert svc.selected_checkpoint() == second
    assert f"Model: {Path(second).stem}," in svc.generate(P).infotexts[0]  # jobs without one get the choice
    again = build_service(opts)
    assert again.selected_checkpoint() == second
    assert f"Model: {Path(second).stem}," in again.generate(P).infotexts[0]
    (folders.checkpoint_dirs[0] / second).unlink()
    assert build_service(opts).selected_checkpoint() is None  # a remembered file that is gone is forgotten
    assert build_service(ServiceOptions(data_dir=folders.data_dir)).selected_checkpoint() is None  # CLI: never


def test_options_refuse_what_is_not_a_name_or_a_file():
    with pytest.raises(TypeError, match="ServiceOptions.checkpoint"):
        ServiceOptions(checkpoint=3)
