"""Pixel upscalers: the name table, A1111's folders and file names, loading both published layouts of the two
architectures we define (RRDB-ESRGAN, Real-ESRGAN Compact) from .pth and .safetensors, A1111's tiling and resize
rules, and the hires pass with a model upscaler end to end on the tiny checkpoint."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from creationmix.engine import Engine
from creationmix.errors import InvalidParameter, ModelError
from creationmix.infotext import parse_infotext
from creationmix.params import UPSCALERS, GenerationParams
from creationmix.paths import Folders
from creationmix.upscalers import LATENT_MODES, PIL_UPSCALERS, find_model_file, list_upscalers
from creationmix.upscalers.models import load_upscaler
from creationmix.upscalers.pixels import LANCZOS, NEAREST, model_runner, upscale_with_model
from creationmix.upscalers.runner import PixelUpscalers, UpscaleSettings

from upscaler_fixtures import compact_state_dict, esrgan_state_dict, save

SMALL = dict(prompt="1girl", negative_prompt="lowres", steps=2, sampler="Euler", cfg_scale=7.0, seed=77,
             width=64, height=64, enable_hires=True, hires_scale=2.0, hires_steps=2, denoising_strength=0.5)


def _image(w=64, h=48, seed=0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))


@pytest.fixture
def with_models(folders):
    """A1111's folders filled the way users have them: Real-ESRGAN files under their A1111 names, community
    ESRGAN models by stem, a Compact model as safetensors in ComfyUI's folder."""
    m = folders.data_dir / "models"
    save(esrgan_state_dict(layout="new"), m / "RealESRGAN" / "RealESRGAN_x4plus.pth")
    save(compact_state_dict(), m / "RealESRGAN" / "realesr-animevideov3.pth", wrapper="params")
    save(esrgan_state_dict(layout="old", seed=1), m / "ESRGAN" / "4x-UltraSharp.pth", wrapper=None)
    save(compact_state_dict(seed=2), m / "upscale_models" / "4x-AnimeSharp.safetensors")
    return folders


# -- names and folders --------------------------------------------------------------------------------------------

def test_params_accept_every_table_name_and_any_stem_but_no_path_escape():
    for name in UPSCALERS:
        assert GenerationParams(hires_upscaler=name).hires_upscaler == name
    assert {"Latent", "None", "Lanczos", "Nearest", "R-ESRGAN 4x+ Anime6B", "ESRGAN_4x", "SwinIR 4x"} <= set(UPSCALERS)
    assert GenerationParams(hires_upscaler="4x-UltraSharp").hires_upscaler == "4x-UltraSharp"
    for bad in ("../4x", "/etc/x", "C:\\x", "a\nb"):
        with pytest.raises(InvalidParameter, match="hires upscaler"):
            GenerationParams(hires_upscaler=bad)


def test_listing_names_builtins_by_a1111_name_and_others_by_stem(with_models, tmp_path):
    a1111 = tmp_path / "a1111"
    save(compact_state_dict(), a1111 / "models" / "DAT" / "DAT_x2.safetensors")  # wrong ext for the built-in
    save(esrgan_state_dict(), a1111 / "models" / "RealESRGAN" / "RealESRGAN_x4plus_anime_6B.pth")
    f = Folders(with_models.data_dir, a1111)
    names = [e.name for e in list_upscalers(f)]
    assert names[:9] == [*LATENT_MODES, *PIL_UPSCALERS]
    assert names[9:] == sorted(names[9:], key=str.lower)
    assert {"R-ESRGAN 4x+", "R-ESRGAN AnimeVideo", "R-ESRGAN 4x+ Anime6B", "4x-UltraSharp", "4x-AnimeSharp",
            "DAT_x2"} == set(names[9:])
    assert find_model_file("R-ESRGAN 4x+ Anime6B", f).parent == a1111 / "models" / "RealESRGAN"
    assert find_model_file("4x-AnimeSharp", f).suffix == ".safetensors"
    assert find_model_file("4x-UltraSharp.pth", f).name == "4x-UltraSharp.pth"


def test_missing_builtin_says_which_file_to_put_where(folders, tmp_path):
    f = Folders(folders.data_dir, tmp_path / "a1111")
    with pytest.raises(ModelError) as e:
        find_model_file("R-ESRGAN 4x+ Anime6B", f)
    msg = str(e.value)
    assert "RealESRGAN_x4plus_anime_6B.pth" in msg and "releases/download/v0.2.2.4" in msg
    assert str(folders.data_dir / "models" / "RealESRGAN") in msg and str(tmp_path / "a1111" / "models" /
                                                                         "RealESRGAN") in msg
    assert "never downloads" in msg
    with pytest.raises(ModelError, match="needs the file ESRGAN_4x.pth"):
        find_model_file("ESRGAN_4x", f)
    with pytest.raises(ModelError) as e:
        find_model_file("4x-NoSuch", f)
    assert "4x-NoSuch" in str(e.value) and str(folders.data_dir / "models" / "ESRGAN") in str(e.value)
    assert "upscale_models" in str(e.value)


# -- loading ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("make, ext, wrapper, arch, scale", [
    (lambda: esrgan_state_dict(layout="new"), ".pth", "params_ema", "ESRGAN", 4),
    (lambda: esrgan_state_dict(layout="old"), ".safetensors", None, "ESRGAN", 4),
    (lambda: esrgan_state_dict(layout="new", in_nc=12), ".pth", "params_ema", "ESRGAN", 2),  # R-ESRGAN 2x+
    (lambda: compact_state_dict(), ".pth", "params", "Compact", 4),
    (lambda: compact_state_dict(upscale=2, num_conv=3), ".safetensors", None, "Compact", 2),
])
def test_both_architectures_load_from_their_real_layouts(tmp_path, make, ext, wrapper, arch, scale):
    path = save(make(), tmp_path / f"m{ext}", wrapper=wrapper)
    m = load_upscaler(path, use_spandrel=False)
    assert (m.arch, m.scale, m.via) == (arch, scale, "builtin")
    out = m.module(torch.rand(1, 3, 13, 10))  # odd sizes: the x2 unshuffle kind pads and crops back
    assert out.shape == (1, 3, 13 * scale, 10 * scale)


def test_pickled_code_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return os.mkdir, (str(marker),)

    path = tmp_path / "evil.pth"
    torch.save({"params_ema": esrgan_state_dict(), "x": Payload()}, path)
    with pytest.raises(ModelError, match="refused upscaler evil.pth: it contains pickled code"):
        load_upscaler(path)
    assert not marker.exists()


def test_other_architectures_name_spandrel(tmp_path):
    sd = {"layers.0.residual_group.blocks.0.attn.relative_position_bias_table": torch.zeros(225, 6),
          "conv_first.weight": torch.zeros(180, 3, 3, 3)}
    path = save(sd, tmp_path / "SwinIR_4x.pth", wrapper="params")
    with pytest.raises(ModelError) as e:
        load_upscaler(path, use_spandrel=False)
    assert "transformer upscaler (SwinIR" in str(e.value) and "spandrel" in str(e.value)
    (tmp_path / "junk.pth").write_bytes(b"not a pickle")
    with pytest.raises(ModelError, match="cannot read upscaler junk.pth"):
        load_upscaler(tmp_path / "junk.pth")


# -- A1111's resize and tiling rules ------------------------------------------------------------------------------

@pytest.mark.parametrize("name, resample", [("Lanczos", LANCZOS), ("Nearest", NEAREST)])
def test_pil_upscalers_are_pils_resize(folders, name, resample):
    ups = PixelUpscalers(folders)
    img = _image(64, 48)
    assert np.array_equal(np.asarray(ups.resize(img, 128, 96, name)), np.asarray(img.resize((128, 96), resample)))
    # A target off the multiple of 8: do_upscale to int(w*scale), LANCZOS to the x8 floor, then to the target.
    want = img.resize((100, 75), resample).resize((96, 72), LANCZOS).resize((100, 75), LANCZOS)
    assert np.array_equal(np.asarray(ups.resize(img, 100, 75, name)), np.asarray(want))
    # "None" in the hires pass is a plain LANCZOS resize (images.resize_image).
    assert np.array_equal(np.asarray(ups.resize(img, 100, 75, "None")), np.asarray(img.resize((100, 75), LANCZOS)))


def test_tiled_and_untiled_agree_outside_the_overlap_blend(tmp_path):
    """Tiles see zero padding at their inner edges, so near a seam they differ from the whole-image run within
    the model's receptive field (Compact with 1 body conv: 3 input px). combine_grid blends each later tile in
    over [origin, origin + 8) and overwrites after that, so: outside those blend bands both agree up to float
    summation order (<= 1 level); inside, the later tile's wrong edge enters with mask weight < 12/32 (4x: 3 px
    -> 12 of the 32 px ramp), at most twice where a row and a column band cross: <= 2 * 12/32 * 255 = 191."""
    sd = compact_state_dict(num_conv=1, std=0.4, last_std=0.4)  # strong weights: seams are visible
    m = load_upscaler(save(sd, tmp_path / "c.pth"), use_spandrel=False)
    run = model_runner(m.module, m.device, m.dtype)
    img = _image(100, 90, seed=3)
    whole = np.asarray(upscale_with_model(run, img, tile_size=0, tile_overlap=0), dtype=int)
    tiled = np.asarray(upscale_with_model(run, img, tile_size=48, tile_overlap=8), dtype=int)
    assert whole.shape == tiled.shape == (360, 400, 3)
    diff = np.abs(whole - tiled).max(axis=2)
    # split_grid's tile origins for 100x90 with 48 px tiles: x 0, 26, 52; y 0, 21, 42 (input pixels).
    band = np.zeros_like(diff, dtype=bool)
    for o in (26, 52):
        band[:, o * 4:(o + 8) * 4] = True
    for o in (21, 42):
        band[o * 4:(o + 8) * 4, :] = True
    assert diff[~band].max() <= 1
    assert diff[band].max() <= 191
    assert diff[band].max() > 16  # the seams really are there: the check above is not vacuous


def test_model_upscale_follows_a1111_target_rule(with_models):
    ups = PixelUpscalers(with_models, settings=UpscaleSettings(tile=32, tile_overlap=8))
    img = _image(40, 36)
    assert ups.resize(img, 80, 72, "R-ESRGAN 4x+").size == (80, 72)  # 4x model, then LANCZOS down
    assert ups.upscale(img, 2, "4x-AnimeSharp").size == (80, 72)
    assert ups.upscale(_image(50, 30), 1.5, "Lanczos").size == (72, 40)  # Extras rounds down to x8
    with pytest.raises(InvalidParameter, match="tile overlap"):
        UpscaleSettings(tile=8, tile_overlap=8)


def test_free_after_drops_the_model(with_models):
    keep = PixelUpscalers(with_models, settings=UpscaleSettings(free_after=False))
    keep.resize(_image(), 128, 96, "4x-AnimeSharp")
    keep.finished()
    assert keep._model is not None
    free = PixelUpscalers(with_models, settings=UpscaleSettings(free_after=True))
    free.resize(_image(), 128, 96, "4x-AnimeSharp")
    free.finished()
    assert free._model is None


# -- the hires pass -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("upscaler", ["R-ESRGAN 4x+", "4x-AnimeSharp", "Lanczos"])
def test_hires_pass_with_pixel_upscaler_runs_end_to_end(with_models, upscaler):
    engine = Engine(with_models, device="cpu", precision="fp32")
    seen = []
    resize = engine.upscalers.resize

    def spy(img, w, h, name, should_stop=None):
        out = resize(img, w, h, name, should_stop)
        seen.append((img.size, out.size, name))
        return out

    engine.upscalers.resize = spy
    p = GenerationParams(**SMALL, hires_upscaler=upscaler, hires_resize_x=96)
    res = engine.generate(p, save=False)
    assert seen == [((64, 64), (96, 96), upscaler)]  # A1111's hires size from "Resize width to"
    assert res.images[0].size == (96, 96)
    assert f"Hires upscaler: {upscaler}" in res.infotexts[0]
    assert parse_infotext(res.infotexts[0]).params.hires_upscaler == upscaler
    assert engine.timings["upscale"] > 0


def test_hires_encode_is_a_seeded_posterior_sample(folders):
    engine = Engine(folders, device="cpu", precision="fp32")
    model = engine.load()
    imgs = [_image(64, 64, 1), _image(64, 64, 2)]
    a = engine._encode_images(model, imgs, [5, 6])
    b = engine._encode_images(model, imgs, [5, 6])
    c = engine._encode_images(model, imgs, [5, 7])
    assert torch.equal(a, b) and not torch.equal(a, c)
    x = torch.from_numpy(np.stack([np.asarray(i) for i in imgs]).astype(np.float32) / 255).permute(0, 3, 1, 2)
    with torch.no_grad():
        mean = model.vae.encode(x * 2 - 1).latent_dist.mean * model.vae.config.scaling_factor
    assert a.shape == mean.shape == (2, 4, 8, 8) and not torch.allclose(a, mean)


A1111_TEXT = """1girl, solo
Negative prompt: lowres
Steps: 2, Sampler: Euler, Schedule type: Automatic, CFG scale: 7, Seed: 9, Size: 64x64, Model: tiny, \
Denoising strength: 0.4, Hires upscale: 1.5, Hires steps: 2, Hires upscaler: R-ESRGAN 4x+ Anime6B"""


def test_infotext_with_anime6b_runs_when_the_file_is_there_and_says_what_to_get_when_not(folders, tmp_path):
    params = parse_infotext(A1111_TEXT).params
    assert params.hires_upscaler == "R-ESRGAN 4x+ Anime6B" and params.hires_size == (96, 96)
    a1111 = tmp_path / "a1111"
    f = Folders(folders.data_dir, a1111)
    with pytest.raises(ModelError) as e:
        Engine(f, device="cpu", precision="fp32").generate(params, save=False)
    assert "RealESRGAN_x4plus_anime_6B.pth" in str(e.value) and str(a1111 / "models" / "RealESRGAN") in str(e.value)
    save(esrgan_state_dict(nb=1), a1111 / "models" / "RealESRGAN" / "RealESRGAN_x4plus_anime_6B.pth")
    res = Engine(f, device="cpu", precision="fp32").generate(params, save=False)
    assert res.images[0].size == (96, 96)
    assert "Hires upscaler: R-ESRGAN 4x+ Anime6B" in res.infotexts[0]


# -- edges --------------------------------------------------------------------------------------------------------

def test_cli_upscale_keeps_the_parameters_and_prints_the_path(with_models, tmp_path, capsys):
    from creationmix.cli import main
    from creationmix.output import png_info
    src = tmp_path / "00007-77.png"
    _image(40, 36).save(src, pnginfo=png_info(A1111_TEXT))
    assert main(["upscale", str(src), "--upscaler", "R-ESRGAN 4x+", "--scale", "2", "--tile", "32",
                 "--data-dir", str(with_models.data_dir), "--device", "cpu"]) == 0
    out = capsys.readouterr().out.strip()
    [path] = out.splitlines()
    with Image.open(path) as im:
        assert im.size == (80, 72) and im.text["parameters"] == A1111_TEXT
        assert im.text["postprocessing"] == "Postprocess upscale by: 2, Postprocess upscaler: R-ESRGAN 4x+"
    assert path.startswith(str(with_models.outputs_dir / "extras-images")) and path.endswith("-00007-77.png")
    assert [p.name for p in (with_models.outputs_dir / "extras-images").iterdir()] == [Path(path).name]


def test_cli_upscale_errors_are_one_line(with_models, tmp_path, capsys):
    from creationmix.cli import main
    src = tmp_path / "a.png"
    _image().save(src)
    assert main(["upscale", str(src), "--upscaler", "R-ESRGAN 2x+", "--data-dir", str(with_models.data_dir)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "RealESRGAN_x2plus.pth" in err[0]
    assert main(["upscale", str(src), "--upscaler", "Latent", "--data-dir", str(with_models.data_dir)]) == 1
    assert "latent upscaler" in capsys.readouterr().err
    assert not (with_models.outputs_dir / "extras-images").exists()


def test_service_lists_upscalers_for_the_dropdown(with_models):
    from creationmix.service import Service
    names = Service(with_models, device="cpu").list_upscalers()
    assert names[:9] == [*LATENT_MODES, *PIL_UPSCALERS] and "R-ESRGAN 4x+" in names and "4x-UltraSharp" in names


def test_our_architectures_match_spandrel_where_it_imports(tmp_path):
    """Where spandrel can be imported (not on CI: torchvision), both loaders give the same pixels."""
    from creationmix.upscalers.models import spandrel_status
    if spandrel_status()[0] is None:
        pytest.skip(f"spandrel not importable here: {spandrel_status()[1]}")
    x = torch.rand(1, 3, 21, 18)
    for sd in (esrgan_state_dict(), esrgan_state_dict(layout="old", in_nc=12), compact_state_dict()):
        path = save(sd, tmp_path / "m.pth")
        ours, theirs = load_upscaler(path, use_spandrel=False), load_upscaler(path, use_spandrel=True)
        assert theirs.via == "spandrel" and ours.scale == theirs.scale
        with torch.no_grad():
            assert torch.equal(ours.module(x), theirs.module(x))
