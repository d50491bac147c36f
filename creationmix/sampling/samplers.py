"""k-diffusion's samplers (as pinned by A1111) and A1111's DDIM, behind one table keyed by params.SAMPLERS.

Each k-diffusion sampler is `fn(model, x, sigmas, *, noise_fn, noise_sampler=None, callback=None,
should_stop=None)`: `model(x, sigma) -> denoised` with sigma of shape (batch,), `noise_fn()` the next ancestral
noise (A1111's ImageRNG.next, which it substitutes for torch.randn_like), `noise_sampler(sigma, sigma_next)` the
Brownian noise of the SDE samplers. `callback(i, total, x, denoised)` runs once per step where k-diffusion calls
its callback. `should_stop()` is asked before every model call; when it returns True the sampler raises
SamplingInterrupted carrying the last denoised latent (what A1111 decodes for an interrupted image). A
`should_stop` that raises its own exception simply propagates.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

import torch

from ..errors import Interrupted, InvalidParameter
from ..params import SAMPLERS, resolve_schedule
from .rng import CPU, BrownianTreeNoiseSampler, ImageRNG
from .sigmas import KDenoiser, TimestepsDenoiser, ddim_timesteps, img2img_steps, schedule_sigmas

Callback = Optional[Callable[[int, int, torch.Tensor, torch.Tensor], None]]
ShouldStop = Optional[Callable[[], bool]]


class SamplingInterrupted(Interrupted):
    """should_stop() said stop. `latent` is the last denoised prediction (the start latent before any step)."""

    def __init__(self, latent: torch.Tensor, step: int):
        super().__init__(f"sampling interrupted at step {step}")
        self.latent = latent
        self.step = step


class _Steps:
    """Callback, stop checks and the latent to hand back on a stop, shared by all samplers."""

    def __init__(self, x: torch.Tensor, total: int, callback: Callback, should_stop: ShouldStop):
        self.last, self.total, self.i = x, total, 0
        self.callback, self.should_stop = callback, should_stop

    def model(self, model, x, sigma):
        if self.should_stop is not None and self.should_stop():
            raise SamplingInterrupted(self.last, self.i)
        return model(x, sigma)

    def report(self, i: int, x: torch.Tensor, denoised: torch.Tensor) -> None:
        self.i, self.last = i, denoised
        if self.callback is not None:
            self.callback(i, self.total, x, denoised)


def _append_dims(x: torch.Tensor, ndim: int) -> torch.Tensor:
    return x[(...,) + (None,) * (ndim - x.ndim)]


def to_d(x, sigma, denoised):
    return (x - denoised) / _append_dims(sigma, x.ndim)


def get_ancestral_step(sigma_from, sigma_to, eta=1.0):
    if not eta:
        return sigma_to, 0.0
    sigma_up = min(sigma_to, eta * (sigma_to ** 2 * (sigma_from ** 2 - sigma_to ** 2) / sigma_from ** 2) ** 0.5)
    sigma_down = (sigma_to ** 2 - sigma_up ** 2) ** 0.5
    return sigma_down, sigma_up


def _t_fn(sigma):
    return sigma.log().neg()


def _sigma_fn(t):
    return t.neg().exp()


# With A1111's defaults (s_churn = 0) Euler, Heun and DPM2 add no churn noise: sigma_hat == sigma.
@torch.no_grad()
def sample_euler(model, x, sigmas, *, noise_fn=None, noise_sampler=None, callback=None, should_stop=None):
    run = _Steps(x, len(sigmas) - 1, callback, should_stop)
    s_in = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        sigma_hat = sigmas[i] * (0.0 + 1)
        denoised = run.model(model, x, sigma_hat * s_in)
        d = to_d(x, sigma_hat, denoised)
        run.report(i, x, denoised)
        dt = sigmas[i + 1] - sigma_hat
        x = x + d * dt
    return x


@torch.no_grad()
def sample_euler_ancestral(model, x, sigmas, *, noise_fn=None, noise_sampler=None, callback=None,
                           should_stop=None, eta=1.0, s_noise=1.0):
    noise_sampler = _default_noise_sampler(noise_fn) if noise_sampler is None else noise_sampler
    run = _Steps(x, len(sigmas) - 1, callback, should_stop)
    s_in = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        denoised = run.model(model, x, sigmas[i] * s_in)
        sigma_down, sigma_up = get_ancestral_step(sigmas[i], sigmas[i + 1], eta=eta)
        run.report(i, x, denoised)
        d = to_d(x, sigmas[i], denoised)
        dt = sigma_down - sigmas[i]
        x = x + d * dt
        if sigmas[i + 1] > 0:
            x = x + noise_sampler(sigmas[i], sigmas[i + 1]) * s_noise * sigma_up
    return x


@torch.no_grad()
def sample_heun(model, x, sigmas, *, noise_fn=None, noise_sampler=None, callback=None, should_stop=None):
    run = _Steps(x, len(sigmas) - 1, callback, should_stop)
    s_in = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        sigma_hat = sigmas[i] * (0.0 + 1)
        denoised = run.model(model, x, sigma_hat * s_in)
        d = to_d(x, sigma_hat, denoised)
        run.report(i, x, denoised)
        dt = sigmas[i + 1] - sigma_hat
        if sigmas[i + 1] == 0:
            x = x + d * dt
        else:
            x_2 = x + d * dt
            denoised_2 = run.model(model, x_2, sigmas[i + 1] * s_in)
            d_2 = to_d(x_2, sigmas[i + 1], denoised_2)
            d_prime = (d + d_2) / 2
            x = x + d_prime * dt
    return x


@torch.no_grad()
def sample_dpm_2(model, x, sigmas, *, noise_fn=None, noise_sampler=None, callback=None, should_stop=None):
    run = _Steps(x, len(sigmas) - 1, callback, should_stop)
    s_in = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        sigma_hat = sigmas[i] * (0.0 + 1)
        denoised = run.model(model, x, sigma_hat * s_in)
        d = to_d(x, sigma_hat, denoised)
        run.report(i, x, denoised)
        if sigmas[i + 1] == 0:
            dt = sigmas[i + 1] - sigma_hat
            x = x + d * dt
        else:
            sigma_mid = sigma_hat.log().lerp(sigmas[i + 1].log(), 0.5).exp()
            dt_1 = sigma_mid - sigma_hat
            dt_2 = sigmas[i + 1] - sigma_hat
            x_2 = x + d * dt_1
            denoised_2 = run.model(model, x_2, sigma_mid * s_in)
            d_2 = to_d(x_2, sigma_mid, denoised_2)
            x = x + d_2 * dt_2
    return x


@torch.no_grad()
def sample_dpmpp_2m(model, x, sigmas, *, noise_fn=None, noise_sampler=None, callback=None, should_stop=None):
    run = _Steps(x, len(sigmas) - 1, callback, should_stop)
    s_in = x.new_ones([x.shape[0]])
    old_denoised = None
    for i in range(len(sigmas) - 1):
        denoised = run.model(model, x, sigmas[i] * s_in)
        run.report(i, x, denoised)
        t, t_next = _t_fn(sigmas[i]), _t_fn(sigmas[i + 1])
        h = t_next - t
        if old_denoised is None or sigmas[i + 1] == 0:
            x = (_sigma_fn(t_next) / _sigma_fn(t)) * x - (-h).expm1() * denoised
        else:
            h_last = t - _t_fn(sigmas[i - 1])
            r = h_last / h
            denoised_d = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * old_denoised
            x = (_sigma_fn(t_next) / _sigma_fn(t)) * x - (-h).expm1() * denoised_d
        old_denoised = denoised
    return x


def _need_brownian(noise_sampler, name):
    if noise_sampler is None:
        raise ValueError(f"{name} needs a Brownian noise_sampler (ImageRNG.brownian); A1111 seeds it per image")
    return noise_sampler


@torch.no_grad()
def sample_dpmpp_sde(model, x, sigmas, *, noise_fn=None, noise_sampler=None, callback=None, should_stop=None,
                     eta=1.0, s_noise=1.0, r=1 / 2):
    noise_sampler = _need_brownian(noise_sampler, "DPM++ SDE")
    run = _Steps(x, len(sigmas) - 1, callback, should_stop)
    s_in = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        denoised = run.model(model, x, sigmas[i] * s_in)
        run.report(i, x, denoised)
        if sigmas[i + 1] == 0:
            d = to_d(x, sigmas[i], denoised)
            dt = sigmas[i + 1] - sigmas[i]
            x = x + d * dt
        else:
            t, t_next = _t_fn(sigmas[i]), _t_fn(sigmas[i + 1])
            h = t_next - t
            s = t + h * r
            fac = 1 / (2 * r)

            sd, su = get_ancestral_step(_sigma_fn(t), _sigma_fn(s), eta)
            s_ = _t_fn(sd)
            x_2 = (_sigma_fn(s_) / _sigma_fn(t)) * x - (t - s_).expm1() * denoised
            x_2 = x_2 + noise_sampler(_sigma_fn(t), _sigma_fn(s)) * s_noise * su
            denoised_2 = run.model(model, x_2, _sigma_fn(s) * s_in)

            sd, su = get_ancestral_step(_sigma_fn(t), _sigma_fn(t_next), eta)
            t_next_ = _t_fn(sd)
            denoised_d = (1 - fac) * denoised + fac * denoised_2
            x = (_sigma_fn(t_next_) / _sigma_fn(t)) * x - (t - t_next_).expm1() * denoised_d
            x = x + noise_sampler(_sigma_fn(t), _sigma_fn(t_next)) * s_noise * su
    return x


@torch.no_grad()
def sample_dpmpp_2m_sde(model, x, sigmas, *, noise_fn=None, noise_sampler=None, callback=None,
                        should_stop=None, eta=1.0, s_noise=1.0, solver_type="midpoint"):
    if solver_type not in {"heun", "midpoint"}:
        raise ValueError("solver_type must be 'heun' or 'midpoint'")
    noise_sampler = _need_brownian(noise_sampler, "DPM++ 2M SDE")
    run = _Steps(x, len(sigmas) - 1, callback, should_stop)
    s_in = x.new_ones([x.shape[0]])
    old_denoised = None
    h_last = None
    h = None
    for i in range(len(sigmas) - 1):
        denoised = run.model(model, x, sigmas[i] * s_in)
        run.report(i, x, denoised)
        if sigmas[i + 1] == 0:
            x = denoised
        else:
            t, s = -sigmas[i].log(), -sigmas[i + 1].log()
            h = s - t
            eta_h = eta * h
            x = sigmas[i + 1] / sigmas[i] * (-eta_h).exp() * x + (-h - eta_h).expm1().neg() * denoised
            if old_denoised is not None:
                r = h_last / h
                if solver_type == "heun":
                    x = x + ((-h - eta_h).expm1().neg() / (-h - eta_h) + 1) * (1 / r) * (denoised - old_denoised)
                else:
                    x = x + 0.5 * (-h - eta_h).expm1().neg() * (1 / r) * (denoised - old_denoised)
            if eta:
                x = x + noise_sampler(sigmas[i], sigmas[i + 1]) * sigmas[i + 1] \
                    * (-2 * eta_h).expm1().neg().sqrt() * s_noise
        old_denoised = denoised
        h_last = h
    return x


@torch.no_grad()
def sample_ddim(model, x, timesteps, *, alphas_cumprod, noise_fn=None, noise_sampler=None, callback=None,
                should_stop=None, eta=0.0):
    """A1111 sd_samplers_timesteps_impl.ddim: `model(x, t) -> eps` on unscaled latents, `timesteps` ascending
    (ddim_timesteps). Runs len(timesteps) - 1 steps from the top timestep and returns the latent at the lowest
    one, exactly as A1111 does (20 steps -> 19 UNet evaluations, result at t=1)."""
    ac = alphas_cumprod.to(timesteps.device) if alphas_cumprod.device != timesteps.device else alphas_cumprod
    alphas = ac[timesteps]
    alphas_prev = ac[torch.nn.functional.pad(timesteps[:-1], pad=(1, 0))].to(
        torch.float64 if x.device.type != "mps" else torch.float32)
    sqrt_one_minus_alphas = torch.sqrt(1 - alphas)
    a_cpu, ap_cpu = alphas.cpu().double(), alphas_prev.cpu().double()
    sigmas = eta * torch.sqrt((1 - ap_cpu) / (1 - a_cpu) * (1 - a_cpu / ap_cpu))

    run = _Steps(x, len(timesteps) - 1, callback, should_stop)
    s_in = x.new_ones([x.shape[0]])
    s_x = x.new_ones((x.shape[0], 1, 1, 1))
    for i in range(len(timesteps) - 1):
        index = len(timesteps) - 1 - i
        e_t = run.model(model, x, timesteps[index].item() * s_in)
        a_t = alphas[index].item() * s_x
        a_prev = alphas_prev[index].item() * s_x
        sigma_t = sigmas[index].item() * s_x
        sqrt_one_minus_at = sqrt_one_minus_alphas[index].item() * s_x
        pred_x0 = (x - sqrt_one_minus_at * e_t) / a_t.sqrt()
        dir_xt = (1. - a_prev - sigma_t ** 2).sqrt() * e_t
        x = a_prev.sqrt() * pred_x0 + dir_xt
        if eta:  # A1111 draws (and multiplies by 0) at eta 0; skipping the draw changes nothing
            x = x + sigma_t * noise_fn()
        run.report(i, x, pred_x0)
    return x


def _default_noise_sampler(noise_fn):
    if noise_fn is None:
        raise ValueError("this sampler adds ancestral noise: pass noise_fn (ImageRNG.next)")
    return lambda sigma, sigma_next: noise_fn()


# -- the table -----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SamplingPlan:
    """What one sampling pass runs: built by SamplerSpec.plan, so the engine has no per-sampler branches.

    `schedule`: the sigmas (k-diffusion, ends with 0) or timesteps (DDIM) the sampler loops over;
    `full`: the whole schedule it was cut from (A1111 takes the Brownian bounds from it); `steps`: sampler steps
    (the callback's total); `inner_model`: what the CFG wrapper must call (KDenoiser -> denoised, or
    TimestepsDenoiser -> eps; the CFG formula is the same); `start_t`: DDIM img2img's noising timestep.
    """

    spec: "SamplerSpec"
    schedule: torch.Tensor
    full: torch.Tensor
    steps: int
    inner_model: Callable
    alphas_cumprod: torch.Tensor
    start_t: Optional[int] = None

    def start(self, noise: torch.Tensor, init: torch.Tensor | None = None) -> torch.Tensor:
        """The latent the sampler starts from. txt2img: A1111 `noise * sigmas[0]` (DDIM: the noise itself);
        img2img/hires: `init + noise * sigmas[0]` (DDIM: init*sqrt(a) + noise*sqrt(1-a) at start_t)."""
        if not self.spec.timesteps:
            sigma0 = self.schedule[0].to(noise.device)
            return noise * sigma0 if init is None else init + noise * sigma0
        if init is None:
            return noise
        a = self.alphas_cumprod[self.start_t].to(noise.device)
        return init * torch.sqrt(a) + noise * torch.sqrt(1 - a)

    def run(self, model, x, *, rng: ImageRNG | None = None, noise_fn=None, seeds=None,
            callback: Callback = None, should_stop: ShouldStop = None) -> torch.Tensor:
        return self.spec.run(model, x, self.schedule, rng=rng, noise_fn=noise_fn, seeds=seeds,
                             full_sigmas=self.full, alphas_cumprod=self.alphas_cumprod,
                             callback=callback, should_stop=should_stop)


@dataclass(frozen=True)
class SamplerSpec:
    name: str
    fn: Callable
    second_order: bool = False
    ancestral: bool = False  # draws noise_fn() noise (A1111's ImageRNG.next)
    brownian: bool = False  # draws Brownian-tree noise seeded per image
    discard_next_to_last_sigma: bool = False
    timesteps: bool = False  # A1111 "timesteps" sampler (DDIM): eps model, integer timesteps
    options: dict = field(default_factory=dict)

    def total_steps(self, steps: int) -> int:
        """Steps as A1111's prompt scheduling counts them: model calls for second-order samplers."""
        return steps * 2 if self.second_order else steps

    def inner_model(self, denoiser: KDenoiser):
        return TimestepsDenoiser(denoiser) if self.timesteps else denoiser

    def plan(self, schedule: str, steps: int, denoiser: KDenoiser, *, denoise: float | None = None) -> SamplingPlan:
        """txt2img (denoise None) or A1111 img2img/hires with a fixed step count (denoise in (0, 1])."""
        ac = denoiser.alphas_cumprod
        if self.timesteps:
            if denoise is None:
                t = ddim_timesteps(steps)
                return SamplingPlan(self, t, t, len(t) - 1, self.inner_model(denoiser), ac)
            total, t_enc = img2img_steps(steps, denoise)
            t = ddim_timesteps(total)
            sched = t[:t_enc]
            return SamplingPlan(self, sched, t, max(len(sched) - 1, 0), self.inner_model(denoiser), ac,
                                start_t=int(t[t_enc]))
        concrete = resolve_schedule(self.name, schedule)
        if denoise is None:
            s = schedule_sigmas(concrete, steps, denoiser, discard_next_to_last_sigma=self.discard_next_to_last_sigma)
            return SamplingPlan(self, s, s, len(s) - 1, denoiser, ac)
        total, t_enc = img2img_steps(steps, denoise)
        full = schedule_sigmas(concrete, total, denoiser, discard_next_to_last_sigma=self.discard_next_to_last_sigma)
        sched = full[total - t_enc - 1:]
        return SamplingPlan(self, sched, full, len(sched) - 1, denoiser, ac)

    def run(self, model, x, sigmas, *, rng: ImageRNG | None = None, noise_fn=None, seeds=None,
            full_sigmas=None, alphas_cumprod=None, callback: Callback = None,
            should_stop: ShouldStop = None) -> torch.Tensor:
        """Run the sampler. Noise comes from `rng` (preferred: its next() and, for SDE samplers, a Brownian tree
        per seed on its generator device) or from `noise_fn` + `seeds` (Brownian tree on the CPU).
        `full_sigmas`: the untruncated schedule for img2img (A1111 takes the Brownian bounds from it)."""
        if rng is not None:
            noise_fn = rng.next if noise_fn is None else noise_fn
            seeds = rng.seeds if seeds is None else seeds
        kwargs = dict(noise_fn=noise_fn, callback=callback, should_stop=should_stop, **self.options)
        if self.timesteps:
            if alphas_cumprod is None:
                raise ValueError("DDIM needs alphas_cumprod (use SamplerSpec.plan)")
            kwargs["alphas_cumprod"] = alphas_cumprod
        if self.brownian:
            if seeds is None:
                raise ValueError(f"{self.name} needs the batch's seeds for its Brownian noise")
            bounds = sigmas if full_sigmas is None else full_sigmas
            source = rng.noise_source if rng is not None else CPU
            smin, smax = bounds[bounds > 0].min(), bounds.max()
            kwargs["noise_sampler"] = BrownianTreeNoiseSampler(x, smin, smax, seeds, source)
        return self.fn(model, x, sigmas, **kwargs)


_SPECS = (
    SamplerSpec("DPM++ 2M", sample_dpmpp_2m),
    SamplerSpec("DPM++ SDE", sample_dpmpp_sde, second_order=True, brownian=True),
    SamplerSpec("DPM++ 2M SDE", sample_dpmpp_2m_sde, brownian=True, options={"solver_type": "midpoint"}),
    SamplerSpec("Euler a", sample_euler_ancestral, ancestral=True),
    SamplerSpec("Euler", sample_euler),
    SamplerSpec("Heun", sample_heun, second_order=True),
    SamplerSpec("DPM2", sample_dpm_2, second_order=True, discard_next_to_last_sigma=True),
    SamplerSpec("DDIM", sample_ddim, timesteps=True),
)
SAMPLER_TABLE: dict[str, SamplerSpec] = {s.name: s for s in _SPECS}
if tuple(SAMPLER_TABLE) != SAMPLERS:
    raise ImportError(f"sampler table {tuple(SAMPLER_TABLE)} does not match params.SAMPLERS {SAMPLERS}")


def get_spec(name: str) -> SamplerSpec:
    if name not in SAMPLER_TABLE:
        raise InvalidParameter(f"unknown sampler {name!r}; valid: {', '.join(SAMPLER_TABLE)}")
    return SAMPLER_TABLE[name]
