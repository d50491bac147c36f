"""Variation seeds, seed resize and ENSD as A1111 makes them: ImageRNG, samplers, params, infotext and the engine."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from creationmix.engine import Engine
from creationmix.errors import InfotextError, InvalidParameter
from creationmix.infotext import format_infotext, parse_infotext
from creationmix.params import SAMPLERS, SAMPLERS_USING_ENSD, GenerationParams
from creationmix.sampling import SAMPLER_TABLE, ImageRNG, KDenoiser, sd15_alphas_cumprod
from creationmix.sampling.philox import PhiloxGenerator

SHAPE = (4, 6, 5)


def nv(seed, shape=SHAPE):
    return torch.from_numpy(PhiloxGenerator(seed).randn(shape))


# -- ImageRNG ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("source", ["GPU", "CPU", "NV"])
def test_strength_0_is_no_variation(source):
    plain = ImageRNG(SHAPE, [5, 6], source=source)
    varied = ImageRNG(SHAPE, [5, 6], source=source, subseeds=[900, 901], subseed_strength=0.0)
    assert torch.equal(plain.first(), varied.first()) and torch.equal(plain.next(), varied.next())


@pytest.mark.parametrize("source", ["GPU", "CPU", "NV"])
def test_strength_1_is_the_variation_seeds_noise_and_ancestral_noise_stays_the_seeds(source):
    varied = ImageRNG(SHAPE, [5], source=source, subseeds=[900], subseed_strength=1.0)
    of_subseed, of_seed = ImageRNG(SHAPE, [900], source=source), ImageRNG(SHAPE, [5], source=source)
    assert torch.equal(varied.first(), of_subseed.first())
    of_seed.first()
    assert torch.equal(varied.next(), of_seed.next())


def test_intermediate_strength_moves_from_seed_to_variation_seed():
    base, target = nv(5), nv(900)
    dists = []
    for strength in (0.1, 0.5, 0.9):
        x = ImageRNG(SHAPE, [5], source="NV", subseeds=[900], subseed_strength=strength).first()[0]
        dists.append(((x - base).norm().item(), (x - target).norm().item()))
    assert dists[0][0] < dists[1][0] < dists[2][0] and dists[0][1] > dists[1][1] > dists[2][1]
    # A1111's slerp keeps the noise at unit scale (a plain lerp at 0.5 would shrink it by ~0.7).
    half = ImageRNG(SHAPE, [5], source="NV", subseeds=[900], subseed_strength=0.5).first()[0]
    assert abs(half.std().item() / base.std().item() - 1) < 0.25


def test_variation_batch_equals_single_images_and_missing_subseeds_are_0():
    batch = ImageRNG(SHAPE, [5, 5], source="NV", subseeds=[900, 901], subseed_strength=0.4).first()
    for i, sub in enumerate([900, 901]):
        one = ImageRNG(SHAPE, [5], source="NV", subseeds=[sub], subseed_strength=0.4).first()
        assert torch.equal(batch[i], one[0])
    short = ImageRNG(SHAPE, [5, 5], source="NV", subseeds=[900], subseed_strength=0.4).first()
    zero = ImageRNG(SHAPE, [5], source="NV", subseeds=[0], subseed_strength=0.4).first()
    assert torch.equal(short[1], zero[0])


@pytest.mark.parametrize("source", ["GPU", "CPU", "NV"])
def test_seed_resize_from_the_same_size_is_the_identity(source):
    c, h, w = SHAPE
    plain = ImageRNG(SHAPE, [5], source=source)
    same = ImageRNG(SHAPE, [5], source=source, seed_resize_from_h=h * 8, seed_resize_from_w=w * 8)
    assert torch.equal(plain.first(), same.first()) and torch.equal(plain.next(), same.next())


def test_seed_resize_from_a_smaller_size_pastes_its_noise_centred():
    shape = (4, 10, 12)
    x = ImageRNG(shape, [5], source="NV", seed_resize_from_h=4 * 8, seed_resize_from_w=6 * 8).first()[0]
    own, small = nv(5, shape), nv(5, (4, 4, 6))
    assert torch.equal(x[:, 3:7, 3:9], small)
    mask = torch.ones(shape, dtype=torch.bool)
    mask[:, 3:7, 3:9] = False
    assert torch.equal(x[mask], own[mask])


def test_seed_resize_from_a_larger_size_crops_its_noise_centred():
    shape = (4, 6, 4)
    x = ImageRNG(shape, [5], source="NV", seed_resize_from_h=10 * 8, seed_resize_from_w=8 * 8).first()[0]
    assert torch.equal(x, nv(5, (4, 10, 8))[:, 2:8, 2:6])
    # An odd difference: A1111's floor division crops one column less and keeps the image's own noise there.
    odd = ImageRNG(shape, [5], source="NV", seed_resize_from_h=10 * 8, seed_resize_from_w=9 * 8).first()[0]
    assert torch.equal(odd[:, :, :3], nv(5, (4, 10, 9))[:, 2:8, 3:6])
    assert torch.equal(odd[:, :, 3], nv(5, shape)[:, :, 3])


def test_seed_resize_with_variation_slerps_at_the_old_size():
    shape = (4, 10, 12)
    kw = dict(source="NV", subseeds=[900], seed_resize_from_h=4 * 8, seed_resize_from_w=6 * 8)
    full = ImageRNG(shape, [5], subseed_strength=1.0, **kw).first()[0]
    assert torch.equal(full[:, 3:7, 3:9], nv(900, (4, 4, 6)))


# -- ENSD through the samplers ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def denoiser():
    return KDenoiser(lambda x, t, **c: 0.5 * x, sd15_alphas_cumprod())


def _sample(denoiser, sampler, ensd):
    spec = SAMPLER_TABLE[sampler]
    plan = spec.plan("Automatic", 6, denoiser)
    rng = ImageRNG((4, 4, 4), [77], source="NV", eta_noise_seed_delta=ensd)
    return plan.run(plan.inner_model, plan.start(rng.first()), rng=rng)


def test_ensd_changes_euler_a_and_not_dpmpp_2m_or_the_sde_samplers(denoiser):
    assert not torch.equal(_sample(denoiser, "Euler a", 0), _sample(denoiser, "Euler a", 31337))
    for name in ("DPM++ 2M", "DPM++ SDE", "DPM++ 2M SDE"):
        assert torch.equal(_sample(denoiser, name, 0), _sample(denoiser, name, 31337)), name


def test_samplers_marked_as_using_ensd_are_changed_by_it(denoiser):
    # A1111 writes ENSD for these (uses_ensd): each of them must really draw the re-seeded noise.
    for name in sorted(SAMPLERS_USING_ENSD):
        assert name in SAMPLERS
        assert not torch.equal(_sample(denoiser, name, 0), _sample(denoiser, name, 31337)), name


# -- params -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kw,message", [
    ({"subseed_strength": 1.5}, "variation seed strength"),
    ({"subseed_strength": -0.1}, "variation seed strength"),
    ({"subseed": -2}, "variation seed"),
    ({"eta_noise_seed_delta": -1}, "ENSD"),
    ({"eta_noise_seed_delta": 1.5}, "eta_noise_seed_delta must be a whole number"),
    ({"seed_resize_from_w": 32, "seed_resize_from_h": 64}, "seed resize from width"),
    ({"seed_resize_from_w": 512}, "both a width and a height"),
])
def test_bad_seed_extras_are_named(kw, message):
    with pytest.raises(InvalidParameter, match=message):
        GenerationParams(**kw)


def test_image_seeds_as_a1111_numbers_them():
    p = GenerationParams(seed=10, subseed=500)
    assert [p.image_seeds(i) for i in range(3)] == [(10, 500), (11, 500), (12, 500)]
    v = p.replace(subseed_strength=0.3)
    assert [v.image_seeds(i) for i in range(3)] == [(10, 500), (10, 501), (10, 502)]
    assert GenerationParams(seed_resize_from_w=-1, seed_resize_from_h=-1).uses_seed_resize is False


def test_random_variation_seed_is_drawn_only_when_used():
    assert GenerationParams(seed=3).with_seed_resolved().subseed == -1
    r = GenerationParams(seed=3, subseed_strength=0.2).with_seed_resolved()
    assert 0 <= r.subseed <= 4294967294 and r.seed == 3


# -- infotext ---------------------------------------------------------------------------------------------------
def test_infotext_writes_seed_extras_at_a1111_positions_and_reads_them_back():
    p = GenerationParams(prompt="x", steps=20, sampler="Euler a", seed=42, width=512, height=768, clip_skip=2,
                         rng="NV", subseed=7, subseed_strength=0.25, seed_resize_from_w=512,
                         seed_resize_from_h=512, eta_noise_seed_delta=31337)
    text = format_infotext(p, {"Model hash": "1065c5d2e0", "Model": "m"})
    assert text.endswith(
        "Steps: 20, Sampler: Euler a, Schedule type: Uniform, CFG scale: 7, Seed: 42, Size: 512x768, "
        "Model hash: 1065c5d2e0, Model: m, Variation seed: 7, Variation seed strength: 0.25, "
        "Seed resize from: 512x512, Clip skip: 2, ENSD: 31337, RNG: NV")
    back = parse_infotext(text).params
    assert back == p.replace(schedule="Uniform")
    assert format_infotext(back, {"Model hash": "1065c5d2e0", "Model": "m"}) == text


def test_infotext_leaves_out_what_was_not_applied():
    p = GenerationParams(sampler="DPM++ 2M", seed=1, subseed=7, subseed_strength=0.0, eta_noise_seed_delta=31337)
    text = format_infotext(p)
    for key in ("Variation seed", "Seed resize from", "ENSD", "RNG"):
        assert key not in text
    # A1111 1.10 writes ENSD only for samplers it changes; a hires pass with Euler a is changed by it too.
    hires = p.replace(enable_hires=True, hires_sampler="Euler a")
    assert "ENSD: 31337" in format_infotext(hires)


def test_infotext_reads_old_ensd_lines_and_bad_values_name_the_key():
    line = ("Steps: 22, Sampler: DPM++ 2M Karras, CFG scale: 9, Seed: 3518116526, Size: 1024x1472, "
            "Clip skip: 2, ENSD: 31337")
    p = parse_infotext(line).params
    assert p.eta_noise_seed_delta == 31337 and p.rng == "GPU" and ("ENSD", "31337") not in p.extra
    for bad, key in [("Seed resize from: 512", "Seed resize from"), ("Variation seed strength: 2", "Variation"),
                     ("ENSD: abc", "ENSD")]:
        with pytest.raises(InfotextError, match=key):
            parse_infotext(f"Steps: 20, Sampler: Euler, CFG scale: 7, {bad}")


# -- engine (tiny model) ----------------------------------------------------------------------------------------
SMALL = dict(prompt="1girl, solo", negative_prompt="worst quality", steps=3, sampler="DPM++ 2M", cfg_scale=7.0,
             width=64, height=64, enable_hires=True, hires_scale=1.5, hires_steps=1, denoising_strength=0.6)


@pytest.fixture
def engine(folders):
    return Engine(folders, device="cpu", precision="fp32")


def _close(a, b) -> bool:
    # Batched convolutions may differ from single ones in the last float bits.
    return np.abs(np.asarray(a, dtype=int) - np.asarray(b, dtype=int)).max() <= 2


def test_engine_batches_and_variation_seeds_per_image(engine):
    plain = engine.generate(GenerationParams(**SMALL, seed=900, batch_size=2, rng="NV"), save=False)
    single = engine.generate(GenerationParams(**SMALL, seed=901), save=False)  # default "GPU" = NV off CUDA
    assert _close(plain.images[1], single.images[0])
    varied = engine.generate(GenerationParams(**SMALL, seed=5, subseed=900, subseed_strength=1.0, batch_size=2,
                                              rng="NV"), save=False)
    assert varied.seeds == (5, 5)
    # DPM++ 2M draws no ancestral noise, so strength 1 is the variation seed's image (hires re-noise included).
    for i in range(2):
        assert _close(varied.images[i], plain.images[i])
    assert "Seed: 5," in varied.infotexts[1] and "Variation seed: 901, Variation seed strength: 1," in \
        varied.infotexts[1]


def test_engine_applies_ensd_to_euler_a(engine):
    p = GenerationParams(**{**SMALL, "enable_hires": False, "sampler": "Euler a"}, seed=3)
    a = engine.generate(p, save=False)
    b = engine.generate(p.replace(eta_noise_seed_delta=31337), save=False)
    assert not np.array_equal(np.asarray(a.images[0]), np.asarray(b.images[0]))
    assert "ENSD: 31337" in b.infotexts[0] and "ENSD" not in a.infotexts[0]


# -- X/Y/Z axes -------------------------------------------------------------------------------------------------
def test_xyz_variation_axes():
    import random

    from creationmix.xyz.axes import axis_kind, parse_axis
    from creationmix.xyz.plot import plan_xyz

    assert axis_kind("variation seed").label == "Var. seed" and axis_kind("subseed strength").label == "Var. strength"
    with pytest.raises(InvalidParameter, match="variation strength must be between 0 and 1"):
        parse_axis("Var. strength", "0, 1.5")
    base = GenerationParams(prompt="x", steps=2, sampler="Euler", seed=100, width=64, height=64)
    plan = plan_xyz(base, parse_axis("Var. strength", "0, 0.5, 1"), parse_axis("Var. seed", "-1, 7"),
                    rand=random.Random(0))
    fixed = plan.cells[0].params.subseed
    assert fixed != -1 and [c.params.subseed for c in plan.cells] == [fixed] * 3 + [7] * 3
    assert [c.params.subseed_strength for c in plan.cells[:3]] == [0.0, 0.5, 1.0]
    assert dict(plan.grid_keys())["Fixed Y Values"] == f"{fixed}, 7"
    # A grid-wide variation seed even when the base had none, so a strength axis varies towards one seed.
    only_strength = plan_xyz(base, parse_axis("Var. strength", "0.2, 0.4"), rand=random.Random(1))
    assert len({c.params.subseed for c in only_strength.cells}) == 1
    # Seeds under a variation strength are not batched: the engine would give batch image i the same seed.
    seeds = plan_xyz(base.replace(subseed=5, subseed_strength=0.3), parse_axis("Seed", "1-3"))
    assert [(r.params.seed, r.params.batch_size) for r in seeds.runs] == [(1, 1), (2, 1), (3, 1)]
    assert [r.params.batch_size for r in plan_xyz(base, parse_axis("Seed", "1-3")).runs] == [3]


# -- CLI and UI edges -------------------------------------------------------------------------------------------
def test_cli_flags_set_the_seed_extras(tmp_path, capsys):
    from creationmix.cli import build_parser, main, params_from_args

    args = build_parser().parse_args(["txt2img", "--subseed", "9", "--subseed-strength", "0.4", "--ensd", "31337",
                                      "--seed-resize-from-w", "512", "--seed-resize-from-h", "768", "--rng", "NV"])
    p = params_from_args(args)
    assert (p.subseed, p.subseed_strength, p.eta_noise_seed_delta) == (9, 0.4, 31337)
    assert (p.seed_resize_from_w, p.seed_resize_from_h, p.rng) == (512, 768, "NV")
    assert params_from_args(build_parser().parse_args(["txt2img", "--eta-noise-seed-delta", "5"])) \
        .eta_noise_seed_delta == 5
    assert main(["txt2img", "--data-dir", str(tmp_path), "--subseed-strength", "2"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "variation seed strength" in err[0]
    assert not list(tmp_path.rglob("*.png"))


def test_ui_fields_and_extra_toggle():
    import gradio as gr

    from creationmix.ui.fields import fields_from_params, params_from_fields
    from creationmix.ui.seed_extra import extras_in_use, on_toggle, on_value

    p = params_from_fields({"subseed": 12.0, "subseed_strength": "0.3", "seed_resize_from_w": 512,
                            "seed_resize_from_h": 512.0, "eta_noise_seed_delta": 31337})
    assert (p.subseed, p.subseed_strength, p.seed_resize_from_w, p.eta_noise_seed_delta) == (12, 0.3, 512, 31337)
    assert params_from_fields(fields_from_params(p)) == p
    with pytest.raises(InvalidParameter, match="variation seed must be a whole number"):
        params_from_fields({"subseed": 1.5})
    assert not extras_in_use(0, 0, 0) and extras_in_use(0.1, 0, 0) and extras_in_use(0, 512, 0)
    panel, strength, w, h = on_toggle(False)
    assert (strength, w, h) == (0, 0, 0) and panel["visible"] is False
    assert on_toggle(True)[0]["visible"] is True
    ticked, panel = on_value(0.5, 0, 0)
    assert ticked is True and panel["visible"] is True
    assert all(isinstance(u, type(gr.skip())) for u in on_value(0, 0, 0))


def test_preset_cards_keep_the_seed_extras(tmp_path):
    from creationmix.presets import load_preset, save_preset

    p = GenerationParams(prompt="x", seed=5, subseed=6, subseed_strength=0.3, seed_resize_from_w=512,
                         seed_resize_from_h=640, eta_noise_seed_delta=31337, rng="NV")
    assert load_preset(save_preset(tmp_path, p, "Var")).to_params() == p
