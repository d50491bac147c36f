"""The real Service (what the UI talks to) on the tiny checkpoint."""
from __future__ import annotations


from creationmix.params import GenerationParams
from creationmix.paths import Folders
from creationmix.service import DEMO_NAME, Service


def test_demo_checkpoint_built_when_models_folder_is_empty(tmp_path):
    svc = Service(Folders(tmp_path), device="cpu")
    assert svc.list_checkpoints() == [DEMO_NAME]
    assert "makes noise, not pictures" in svc.banner()
    res = svc.generate(GenerationParams(prompt="x", steps=1, width=64, height=64, seed=3))
    assert res.paths[0].is_file() and "Model: demo-tiny-random" in res.infotexts[0]
    # Built once: a second service reuses the file.
    mtime = (tmp_path / "models" / "Stable-diffusion" / DEMO_NAME).stat().st_mtime_ns
    Service(Folders(tmp_path), device="cpu")
    assert (tmp_path / "models" / "Stable-diffusion" / DEMO_NAME).stat().st_mtime_ns == mtime


def test_no_banner_with_a_real_checkpoint(folders):
    svc = Service(folders, device="cpu")
    assert svc.banner() is None and svc.list_checkpoints() == ["tiny.safetensors"]
    assert svc.list_vaes()[:2] == ["Automatic", "None"]


def test_token_count_and_presets(folders):
    svc = Service(folders, device="cpu")
    assert svc.token_count("a photo of a cat <lora:x:1>") == (5, 75)
    assert svc.token_count(", ".join(["masterpiece"] * 40)) == (79, 150)
    ids = [p.id for p in svc.list_presets()]
    assert "in-general" in ids


def test_preset_check_says_when_the_model_is_not_creationmix(folders):
    svc = Service(folders, device="cpu")
    warning = svc.check_preset("in-general", "tiny.safetensors")
    assert warning and "this is not CreationMix V1" in warning


def test_infotext_and_image_info(folders):
    svc = Service(folders, device="cpu")
    res = svc.generate(GenerationParams(prompt="a, b", steps=1, width=64, height=64, seed=9))
    text = svc.read_image_info(res.paths[0])
    p = svc.parse_infotext(text)
    assert (p.prompt, p.seed, p.steps, p.width) == ("a, b", 9, 1, 64)
