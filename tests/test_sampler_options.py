"""Sampler options and names through infotext, CLI, guidance (NGMS, Pad conds, CFG++), ToMe, and every sampler x
schedule end to end from an infotext on the tiny checkpoint (a representative subset; the full cross product is
marked slow)."""
from __future__ import annotations

import os

import pytest
import torch

from creationmix.cfg import CFGModel, CFGState
from creationmix.errors import InfotextError, InvalidParameter
from creationmix.infotext import format_infotext, parse_infotext
from creationmix.params import (DEFAULT_SCHEDULE, SAMPLER_ALIASES, SAMPLERS, SCHEDULES, TIMESTEP_SAMPLERS,
                                GenerationParams)
from creationmix.sampler_options import OPTION_KEYS, applied_options, sampler_takes

pytestmark = pytest.mark.filterwarnings("ignore:Should have t")

HEAD = "a cat\nNegative prompt: blurry\n"


def _line(**keys) -> str:
    base = {"Steps": "3", "Sampler": "Euler", "CFG scale": "7", "Seed": "1", "Size": "64x64"}
    base.update(keys)
    return HEAD + ", ".join(f"{k}: {v}" for k, v in base.items())


# -- infotext --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", SAMPLERS)
@pytest.mark.parametrize("schedule", SCHEDULES)
def test_every_sampler_and_schedule_round_trips(name, schedule):
    p, meta = parse_infotext(_line(Sampler=name, **{"Schedule type": schedule}))
    assert (p.sampler, p.schedule) == (name, schedule)
    back, _ = parse_infotext(format_infotext(p, meta))
    assert back.sampler == name and back.sampler_schedule == p.sampler_schedule


@pytest.mark.parametrize("name", SAMPLERS)
def test_aliases_and_hires_sampler_keys(name):
    for alias in SAMPLER_ALIASES[name]:
        assert parse_infotext(_line(Sampler=alias)).params.sampler == name
    p = parse_infotext(_line(**{"Hires upscale": "2", "Denoising strength": "0.5", "Hires sampler": name,
                                "Hires schedule type": "Beta"})).params
    text = format_infotext(p)
    back = parse_infotext(text).params
    assert (back.hires_sampler or back.sampler) == name
    if name in TIMESTEP_SAMPLERS:  # no schedule type for a pass on the model's timesteps
        assert "Hires schedule type" not in text
    else:
        assert back.hires_schedule == ("Beta" if DEFAULT_SCHEDULE.get(name) != "Beta" else None)
        assert "Hires schedule type: Beta" in text


def test_old_combined_names_from_real_recipes():
    for text, want in (("DPM++ 2S a Karras", ("DPM++ 2S a", "Karras")),
                       ("DPM++ 3M SDE Exponential", ("DPM++ 3M SDE", "Exponential")),
                       ("LMS Karras", ("LMS", "Karras")), ("DPM2 a Karras", ("DPM2 a", "Karras"))):
        p = parse_infotext(_line(Sampler=text)).params
        assert (p.sampler, p.schedule) == want
        assert f"Sampler: {want[0]}, Schedule type: {want[1]}" in format_infotext(p)


# (field, value, a sampler that takes it, schedule)
OPTION_CASES = [
    ("eta", 0.67, "Euler a", "Automatic"), ("eta_ddim", 0.5, "DDIM", "Automatic"),
    ("s_churn", 1.5, "Euler", "Automatic"), ("s_tmin", 0.2, "Heun", "Automatic"),
    ("s_tmax", 10.0, "DPM2", "Automatic"), ("s_noise", 1.003, "DPM++ SDE", "Automatic"),
    ("sigma_max", 12.0, "DPM++ 2M", "Karras"), ("sigma_min", 0.05, "Euler", "Exponential"),
    ("rho", 5.0, "DPM++ 2M", "Automatic"), ("beta_alpha", 0.5, "Euler", "Beta"), ("beta_beta", 0.7, "Euler", "Beta"),
    ("s_min_uncond", 2.0, "Euler", "Automatic"), ("pad_conds", True, "Euler", "Automatic"),
    ("downcast_alphas_cumprod", True, "Euler", "Automatic"), ("token_merging_ratio", 0.3, "Euler", "Automatic"),
]


@pytest.mark.parametrize("field,value,sampler,schedule", OPTION_CASES)
def test_option_key_round_trips_when_applied(field, value, sampler, schedule):
    key = OPTION_KEYS[field][0]
    p = parse_infotext(_line(Sampler=sampler, **{"Schedule type": schedule, key: str(value)})).params
    assert getattr(p, field) == value
    text = format_infotext(p)
    assert f"{key}: {value if not isinstance(value, float) or not value.is_integer() else int(value)}" in text
    assert getattr(parse_infotext(text).params, field) == value


def test_token_merging_ratio_hr_only_with_hires():
    p = GenerationParams(token_merging_ratio_hr=0.4)
    assert "Token merging ratio hr" not in format_infotext(p)
    assert "Token merging ratio hr: 0.4" in format_infotext(p.replace(enable_hires=True))


@pytest.mark.parametrize("field,value,sampler,schedule", [
    ("eta", 0.5, "Euler", "Automatic"),  # Euler takes no eta
    ("s_noise", 0.9, "Euler a", "Automatic"),  # A1111 gives Euler a no s_noise
    ("s_churn", 2.0, "DPM++ 2M", "Automatic"),
    ("eta_ddim", 0.3, "Euler a", "Automatic"),
    ("sigma_max", 12.0, "Euler", "Automatic"),  # Automatic = k-diffusion's own discretization
    ("rho", 5.0, "Euler", "Exponential"),  # only Karras/Polyexponential take rho
    ("rho", 7.0, "DPM++ 2M", "Karras"),  # Karras' own rho
    ("sigma_min", 0.1, "DDIM", "Karras"),  # timestep samplers have no schedule
    ("beta_alpha", 0.5, "Euler", "Karras"),
])
def test_option_key_not_written_when_not_applied(field, value, sampler, schedule):
    p = GenerationParams(sampler=sampler, schedule=schedule, **{field: value})
    assert field not in applied_options(p)
    assert OPTION_KEYS[field][0] not in format_infotext(p)


def test_beta_distribution_is_written_whenever_beta_runs():
    text = format_infotext(GenerationParams(sampler="Euler", schedule="Beta"))
    assert "Beta schedule alpha: 0.6, Beta schedule beta: 0.6" in text


def test_option_errors_name_the_key():
    with pytest.raises(InfotextError, match="Eta: 'x'"):
        parse_infotext(_line(Eta="x"))
    with pytest.raises(InfotextError, match="Pad conds"):
        parse_infotext(_line(**{"Pad conds": "maybe"}))
    with pytest.raises(InfotextError, match="Sigma churn.*must be in"):
        parse_infotext(_line(**{"Sigma churn": "500"}))
    with pytest.raises(InfotextError, match="Sampler.*valid samplers"):
        parse_infotext(_line(Sampler="Euler b"))


@pytest.mark.parametrize("version,downcast", [("v1.6.0", True), ("v1.7.0", True), ("v1.7.0-225-g1234567", False),
                                              ("v1.10.1", False), ("1.8.0-RC", False), ("CreationMix 0.1", False)])
def test_version_back_compat_switches_on_fp16_alphas(version, downcast):
    p = parse_infotext(_line(Version=version)).params
    assert p.downcast_alphas_cumprod is downcast
    explicit = parse_infotext(_line(Version="v1.6.0", **{"Downcast alphas_cumprod": "False"})).params
    assert explicit.downcast_alphas_cumprod is False


# -- CLI ------------------------------------------------------------------------------------------------------
def test_cli_flags_and_samplers_listing(capsys):
    from creationmix.cli import build_parser, main, params_from_args
    args = build_parser().parse_args(["txt2img", "--sampler", "DPM++ 2S a Karras", "--eta", "0.5", "--pad-conds",
                                      "true", "--hires-schedule", "Beta", "--ngms", "1.5"])
    p = params_from_args(args)
    assert (p.sampler, p.schedule, p.eta, p.pad_conds, p.hires_schedule, p.s_min_uncond) == \
        ("DPM++ 2S a", "Karras", 0.5, True, "Beta", 1.5)
    assert main(["samplers"]) == 0
    out = capsys.readouterr().out
    for name in SAMPLERS + SCHEDULES:
        assert name in out
    assert "k_dpmpp_2s_a" in out and "SGMUniform" in out
    assert main(["txt2img", "--pad-conds", "maybe"]) == 2
    assert "--pad-conds" in capsys.readouterr().err


def test_ui_fields_by_name():
    from creationmix.ui.fields import SAME_SCHEDULE, fields_from_params, params_from_fields
    p = params_from_fields({"eta": "0.4", "pad_conds": 1, "hires_schedule": SAME_SCHEDULE, "rho": 3})
    assert p.eta == 0.4 and p.pad_conds is True and p.hires_schedule is None and p.rho == 3.0
    values = fields_from_params(p.replace(hires_schedule="Karras", sampler="Euler"))
    assert values["hires_schedule"] == "Karras" and values["eta"] == 0.4
    with pytest.raises(InvalidParameter, match="eta"):
        params_from_fields({"eta": "lots"})


# -- guidance -------------------------------------------------------------------------------------------------
class _Cond:
    def __init__(self, c, u):
        self.c, self.u = c, u

    def at(self, step):
        return [(self.c, 1.0)], self.u


def _recording_denoiser(calls):
    def denoiser(x, sigma, cond):
        calls.append((x.shape[0], cond.shape[1]))
        return x * 0 + cond.mean(dim=(1, 2)).reshape(-1, 1, 1, 1)
    return denoiser


def test_ngms_skips_uncond_on_odd_calls_below_the_sigma():
    calls, state = [], CFGState()
    c, u = torch.ones(1, 77, 8), torch.zeros(1, 77, 8)
    m = CFGModel(_recording_denoiser(calls), _Cond(c, u), 7.0, 1, s_min_uncond=1.0, state=state)
    x = torch.zeros(1, 4, 2, 2)
    out0 = m(x, torch.tensor([0.5]))  # call 0: even, full CFG
    out1 = m(x, torch.tensor([0.5]))  # call 1: odd and sigma < 1: cond only, scale 1
    out2 = m(x, torch.tensor([5.0]))  # call 2
    out3 = m(x, torch.tensor([5.0]))  # call 3: odd but sigma >= 1: full CFG
    assert [n for n, _ in calls] == [2, 1, 2, 2]
    assert out0.mean().item() == pytest.approx(7.0) and out1.mean().item() == pytest.approx(1.0)
    assert out3.mean().item() == pytest.approx(7.0) and state.skipped_uncond
    p = GenerationParams(s_min_uncond=1.0)
    assert CFGState().applied(p).s_min_uncond == 0.0 and state.applied(p).s_min_uncond == 1.0


def test_pad_conds_pads_the_shorter_with_the_empty_prompt():
    calls, state = [], CFGState()
    c, u = torch.ones(1, 154, 8), torch.zeros(1, 77, 8)
    empty = torch.full((1, 77, 8), 3.0)
    m = CFGModel(_recording_denoiser(calls), _Cond(c, u), 2.0, 1, empty=lambda: empty, state=state)
    out = m(torch.zeros(1, 4, 2, 2), torch.tensor([1.0]))
    assert calls == [(2, 154)] and state.padded  # one batched call once the lengths match
    assert out.mean().item() == pytest.approx(1.5 + 2.0 * (1.0 - 1.5))  # uncond = mean of [0]*77 + [3]*77
    calls.clear()
    plain = CFGModel(_recording_denoiser(calls), _Cond(c, u), 2.0, 1)
    plain(torch.zeros(1, 4, 2, 2), torch.tensor([1.0]))
    assert calls == [(1, 154), (1, 77)]  # without Pad conds: two calls, A1111's default


def test_pad_conds_v0_repeats_or_truncates_the_uncond():
    calls, state = [], CFGState()
    c, u = torch.ones(1, 154, 8), torch.cat([torch.zeros(1, 76, 8), torch.full((1, 1, 8), 2.0)], dim=1)
    m = CFGModel(_recording_denoiser(calls), _Cond(c, u), 1.0, 1, pad_v0=True, state=state)
    out = m(torch.zeros(1, 4, 2, 2), torch.tensor([1.0]))
    assert calls == [(2, 154)] and state.padded_v0
    assert out.mean().item() == pytest.approx(1.0)  # cfg 1: the cond prediction
    assert m.last_noise_uncond.mean().item() == pytest.approx(78 * 2.0 / 154)  # last vector repeated 77 times
    calls.clear()
    m = CFGModel(_recording_denoiser(calls), _Cond(u, c), 1.0, 1, pad_v0=True)
    m(torch.zeros(1, 4, 2, 2), torch.tensor([1.0]))
    assert calls == [(2, 77)]  # a longer uncond is cut to the cond's length


def test_pad_conds_v0_back_compat_for_old_ddim():
    assert parse_infotext(_line(Sampler="DDIM", Version="v1.5.1")).params.pad_conds_v0 is True
    assert parse_infotext(_line(Sampler="Euler", Version="v1.5.1")).params.pad_conds_v0 is False
    assert parse_infotext(_line(Sampler="PLMS", Version="v1.6.0")).params.pad_conds_v0 is False


def test_cfg_keeps_last_uncond_for_cfgpp():
    m = CFGModel(_recording_denoiser([]), _Cond(torch.ones(1, 77, 8), torch.full((1, 77, 8), 0.25)), 1 / 12.5, 1)
    m(torch.zeros(1, 4, 2, 2), torch.tensor([1.0]))
    assert m.last_noise_uncond.mean().item() == pytest.approx(0.25)


# -- ToMe -----------------------------------------------------------------------------------------------------
def test_token_merging_patches_and_unpatches_the_unet(tiny_model):
    from creationmix.tome import apply_token_merging
    unet = tiny_model.unet
    x = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    c = torch.randn(1, 77, unet.config.cross_attention_dim, generator=torch.Generator().manual_seed(1))
    t = torch.tensor([500.0])
    with torch.no_grad():
        plain = unet(x, t, encoder_hidden_states=c).sample
        apply_token_merging(unet, 0.5)
        merged = unet(x, t, encoder_hidden_states=c).sample
        apply_token_merging(unet, 0.0)
        back = unet(x, t, encoder_hidden_states=c).sample
    assert not torch.allclose(plain, merged) and torch.equal(plain, back)


# -- end to end on the tiny checkpoint ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def engine(tmp_path_factory, tiny_ckpt_dir):
    import shutil

    from creationmix.engine import Engine
    from creationmix.paths import Folders
    data = tmp_path_factory.mktemp("samplers_e2e")
    shutil.copytree(tiny_ckpt_dir / "models", data / "models")
    return Engine(Folders(data), device="cpu", precision="fp32")


def _generate(engine, text):
    p = parse_infotext(text).params
    result = engine.generate(p, save=False)
    arr = torch.tensor(list(result.images[0].getdata()), dtype=torch.float32)
    return p, result, arr


REPRESENTATIVE = [(s, "Automatic") for s in SAMPLERS] + [("Euler", s) for s in SCHEDULES[1:]] + [
    ("DPM++ 2M SDE Heun", "Karras"), ("DPM2 a", "Polyexponential"), ("Restart", "Exponential")]
FULL = [(a, b) for a in SAMPLERS for b in SCHEDULES if (a, b) not in REPRESENTATIVE]


def _e2e(engine, sampler, schedule):
    text = _line(Sampler=sampler, **{"Schedule type": schedule})
    p, result, arr = _generate(engine, text)
    assert result.images[0].size == (64, 64) and not result.interrupted
    again = parse_infotext(result.infotexts[0]).params
    assert (again.sampler, again.sampler_schedule) == (sampler, p.sampler_schedule)
    _, result2, arr2 = _generate(engine, result.infotexts[0])
    assert torch.equal(arr, arr2)  # the written infotext reproduces the picture


@pytest.mark.parametrize("sampler,schedule", REPRESENTATIVE)
def test_sampler_schedule_end_to_end(engine, sampler, schedule):
    _e2e(engine, sampler, schedule)


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("CREATIONMIX_SLOW"), reason="full cross product: CREATIONMIX_SLOW=1")
@pytest.mark.parametrize("sampler,schedule", FULL)
def test_sampler_schedule_full_cross_product(engine, sampler, schedule):
    _e2e(engine, sampler, schedule)


def test_options_end_to_end_change_the_picture_and_are_written(engine):
    base = _line(Sampler="Euler a")
    _, r0, a0 = _generate(engine, base)
    _, r1, a1 = _generate(engine, base + ", Eta: 0.5, Sigma churn: 3")
    assert not torch.equal(a0, a1)
    assert "Eta: 0.5" in r1.infotexts[0] and "Sigma churn" not in r1.infotexts[0]
    _, r2, a2 = _generate(engine, _line(Sampler="Euler", **{"Sigma noise": "0.5"}))  # no churn: no effect
    _, r3, a3 = _generate(engine, _line(Sampler="Euler"))
    assert torch.equal(a2, a3)
    _, r4, a4 = _generate(engine, _line(Sampler="Euler", **{"Downcast alphas_cumprod": "True",
                                                             "Token merging ratio": "0.5", "NGMS": "2"}))
    assert not torch.equal(a3, a4)
    for key in ("Downcast alphas_cumprod: True", "Token merging ratio: 0.5", "NGMS: 2"):
        assert key in r4.infotexts[0]


def test_hires_with_schedule_type_end_to_end(engine):
    text = _line(Sampler="Euler a", **{"Denoising strength": "0.5", "Hires upscale": "1.5", "Hires steps": "2",
                                       "Hires sampler": "DPM++ 2M", "Hires schedule type": "Exponential",
                                       "Token merging ratio hr": "0.3"})
    p, result, _ = _generate(engine, text)
    assert result.images[0].size == (96, 96)
    info = result.infotexts[0]
    assert "Hires sampler: DPM++ 2M, Hires schedule type: Exponential" in info
    assert "Token merging ratio hr: 0.3" in info


def test_dpmpp_2m_sde_one_step_is_refused_before_sampling(engine):
    with pytest.raises(InvalidParameter, match="DPM\\+\\+ 2M SDE needs at least 2 steps"):
        engine.generate(parse_infotext(_line(Sampler="DPM++ 2M SDE", Steps="1")).params, save=False)


def test_pad_conds_written_only_when_it_padded(engine):
    long_prompt = "a cat, " + ", ".join(["masterpiece"] * 60)
    _, r, _ = _generate(engine, f"{long_prompt}\nNegative prompt: blurry\nSteps: 2, Sampler: Euler, CFG scale: 7, "
                                "Seed: 1, Size: 64x64, Pad conds: True")
    assert "Pad conds: True" in r.infotexts[0]
    _, r, _ = _generate(engine, _line(**{"Pad conds": "True"}))
    assert "Pad conds" not in r.infotexts[0]


def test_samplers_that_take_each_option_are_listed():
    assert "eta" in sampler_takes("DPM fast") and "s_noise" not in sampler_takes("Euler a")
