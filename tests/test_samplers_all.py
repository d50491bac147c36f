"""Every A1111 1.10 sampler and schedule type against references written from the formulas
(tests/sampling_reference.py, float64), option semantics, hires tails, names and errors.

Tolerances: the implementation runs in float32 as A1111 does, the references in float64, so fixed-step samplers
agree to float32 rounding (REL_TOL); DPM adaptive picks its own steps from a float32 error estimate, so it is
compared with a looser stated tolerance. Run with -s to print the comparison table.
"""
from __future__ import annotations

import math

import pytest
import torch

import sampling_reference as ref
from creationmix.errors import InvalidParameter
from creationmix.params import (SAMPLER_ALIASES, SAMPLERS, SCHEDULES, TIMESTEP_SAMPLERS, GenerationParams,
                                split_sampler_name)
from creationmix.sampler_options import sampler_takes
from creationmix.sampling import SAMPLER_TABLE, KDenoiser, compute_schedule, sd15_alphas_cumprod
from creationmix.sampling.lcm import LCMDenoiser
from creationmix.sampling.schedulers import ScheduleOptions

pytestmark = pytest.mark.filterwarnings("ignore:Should have t")

ABS_TOL = 2e-5  # float32 vs float64 on values of order 1
ADAPTIVE_TOL = 1e-3
MU, VAR = 0.3, 0.8  # toy data N(MU, VAR): the exact denoiser is linear in x
SHAPE = (2, 4, 3, 3)
TABLE: list[tuple[str, str, float]] = []  # (sampler, schedule, max abs diff) for the printed comparison


@pytest.fixture(scope="module")
def den():
    return KDenoiser(lambda x, t, **c: torch.zeros_like(x), sd15_alphas_cumprod())


def toy_impl(x, sigma):
    s = sigma.reshape(-1, *([1] * (x.ndim - 1)))
    return MU + VAR / (VAR + s ** 2) * (x - MU)


def toy_ref(x, sigma):
    return MU + VAR / (VAR + sigma ** 2) * (x - MU)


class Noise:
    """The same ancestral/Brownian draws for the implementation (float32) and the reference (float64)."""

    def __init__(self, seed=0):
        self.g, self.seq, self.i = torch.Generator().manual_seed(seed), [], 0

    def draw(self):
        if self.i == len(self.seq):
            self.seq.append(torch.randn(SHAPE, generator=self.g))
        self.i += 1
        return self.seq[self.i - 1]

    def impl(self):
        self.i = 0
        return lambda: self.draw(), lambda s, sn: self.draw()

    def reference(self):
        self.i = 0
        return lambda: self.draw().double(), lambda s, sn: self.draw().double()


def run_impl(name, sigmas, x0, noise, params=None, sigma_range=None, n=None):
    spec = SAMPLER_TABLE[name]
    kwargs = dict(spec.options, **_kwargs(name, params))
    if n is not None:
        kwargs["n"] = n
    if sigma_range is not None:
        kwargs["sigma_range"] = sigma_range
    noise_fn, bnoise = noise.impl()
    return spec.fn(toy_impl, x0.clone(), sigmas, noise_fn=noise_fn, noise_sampler=bnoise if spec.brownian else None,
                   **kwargs)


def _kwargs(name, params):
    from creationmix.sampling import sampler_kwargs
    return sampler_kwargs(name, params)


def run_ref(name, sigmas, x0, noise, eta=1.0, sigma_range=None, n_fast=None):
    s = [float(v) for v in sigmas]
    x = x0.double()
    n, b = noise.reference()
    simple = {"Euler": ref.euler, "Heun": ref.heun, "DPM2": ref.dpm2, "LMS": ref.lms, "DPM++ 2M": ref.dpmpp_2m,
              "LCM": ref.lcm, "Restart": ref.restart}
    ancestral = {"Euler a": ref.euler_a, "DPM2 a": ref.dpm2_a, "DPM++ 2S a": ref.dpmpp_2s_a}
    brownian = {"DPM++ SDE": ref.dpmpp_sde, "DPM++ 2M SDE": ref.dpmpp_2m_sde, "DPM++ 3M SDE": ref.dpmpp_3m_sde}
    if name in simple:
        return simple[name](toy_ref, x, s, n)
    if name in ancestral:
        return ancestral[name](toy_ref, x, s, n, eta)
    if name in brownian:
        return brownian[name](toy_ref, x, s, b, eta)
    if name == "DPM++ 2M SDE Heun":
        return ref.dpmpp_2m_sde(toy_ref, x, s, b, eta, solver="heun")
    smin, smax = sigma_range if sigma_range is not None else (s[-2], s[0])
    if name == "DPM fast":
        return ref.dpm_fast(toy_ref, x, smin, smax, n_fast or len(s) - 1, n, eta)
    if name == "DPM adaptive":
        return ref.dpm_adaptive(toy_ref, x, smin, smax, n, eta)
    raise KeyError(name)


K_SAMPLERS = [n for n in SAMPLERS if n not in TIMESTEP_SAMPLERS and n != "LCM"]
SCHEDULE_TYPES = [s for s in SCHEDULES if s != "Automatic"]


# -- schedules --------------------------------------------------------------------------------------------------
def _ref_schedule(label, n, den, smin=None, smax=None, rho=None):
    table = den.sigmas.tolist()
    smin = den.sigmas[0].item() if smin is None else smin
    smax = den.sigmas[-1].item() if smax is None else smax
    return {
        "Uniform": lambda: ref.uniform(n, table),
        "Karras": lambda: ref.karras(n, smin, smax, rho or 7.0),
        "Exponential": lambda: ref.exponential(n, smin, smax),
        "Polyexponential": lambda: ref.polyexponential(n, smin, smax, rho or 1.0),
        "SGM Uniform": lambda: ref.sgm_uniform(n, table, smin, smax),
        "KL Optimal": lambda: ref.kl_optimal(n, smin, smax),
        "Align Your Steps": lambda: ref.align_your_steps(n),
        "Simple": lambda: ref.simple(n, table),
        "Normal": lambda: ref.normal(n, table, smin, smax),
        "DDIM": lambda: ref.ddim_schedule(n, table),
        "Beta": lambda: ref.beta(n, smin, smax),
    }[label]()


@pytest.mark.parametrize("label", SCHEDULE_TYPES)
@pytest.mark.parametrize("n", [3, 11, 20, 30])
def test_schedule_matches_reference(den, label, n):
    got = compute_schedule(label, n, den)
    want = torch.tensor(_ref_schedule(label, n, den), dtype=torch.float64)
    assert got.dtype == torch.float32 and got.shape == want.shape
    diff = (got.double() - want).abs().max().item()
    assert diff <= 1e-6 * max(1.0, want.abs().max().item()), (label, n, diff)
    if label in ("Simple", "DDIM"):  # straight picks from the model's table
        assert torch.equal(got[:-1], torch.tensor([float(v) for v in want[:-1]], dtype=torch.float32))


def test_schedule_details(den):
    assert len(compute_schedule("DDIM", 30, den)) == 32  # every 33rd table sigma: 31 levels, as in A1111
    kl = compute_schedule("KL Optimal", 10, den)
    assert len(kl) == 11 and kl[-1].item() == pytest.approx(den.sigmas[0].item(), rel=1e-5)  # no final 0
    assert compute_schedule("Align Your Steps", 11, den)[:-1].tolist() == pytest.approx(ref.AYS, abs=1e-6)


@pytest.mark.parametrize("label", ["Karras", "Polyexponential", "Exponential", "Beta", "Normal", "SGM Uniform",
                                   "KL Optimal"])
def test_schedule_options_apply(den, label):
    opts = ScheduleOptions(sigma_min=0.1, sigma_max=10.0, rho=3.0)
    got = compute_schedule(label, 12, den, opts)
    rho = 3.0 if label in ("Karras", "Polyexponential") else None
    want = torch.tensor(_ref_schedule(label, 12, den, 0.1, 10.0, rho), dtype=torch.float64)
    assert (got.double() - want).abs().max().item() < 1e-5
    assert not torch.equal(got, compute_schedule(label, 12, den))


@pytest.mark.parametrize("label", ["Uniform", "Simple", "DDIM", "Align Your Steps"])
def test_schedule_options_ignored_where_a1111_ignores_them(den, label):
    opts = ScheduleOptions(sigma_min=0.1, sigma_max=10.0, rho=3.0)
    assert torch.equal(compute_schedule(label, 12, den, opts), compute_schedule(label, 12, den))


# -- k-diffusion samplers ---------------------------------------------------------------------------------------
def _compare(name, schedule, den, steps=8, params=None, eta=1.0):
    plan = SAMPLER_TABLE[name].plan(schedule, steps, den, params=params)
    x0 = torch.randn(SHAPE, generator=torch.Generator().manual_seed(5)) * plan.schedule[0]
    noise = Noise(1)
    got = run_impl(name, plan.schedule, x0, noise, params, plan.sigma_range, plan.kwargs.get("n"))
    want = run_ref(name, plan.schedule, x0, noise, eta, plan.sigma_range, plan.kwargs.get("n"))
    assert torch.isfinite(got).all()
    return (got.double() - want).abs().max().item()


@pytest.mark.parametrize("schedule", ["Automatic", *SCHEDULE_TYPES])
@pytest.mark.parametrize("name", K_SAMPLERS)
def test_sampler_matches_reference(den, name, schedule):
    diff = _compare(name, schedule, den)
    TABLE.append((name, schedule, diff))
    assert diff < (ADAPTIVE_TOL if name == "DPM adaptive" else ABS_TOL), diff


def test_restart_with_restarts_matches_reference(den):
    diff = _compare("Restart", "Automatic", den, steps=24)  # >= 20 steps: the re-noising segments run
    TABLE.append(("Restart (24 steps)", "Karras", diff))
    assert diff < ABS_TOL


@pytest.mark.parametrize("name", ["Euler a", "DPM2 a", "DPM++ 2S a", "DPM++ SDE", "DPM++ 2M SDE", "DPM++ 3M SDE",
                                  "DPM fast"])
def test_eta_matches_reference(den, name):
    p = GenerationParams(eta=0.4)
    assert _compare(name, "Automatic", den, params=p, eta=0.4) < ABS_TOL


def test_sigma_churn_matches_reference(den):
    p = GenerationParams(s_churn=5.0, s_tmin=0.5, s_tmax=8.0, s_noise=1.01)
    plan = SAMPLER_TABLE["Euler"].plan("Automatic", 8, den, params=p)
    x0 = torch.randn(SHAPE, generator=torch.Generator().manual_seed(5)) * plan.schedule[0]
    noise = Noise(2)
    got = run_impl("Euler", plan.schedule, x0, noise, p)
    n, _ = noise.reference()
    want = ref.euler(toy_ref, x0.double(), [float(v) for v in plan.schedule], n, 5.0, 0.5, 8.0, 1.01)
    assert (got.double() - want).abs().max().item() < ABS_TOL
    assert noise.i == 8  # k-diffusion draws churn noise on every step, inside the window or not


def _run_option(name, den, params):
    spec = SAMPLER_TABLE[name]
    plan = spec.plan("Automatic", 6, den, params=params)
    if spec.timesteps:
        return None
    x0 = torch.randn(SHAPE, generator=torch.Generator().manual_seed(5)) * plan.schedule[0]
    return run_impl(name, plan.schedule, x0, Noise(3), params, plan.sigma_range, plan.kwargs.get("n"))


@pytest.mark.parametrize("name", K_SAMPLERS)
@pytest.mark.parametrize("field,value", [("eta", 0.5), ("s_noise", 0.9), ("s_churn", 3.0)])
def test_option_changes_result_exactly_when_a1111_passes_it(den, name, field, value):
    base = _run_option(name, den, GenerationParams())
    changed = _run_option(name, den, GenerationParams(**{field: value}))
    takes = field in sampler_takes(name)
    if field == "s_noise" and name in ("DPM adaptive",):
        takes = False
    # s_noise only scales noise that is drawn: for Euler/Heun/DPM2 only with churn on (A1111 passes it anyway)
    effective = takes and not (field == "s_noise" and name in ("Euler", "Heun", "DPM2"))
    assert (not torch.equal(base, changed)) == effective


def test_eta_zero_euler_a_is_euler(den):
    p = GenerationParams(eta=0.0)
    sig = SAMPLER_TABLE["Euler"].plan("Automatic", 8, den).schedule
    x0 = torch.randn(SHAPE, generator=torch.Generator().manual_seed(5)) * sig[0]
    assert torch.equal(run_impl("Euler a", sig, x0, Noise(4), p), run_impl("Euler", sig, x0, Noise(4)))


# -- timestep samplers, UniPC, LCM ----------------------------------------------------------------------------
def _eps_model(ac):
    """Exact eps for data N(MU, VAR) at integer or fractional timesteps (linear interpolation of the table)."""
    def eps(x, t, dtype=torch.float32):
        t = t.reshape(-1).double() if torch.is_tensor(t) else torch.tensor([float(t)], dtype=torch.float64)
        lo, hi = t.floor().long().clamp(0, 999), t.ceil().long().clamp(0, 999)
        a = ac.double()[lo] + (t - lo) * (ac.double()[hi] - ac.double()[lo])
        a = a.reshape(-1, *([1] * (x.ndim - 1)))
        # x = sqrt(a) x0 + sqrt(1 - a) e with x0 ~ N(MU, VAR): E[e | x]
        var = a * VAR + (1 - a)
        return ((1 - a).sqrt() * (x - a.sqrt() * MU) / var).to(x.dtype)
    return eps


@pytest.mark.parametrize("name,eta", [("DDIM", 0.0), ("DDIM", 0.5), ("PLMS", 0.0), ("DDIM CFG++", 0.0)])
def test_timestep_samplers_match_reference(den, name, eta):
    ac = den.alphas_cumprod
    eps = _eps_model(ac)
    spec = SAMPLER_TABLE[name]
    plan = spec.plan("Automatic", 10, den, params=GenerationParams(eta_ddim=eta))
    x0 = torch.randn(SHAPE, generator=torch.Generator().manual_seed(6))
    noise = Noise(7)
    uncond_scale = 0.9

    class Model:  # CFG++ steps along the unconditional eps the CFG model keeps
        last_noise_uncond = None

        def __call__(self, x, t):
            e = eps(x, t)
            self.last_noise_uncond = e * uncond_scale
            return e

    noise_fn, _ = noise.impl()
    got = spec.fn(Model(), x0.clone(), plan.schedule, alphas_cumprod=ac, noise_fn=noise_fn, **plan.kwargs)
    n, _ = noise.reference()
    ts = plan.schedule.tolist()
    e64 = _eps_model(ac)
    if name == "PLMS":
        want = ref.plms(lambda x, t: e64(x, t, torch.float64), x0.double(), ts, ac)
    else:
        last = {}

        def E(x, t):
            last["e"] = e64(x, t, torch.float64)
            return last["e"]
        uncond = (lambda: last["e"] * uncond_scale) if name == "DDIM CFG++" else None
        want = ref.ddim(E, x0.double(), ts, ac, n, eta, uncond)
    diff = (got.double() - want).abs().max().item()
    TABLE.append((f"{name}" + (f" (eta {eta})" if eta else ""), "(timesteps)", diff))
    assert diff < ABS_TOL


def test_unipc_solves_the_gaussian_ode(den):
    """For data N(0, I) the probability-flow ODE keeps x fixed: an exact reference. On A1111's time-uniform grid
    (large log-SNR jumps at both ends) UniPC's error shrinks with the steps and stays well below DDIM's (which
    contracts x by cos(step angle) per step); stated tolerances 0.25 at 5 steps, 0.04 at 20."""
    ac = den.alphas_cumprod

    def eps(x, t):
        return _eps_gauss(ac, x, t)

    spec = SAMPLER_TABLE["UniPC"]
    x0 = torch.randn(SHAPE, generator=torch.Generator().manual_seed(8))
    calls = []
    for steps, tol in ((5, 0.25), (20, 0.04)):
        plan = spec.plan("Automatic", steps, den)
        out = spec.fn(eps, x0.clone(), plan.schedule, alphas_cumprod=ac, callback=lambda *a: calls.append(a[:2]))
        diff = (out - x0).abs().max().item()
        ddim = SAMPLER_TABLE["DDIM"]
        dplan = ddim.plan("Automatic", steps, den)
        ddim_diff = (ddim.fn(eps, x0.clone(), dplan.schedule, alphas_cumprod=ac) - x0).abs().max().item()
        TABLE.append((f"UniPC ({steps} steps) vs exact ODE", "(timesteps)", diff))
        assert diff < tol and diff < ddim_diff / 2
    assert calls[-1] == (19, 20)  # one callback per UniPC step, A1111 runs len(timesteps) steps
    with pytest.raises(InvalidParameter, match="UniPC needs at least 3 steps"):
        spec.plan("Automatic", 2, den)


def _eps_gauss(ac, x, t):
    t = t.reshape(-1).double()
    lo, hi = t.floor().long().clamp(0, 999), t.ceil().long().clamp(0, 999)
    a = ac.double()[lo] + (t - lo) * (ac.double()[hi] - ac.double()[lo])
    return ((1 - a).sqrt().reshape(-1, *([1] * (x.ndim - 1))) * x).float()


def test_lcm_denoiser_follows_the_lcm_formulas(den):
    ac = den.alphas_cumprod
    seen = {}

    def unet(x, t, **c):
        seen["t"] = t
        return torch.full_like(x, 0.5)

    lcm = LCMDenoiser(KDenoiser(unet, ac))
    idx = [999 - 20 * k for k in range(50)][::-1]
    want = ((1 - ac.double()[idx]) / ac.double()[idx]).sqrt()
    assert (lcm.sigmas.double() - want).abs().max().item() < 1e-5
    sigma = lcm.sigmas[[10, 40]]
    x = torch.ones(2, 4, 2, 2)
    out = lcm(x, sigma)
    assert seen["t"].tolist() == [10 * 20 + 19, 40 * 20 + 19]  # integer timesteps
    for i, (s, t) in enumerate(zip(sigma.double().tolist(), seen["t"].tolist())):
        x0 = 1 - 0.5 * s
        st = t * 10.0
        c_skip, c_out = 0.25 / (st ** 2 + 0.25), st / math.sqrt(st ** 2 + 0.25)
        assert out[i].double().mean().item() == pytest.approx(c_out * x0 + c_skip * 1, abs=1e-5)
    # its Automatic schedule: evenly spaced LCM timesteps 999 .. 19
    s = SAMPLER_TABLE["LCM"].plan("Automatic", 4, den).schedule
    assert s[0].item() == pytest.approx(lcm.sigmas[-1].item()) and s[-1] == 0 and len(s) == 5
    noise = Noise(9)
    got = run_impl("LCM", s, torch.zeros(SHAPE), noise)
    assert (got.double() - run_ref("LCM", s, torch.zeros(SHAPE), noise)).abs().max().item() < ABS_TOL


# -- hires tails, step errors --------------------------------------------------------------------------------
@pytest.mark.parametrize("schedule", SCHEDULE_TYPES)
def test_hires_tail_is_a1111_setup_img2img_steps(den, schedule):
    for steps, denoise in ((20, 0.6), (10, 0.35), (8, 1.0)):
        total = int(steps / min(denoise, 0.999))  # A1111 setup_img2img_steps with an explicit step count
        t_enc = steps - 1
        plan = SAMPLER_TABLE["Euler"].plan(schedule, steps, den, denoise=denoise)
        full = compute_schedule(schedule, total, den)
        assert torch.equal(plan.full, full) and torch.equal(plan.schedule, full[total - t_enc - 1:])


def test_dpm_fast_hires_range_is_the_tail(den):
    plan = SAMPLER_TABLE["DPM fast"].plan("Automatic", 10, den, denoise=0.5)
    assert plan.sigma_range is None  # A1111: sigma_sched[-2] .. sigma_sched[0]
    txt = SAMPLER_TABLE["DPM fast"].plan("Automatic", 10, den)
    assert txt.sigma_range == (den.sigmas[0].item(), den.sigmas[-1].item())
    ddim = SAMPLER_TABLE["DPM fast"].plan("DDIM", 30, den)  # 31 levels, but A1111 passes n = steps
    assert len(ddim.schedule) == 32 and ddim.kwargs["n"] == 30


@pytest.mark.parametrize("name", ["DPM++ 2M SDE", "DPM++ 2M SDE Heun", "DPM++ 3M SDE"])
def test_sde_multistep_at_one_step_is_a_clear_error(den, name):
    with pytest.raises(InvalidParameter, match="at least 2 steps"):
        SAMPLER_TABLE[name].plan("Automatic", 1, den)
    with pytest.raises(InvalidParameter, match="at least 2 steps"):
        SAMPLER_TABLE[name].plan("Automatic", 1, den, denoise=0.5)
    SAMPLER_TABLE[name].plan("Automatic", 2, den)


# -- names ----------------------------------------------------------------------------------------------------
def test_names_aliases_and_old_combined_names():
    for name, aliases in SAMPLER_ALIASES.items():
        assert split_sampler_name(name) == (name, "Automatic")
        for alias in aliases:
            assert split_sampler_name(alias) == (name, "Automatic")
    assert split_sampler_name("DPM++ 2S a Karras") == ("DPM++ 2S a", "Karras")
    assert split_sampler_name("DPM++ 3M SDE Exponential") == ("DPM++ 3M SDE", "Exponential")
    assert split_sampler_name("LMS Karras") == ("LMS", "Karras")
    assert split_sampler_name("DPM2 a Karras") == ("DPM2 a", "Karras")
    assert split_sampler_name("DPM++ 2M SDE Heun Karras") == ("DPM++ 2M SDE Heun", "Karras")
    assert split_sampler_name("k_dpmpp_2m_ka") == ("DPM++ 2M", "Karras")
    assert split_sampler_name("Euler", "sgm_uniform") == ("Euler", "SGM Uniform")
    assert split_sampler_name("Euler", "SGMUniform") == ("Euler", "SGM Uniform")


def test_unknown_names_list_the_valid_ones():
    with pytest.raises(InvalidParameter) as e:
        GenerationParams(sampler="Euler b")
    assert "Euler a" in str(e.value) and "UniPC" in str(e.value) and "Karras" in str(e.value)
    with pytest.raises(InvalidParameter) as e:
        GenerationParams(schedule="Cosine")
    assert "Align Your Steps" in str(e.value)
    with pytest.raises(InvalidParameter, match="hires schedule type"):
        GenerationParams(hires_schedule="Cosine")
    with pytest.raises(InvalidParameter, match="eta must be in"):
        GenerationParams(eta=2.0)


def test_print_comparison_table(capsys):
    """Prints the sampler x schedule table collected above (pytest -s shows it)."""
    rows = sorted(TABLE, key=lambda r: (r[0], r[1]))
    with capsys.disabled():
        print("\nsampler | schedule | max abs diff vs reference")
        for name, schedule, diff in rows:
            print(f"{name} | {schedule} | {diff:.2e}")
    assert all(d < ADAPTIVE_TOL for n, _, d in rows if not n.startswith("UniPC"))
