"""Sampling: A1111/k-diffusion numbers (sigmas, timesteps, img2img arithmetic), sampler maths against references
written out here, RNG per-seed reproducibility, and every sampler running end to end on analytic models."""
from __future__ import annotations

import math

import pytest
import torch

from creationmix.errors import Interrupted
from creationmix.params import SAMPLERS
from creationmix.sampling import (SAMPLER_TABLE, BrownianTreeNoiseSampler, ImageRNG, KDenoiser,
                                  SamplingInterrupted, ddim_timesteps, get_sigmas, get_sigmas_exponential,
                                  get_sigmas_karras, img2img_sigmas, img2img_steps,
                                  sd15_alphas_cumprod)
from creationmix.sampling.samplers import sample_dpmpp_2m, sample_euler_ancestral

# torchsde's float64 interval ends vs float32 sigmas (A1111 prints the same); silenced at import, pytest resets it.
pytestmark = pytest.mark.filterwarnings("ignore:Should have t")


@pytest.fixture(scope="module")
def ac():
    return sd15_alphas_cumprod()


def point_mass_unet(den_ref, c):
    """Exact eps for data concentrated at `c`, at fractional timesteps (through the log-sigma interpolation)."""

    def unet_fn(x_in, t, **cond):
        s = den_ref().t_to_sigma(t.float())[:, None, None, None]
        a = 1 / (1 + s ** 2)
        return (x_in - a.sqrt() * c) / (1 - a).sqrt()

    return unet_fn


def gaussian_unet(den_ref):
    """Exact eps for N(0, I) data: eps = sqrt(1 - a) * x_vp."""

    def unet_fn(x_in, t, **cond):
        s = den_ref().t_to_sigma(t.float())[:, None, None, None]
        a = 1 / (1 + s ** 2)
        return (1 - a).sqrt() * x_in

    return unet_fn


def make_denoiser(ac, unet_factory, *args):
    holder = {}
    den = KDenoiser(unet_factory(lambda: holder["d"], *args), ac)
    holder["d"] = den
    return den


@pytest.fixture(scope="module")
def den(ac):
    return KDenoiser(lambda x, t, **c: torch.zeros_like(x), ac)


# -- tables --------------------------------------------------------------------------------------------------
def test_alphas_and_sigma_range(ac, den):
    assert ac.dtype == torch.float32 and ac.shape == (1000,)
    assert den.sigma_min.item() == pytest.approx(0.0291675, abs=1e-6)
    assert den.sigma_max.item() == pytest.approx(14.614642, abs=1e-5)


def test_karras_30(den):
    s = get_sigmas("DPM++ 2M", "Karras", 30, den)
    assert len(s) == 31 and s.dtype == torch.float32
    assert s[0].item() == pytest.approx(14.6146, abs=1e-4)
    assert s[-2].item() == pytest.approx(0.0292, abs=1e-4)
    assert s[-1].item() == 0
    assert torch.all(s[:-1][1:] < s[:-1][:-1])
    assert torch.equal(s, get_sigmas("DPM++ 2M", "Automatic", 30, den))  # Automatic -> Karras for DPM++ 2M
    assert torch.equal(s, get_sigmas_karras(30, den.sigmas[0].item(), den.sigmas[-1].item()))


def test_exponential_and_uniform(den):
    e = get_sigmas("DPM++ 2M SDE", "Automatic", 10, den)
    assert torch.equal(e, get_sigmas_exponential(10, den.sigmas[0].item(), den.sigmas[-1].item()))
    assert e[0].item() == pytest.approx(14.614642, rel=1e-5) and e[-2].item() == pytest.approx(0.0291675, rel=1e-5)
    ratios = e[1:-1] / e[:-2]
    assert torch.allclose(ratios, ratios[0].expand_as(ratios), rtol=1e-4)
    u = get_sigmas("Euler", "Automatic", 10, den)
    assert torch.equal(u, den.get_sigmas(10)) and torch.equal(u, get_sigmas("Euler", "Uniform", 10, den))
    assert u[0].item() == pytest.approx(den.sigma_max.item(), rel=1e-6)
    assert u[-2].item() == pytest.approx(den.sigma_min.item(), rel=1e-6)


def test_dpm2_discards_penultimate_sigma(den):
    s = get_sigmas("DPM2", "Karras", 20, den)
    ref = get_sigmas_karras(21, den.sigmas[0].item(), den.sigmas[-1].item())
    assert len(s) == 21
    assert torch.equal(s, torch.cat([ref[:-2], ref[-1:]]))


def test_sigma_to_t_integer_and_fractional(den):
    t = den.sigma_to_t(den.sigmas)
    assert torch.equal(t, torch.arange(1000, dtype=torch.float32))
    mid = (den.log_sigmas[100] * 0.25 + den.log_sigmas[101] * 0.75).exp().reshape(1)
    assert den.sigma_to_t(mid).item() == pytest.approx(100.75, abs=1e-3)
    ts = torch.tensor([0.0, 3.5, 500.25, 999.0])
    assert torch.allclose(den.sigma_to_t(den.t_to_sigma(ts)), ts, atol=1e-3)


def test_denoiser_scales_input_and_output(ac):
    seen = {}

    def unet_fn(x_in, t, **cond):
        seen["x_in"], seen["t"], seen["cond"] = x_in, t, cond
        return torch.ones_like(x_in)

    d = KDenoiser(unet_fn, ac)
    x = torch.full((2, 4, 2, 2), 3.0)
    sigma = d.sigmas[[999, 500]]
    out = d(x, sigma, cond="c")
    assert torch.equal(seen["t"], torch.tensor([999.0, 500.0])) and seen["cond"] == {"cond": "c"}
    assert torch.allclose(seen["x_in"][1], x[1] / math.sqrt(sigma[1].item() ** 2 + 1))
    assert torch.allclose(out[0], x[0] - sigma[0])


# -- img2img / hires arithmetic ------------------------------------------------------------------------------
def test_img2img_steps():
    assert img2img_steps(20, 0.6) == (33, 19)
    assert img2img_steps(20, 1.0) == (20, 19)
    assert img2img_steps(20, 0.7) == (28, 19)


def test_img2img_sigmas(den):
    s = img2img_sigmas("DPM++ 2M", "Karras", 20, 0.6, den)
    full = get_sigmas("DPM++ 2M", "Karras", 33, den)
    assert len(s) == 21 and torch.equal(s, full[13:])
    whole = img2img_sigmas("Euler", "Automatic", 20, 1.0, den)
    assert torch.equal(whole, get_sigmas("Euler", "Automatic", 20, den))
    dpm2 = img2img_sigmas("DPM2", "Karras", 20, 0.6, den)
    assert len(dpm2) == 21 and dpm2[-1] == 0


def test_plan_img2img_keeps_full_schedule(den):
    plan = SAMPLER_TABLE["DPM++ SDE"].plan("Automatic", 20, den, denoise=0.6)
    assert plan.steps == 20 and len(plan.full) == 34 and torch.equal(plan.schedule, plan.full[13:])
    noise, init = torch.randn(1, 4, 2, 2), torch.randn(1, 4, 2, 2)
    assert torch.allclose(plan.start(noise, init), init + noise * plan.schedule[0])


def test_ddim_timesteps_and_plans(den):
    t = ddim_timesteps(20)
    assert t.tolist() == list(range(1, 1000, 50))
    assert len(ddim_timesteps(30)) == 31  # range(0, 1000, 33): A1111 runs 30 steps
    spec = SAMPLER_TABLE["DDIM"]
    plan = spec.plan("Automatic", 20, den)
    assert plan.steps == 19 and torch.equal(plan.schedule, t)
    noise = torch.randn(1, 4, 2, 2)
    assert torch.equal(plan.start(noise), noise)
    hires = spec.plan("Automatic", 20, den, denoise=0.6)
    full = ddim_timesteps(33)
    assert len(full) == 34 and torch.equal(hires.schedule, full[:19]) and hires.start_t == int(full[19]) == 571
    assert hires.steps == 18
    init = torch.randn(1, 4, 2, 2)
    a = den.alphas_cumprod[571]
    assert torch.allclose(hires.start(noise, init), init * a.sqrt() + noise * (1 - a).sqrt())


# -- sampler maths against references ------------------------------------------------------------------------
M = torch.tensor([[0.5, 0.1], [-0.2, 0.4]])


def linear_model(x, sigma):
    return x @ M.T * 0.9 + 0.05


def test_dpmpp_2m_matches_written_out_reference(den):
    sigmas = get_sigmas("DPM++ 2M", "Karras", 12, den)
    x0 = torch.randn(3, 5, 2, generator=torch.Generator().manual_seed(1)) * sigmas[0]
    out = sample_dpmpp_2m(linear_model, x0.clone(), sigmas)

    # DPM-Solver++(2M) in lambda = -log(sigma), written out with float64 coefficients.
    s = [float(v) for v in sigmas]
    x, old = x0.double(), None
    for i in range(len(s) - 1):
        den_i = (x.float() @ M.T * 0.9 + 0.05).double()
        if s[i + 1] == 0:
            x = den_i
        else:
            h = math.log(s[i]) - math.log(s[i + 1])
            if old is None:
                d = den_i
            else:
                r = (math.log(s[i - 1]) - math.log(s[i])) / h
                d = (1 + 1 / (2 * r)) * den_i - (1 / (2 * r)) * old
            x = (s[i + 1] / s[i]) * x - math.expm1(-h) * d
        old = den_i
    assert torch.allclose(out.double(), x, atol=2e-6, rtol=1e-6)


def test_euler_a_draws_noise_in_order(den):
    sigmas = get_sigmas("Euler a", "Automatic", 6, den)
    g = torch.Generator().manual_seed(3)
    noises = [torch.randn(2, 3, generator=g) for _ in range(10)]
    drawn = []

    def noise_fn():
        drawn.append(len(drawn))
        return noises[len(drawn) - 1]

    x0 = torch.randn(2, 3, generator=g) * sigmas[0]
    out = sample_euler_ancestral(lambda x, s: 0.3 * x, x0.clone(), sigmas, noise_fn=noise_fn)
    assert drawn == list(range(5))  # one per step except the last (sigma_next == 0)

    x = x0.clone()
    for i in range(6):
        sf, st = float(sigmas[i]), float(sigmas[i + 1])
        up = min(st, (st ** 2 * (sf ** 2 - st ** 2) / sf ** 2) ** 0.5)
        down = (st ** 2 - up ** 2) ** 0.5
        x = x + (x - 0.3 * x) / sf * (down - sf)
        if st > 0:
            x = x + noises[i] * up
    assert torch.allclose(out, x, atol=1e-5)


# -- table ---------------------------------------------------------------------------------------------------
def test_table_matches_params():
    assert tuple(SAMPLER_TABLE) == SAMPLERS
    assert SAMPLER_TABLE["DPM++ SDE"].total_steps(20) == 40
    assert SAMPLER_TABLE["Heun"].total_steps(20) == 40 and SAMPLER_TABLE["DPM2"].total_steps(20) == 40
    assert SAMPLER_TABLE["DPM++ 2M"].total_steps(20) == 20
    assert SAMPLER_TABLE["DPM2"].discard_next_to_last_sigma
    assert {n for n, s in SAMPLER_TABLE.items() if s.brownian} == {"DPM++ SDE", "DPM++ 2M SDE", "DPM++ 2M SDE Heun",
                                                                   "DPM++ 3M SDE"}


@pytest.mark.parametrize("name", SAMPLERS)
def test_every_sampler_converges_to_point_mass(ac, name):
    c = torch.tensor([0.7, -1.2, 0.3, 2.0]).reshape(1, 4, 1, 1)
    den = make_denoiser(ac, point_mass_unet, c)
    spec = SAMPLER_TABLE[name]
    plan = spec.plan("Automatic", 10, den)
    rng = ImageRNG((4, 3, 3), [11, 12])
    x = plan.start(rng.first())
    calls = []
    out = plan.run(plan.inner_model, x, rng=rng, callback=lambda i, total, x_i, d: calls.append((i, total)))
    assert out.shape == (2, 4, 3, 3) and torch.isfinite(out).all()
    if name in ("DPM fast", "DPM adaptive"):  # their own step counts: one callback per solver step
        assert [i for i, _ in calls] == list(range(len(calls))) and calls
    else:
        assert calls == [(i, plan.steps) for i in range(plan.steps)]
    # DDIM stops at t=1 and DPM fast/adaptive at the model's sigma_min: a little noise is left, as in A1111.
    tol = 0.2 if spec.timesteps or spec.sigma_range else 1e-3
    assert (out - c).abs().max().item() < tol


@pytest.mark.parametrize("name", SAMPLERS)
def test_every_sampler_gaussian_batch_equals_single(ac, name):
    """N(0, I) data: finite outputs, and image i of a batch equals the single image of seed + i."""
    den = make_denoiser(ac, gaussian_unet)
    spec = SAMPLER_TABLE[name]

    def generate(seeds, denoise=None, init=None):
        plan = spec.plan("Automatic", 8, den, denoise=denoise)
        rng = ImageRNG((4, 4, 4), seeds)
        x = plan.start(rng.first(), None if init is None else init[: len(seeds)])
        return plan.run(plan.inner_model, x, rng=rng)

    batch = generate([100, 101])
    single = generate([101])
    assert torch.isfinite(batch).all()
    if name != "DPM adaptive":  # its step-size control measures the error over the whole batch (k-diffusion too)
        assert torch.allclose(batch[1:], single, atol=1e-5)
    assert 0.3 < batch.std().item() < 2.0
    init = torch.randn(2, 4, 4, 4, generator=torch.Generator().manual_seed(0))
    hires = generate([100, 101], 0.6, init)
    assert torch.isfinite(hires).all() and hires.shape == init.shape


# -- interrupt -----------------------------------------------------------------------------------------------
def test_should_stop_raises_with_last_denoised(den):
    sigmas = get_sigmas("Euler", "Automatic", 10, den)
    seen = []

    def callback(i, total, x, denoised):
        seen.append(denoised)

    stop_after = iter([False, False, False, True])
    with pytest.raises(SamplingInterrupted) as info:
        SAMPLER_TABLE["Euler"].run(lambda x, s: x * 0.5, torch.ones(1, 2), sigmas, callback=callback,
                                   should_stop=lambda: next(stop_after))
    assert isinstance(info.value, Interrupted)
    assert info.value.step == 2 and len(seen) == 3 and torch.equal(info.value.latent, seen[-1])


def test_should_stop_own_exception_propagates(den):
    sigmas = get_sigmas("Heun", "Automatic", 4, den)

    class Skip(Exception):
        pass

    def stop():
        raise Skip()

    with pytest.raises(Skip):
        SAMPLER_TABLE["Heun"].run(lambda x, s: x, torch.ones(1, 2), sigmas, should_stop=stop)


# -- RNG -----------------------------------------------------------------------------------------------------
def test_image_rng_per_seed():
    batch = ImageRNG((4, 8, 8), [7, 8, 9], source="CPU")
    first, nxt = batch.first(), batch.next()
    for i, seed in enumerate([7, 8, 9]):
        one = ImageRNG((4, 8, 8), [seed], source="CPU")
        assert torch.equal(first[i], one.first()[0]) and torch.equal(nxt[i], one.next()[0])
    assert torch.equal(first[0], torch.randn((4, 8, 8), generator=torch.Generator().manual_seed(7)))
    assert first.shape == (3, 4, 8, 8) and not torch.equal(first, nxt)


def test_image_rng_next_before_first_is_first():
    a, b = ImageRNG((2, 2), [5]), ImageRNG((2, 2), [5])
    assert torch.equal(a.next(), b.first())


def test_image_rng_eta_noise_seed_delta():
    r = ImageRNG((3,), [10], source="CPU", eta_noise_seed_delta=31337)
    first, nxt = r.first(), r.next()
    assert torch.equal(first[0], torch.randn((3,), generator=torch.Generator().manual_seed(10)))
    assert torch.equal(nxt[0], torch.randn((3,), generator=torch.Generator().manual_seed(10 + 31337)))


def test_brownian_noise_sampler_is_per_seed_and_signed():
    x = torch.zeros(2, 3, 4)
    a = BrownianTreeNoiseSampler(x, torch.tensor(0.03), torch.tensor(14.6), [1, 2])
    b = BrownianTreeNoiseSampler(x[:1], torch.tensor(0.03), torch.tensor(14.6), [2])
    n_hi_lo = a(torch.tensor(10.0), torch.tensor(5.0))
    assert n_hi_lo.shape == (2, 3, 4)
    assert torch.allclose(n_hi_lo[1:], b(torch.tensor(10.0), torch.tensor(5.0)))
    assert torch.allclose(a(torch.tensor(5.0), torch.tensor(10.0)), -n_hi_lo)
    big = BrownianTreeNoiseSampler(torch.zeros(1, 4000), torch.tensor(0.03), torch.tensor(14.6), [3])
    assert 0.9 < big(torch.tensor(3.0), torch.tensor(2.0)).std().item() < 1.1
