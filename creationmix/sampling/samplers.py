"""A1111 1.10's samplers behind one table keyed by params.SAMPLERS: which function runs, on which denoiser and
schedule, with which noise and options.

The sampler functions live in kdiffusion.py (k-diffusion + Restart + LCM), dpm_solver.py (DPM fast/adaptive),
timesteps.py (DDIM, DDIM CFG++, PLMS) and unipc.py. `callback(i, total, x, denoised)` runs once per step where
k-diffusion calls its callback. `should_stop()` is asked before every model call; when it returns True the
sampler raises SamplingInterrupted carrying the last denoised latent (what A1111 decodes for an interrupted
image). A `should_stop` that raises its own exception simply propagates.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

import torch

from ..errors import InvalidParameter
from ..params import SAMPLERS, GenerationParams, resolve_schedule
from ..sampler_options import sampler_takes, schedule_takes
from .common import Callback, SamplingInterrupted, ShouldStop  # noqa: F401  (re-exported)
from .dpm_solver import sample_dpm_adaptive, sample_dpm_fast
from .kdiffusion import (sample_dpm_2, sample_dpm_2_ancestral, sample_dpmpp_2m, sample_dpmpp_2m_sde,  # noqa: F401
                         sample_dpmpp_2s_ancestral, sample_dpmpp_3m_sde, sample_dpmpp_sde, sample_euler,
                         sample_euler_ancestral, sample_heun, sample_lcm, sample_lms, sample_restart)
from .lcm import LCMDenoiser
from .rng import CPU, BrownianTreeNoiseSampler, ImageRNG
from .schedulers import ScheduleOptions
from .sigmas import KDenoiser, TimestepsDenoiser, ddim_timesteps, img2img_steps, schedule_sigmas
from .timesteps import sample_ddim, sample_ddim_cfgpp, sample_plms
from .unipc import sample_unipc


def sampler_kwargs(name: str, params: GenerationParams | None = None) -> dict:
    """The option arguments A1111 passes `name` (its defaults when `params` is None)."""
    p = params if params is not None else GenerationParams()
    takes = sampler_takes(name)
    kw: dict = {}
    if "eta" in takes:
        kw["eta"] = p.eta
    if "eta_ddim" in takes:
        kw["eta"] = p.eta_ddim
    if "s_churn" in takes:
        # A1111: `opts.s_tmax or inf`, so 0 means no upper bound.
        kw.update(s_churn=p.s_churn, s_tmin=p.s_tmin, s_tmax=p.s_tmax or float("inf"))
    if "s_noise" in takes:
        kw["s_noise"] = p.s_noise
    return kw


def schedule_options(params: GenerationParams | None) -> ScheduleOptions:
    if params is None:
        return ScheduleOptions()
    return ScheduleOptions(params.sigma_min, params.sigma_max, params.rho, params.beta_alpha, params.beta_beta)


@dataclass(frozen=True)
class SamplingPlan:
    """What one sampling pass runs: built by SamplerSpec.plan, so the engine has no per-sampler branches.

    `schedule`: the sigmas (k-diffusion) or timesteps (timestep samplers) the sampler loops over;
    `full`: the whole schedule it was cut from (A1111 takes the Brownian bounds from it); `steps`: sampler steps
    (the callback's total); `inner_model`: what the CFG wrapper must call (a sigma denoiser -> denoised, or
    TimestepsDenoiser -> eps; the CFG formula is the same); `start_t`: a timestep sampler's img2img noising
    timestep; `kwargs`: the option arguments (eta, churn...); `sigma_range`: DPM fast/adaptive's txt2img range.
    """

    spec: "SamplerSpec"
    schedule: torch.Tensor
    full: torch.Tensor
    steps: int
    inner_model: Callable
    alphas_cumprod: torch.Tensor
    start_t: Optional[int] = None
    kwargs: dict = field(default_factory=dict)
    sigma_range: Optional[tuple[float, float]] = None

    def start(self, noise: torch.Tensor, init: torch.Tensor | None = None) -> torch.Tensor:
        """The latent the sampler starts from. txt2img: A1111 `noise * sigmas[0]` (timestep samplers: the noise);
        img2img/hires: `init + noise * sigmas[0]` (timestep samplers: init*sqrt(a) + noise*sqrt(1-a))."""
        if not self.spec.timesteps:
            sigma0 = self.schedule[0].to(noise.device)
            return noise * sigma0 if init is None else init + noise * sigma0
        if init is None:
            return noise
        a = self.alphas_cumprod[self.start_t].to(noise.device)
        return init * torch.sqrt(a) + noise * torch.sqrt(1 - a)

    def run(self, model, x, *, rng: ImageRNG | None = None, noise_fn=None, seeds=None,
            callback: Callback = None, should_stop: ShouldStop = None) -> torch.Tensor:
        kwargs = dict(self.kwargs)
        if self.sigma_range is not None:
            kwargs["sigma_range"] = self.sigma_range
        if self.spec.timesteps and self.start_t is not None:
            kwargs["is_img2img"] = True
        return self.spec.run(model, x, self.schedule, rng=rng, noise_fn=noise_fn, seeds=seeds,
                             full_sigmas=self.full, alphas_cumprod=self.alphas_cumprod,
                             callback=callback, should_stop=should_stop, **kwargs)


@dataclass(frozen=True)
class SamplerSpec:
    name: str
    fn: Callable
    second_order: bool = False  # A1111 "second_order": prompt schedules count two model calls per step
    brownian: bool = False  # draws Brownian-tree noise seeded per image
    discard_next_to_last_sigma: bool = False
    timesteps: bool = False  # A1111 "timesteps" sampler: eps model on integer timesteps, no schedule type
    options: dict = field(default_factory=dict)  # fixed arguments (e.g. solver_type)
    sigma_range: bool = False  # DPM fast/adaptive: txt2img runs over the model's whole sigma range
    min_steps: int = 1  # k-diffusion fails below this (DPM++ 2M/3M SDE at 1 step)
    cfg_scale_multiplier: float = 1.0  # DDIM CFG++ runs CFG at scale / 12.5
    wrap: Optional[Callable] = None  # a denoiser of its own around the KDenoiser (LCM)
    all_timesteps: bool = False  # UniPC takes one step per timestep (DDIM/PLMS: one fewer)

    def total_steps(self, steps: int) -> int:
        """Steps as A1111's prompt scheduling counts them: model calls for second-order samplers."""
        return steps * 2 if self.second_order else steps

    def denoiser(self, denoiser: KDenoiser):
        return self.wrap(denoiser) if self.wrap is not None else denoiser

    def inner_model(self, denoiser: KDenoiser):
        return TimestepsDenoiser(denoiser) if self.timesteps else self.denoiser(denoiser)

    def options_taken(self, schedule: str) -> frozenset[str]:
        return sampler_takes(self.name) | schedule_takes(self.name, schedule)

    def _check_steps(self, steps: int) -> None:
        if steps < self.min_steps:
            raise InvalidParameter(f"{self.name} needs at least {self.min_steps} steps in a pass, got {steps} "
                                   f"(A1111 and k-diffusion fail there); use more steps or another sampler")

    def plan(self, schedule: str, steps: int, denoiser: KDenoiser, *, denoise: float | None = None,
             params: GenerationParams | None = None) -> SamplingPlan:
        """txt2img (denoise None) or A1111 img2img/hires with a fixed step count (denoise in (0, 1]).
        `params` supplies the sampler and schedule options (A1111's defaults when None)."""
        ac = denoiser.alphas_cumprod
        kwargs = sampler_kwargs(self.name, params)
        if self.timesteps:
            extra = 0 if self.all_timesteps else 1
            if denoise is None:
                t = ddim_timesteps(steps)
                self._check_steps(len(t) - extra)
                return SamplingPlan(self, t, t, len(t) - extra, self.inner_model(denoiser), ac, kwargs=kwargs)
            total, t_enc = img2img_steps(steps, denoise)
            t = ddim_timesteps(total)
            sched = t[:t_enc]
            self._check_steps(len(sched) - extra)
            return SamplingPlan(self, sched, t, max(len(sched) - extra, 0), self.inner_model(denoiser), ac,
                                start_t=int(t[t_enc]), kwargs=kwargs)
        den = self.denoiser(denoiser)
        concrete = resolve_schedule(self.name, schedule)
        # A1111 leaves Automatic-without-default to k-diffusion's discretization: no schedule settings apply.
        opts = schedule_options(params) if schedule_takes(self.name, schedule) else ScheduleOptions()
        discard = self.discard_next_to_last_sigma
        if denoise is None:
            s = schedule_sigmas(concrete, steps, den, discard_next_to_last_sigma=discard, options=opts)
            self._check_steps(len(s) - 1)
            rng = None
            if self.sigma_range:  # A1111 txt2img: the model's whole range and n = steps, whatever the schedule
                rng = (den.sigmas[0].item(), den.sigmas[-1].item())
                kwargs["n"] = steps
            return SamplingPlan(self, s, s, len(s) - 1, den, ac, kwargs=kwargs, sigma_range=rng)
        total, t_enc = img2img_steps(steps, denoise)
        full = schedule_sigmas(concrete, total, den, discard_next_to_last_sigma=discard, options=opts)
        sched = full[total - t_enc - 1:]
        self._check_steps(len(sched) - 1)
        return SamplingPlan(self, sched, full, len(sched) - 1, den, ac, kwargs=kwargs)

    def run(self, model, x, sigmas, *, rng: ImageRNG | None = None, noise_fn=None, seeds=None,
            full_sigmas=None, alphas_cumprod=None, callback: Callback = None,
            should_stop: ShouldStop = None, **kwargs) -> torch.Tensor:
        """Run the sampler. Noise comes from `rng` (preferred: its next() and, for SDE samplers, a Brownian tree
        per seed on its generator device) or from `noise_fn` + `seeds` (Brownian tree on the CPU).
        `full_sigmas`: the untruncated schedule for img2img (A1111 takes the Brownian bounds from it)."""
        if rng is not None:
            noise_fn = rng.next if noise_fn is None else noise_fn
            seeds = rng.seeds if seeds is None else seeds
        kwargs = dict(noise_fn=noise_fn, callback=callback, should_stop=should_stop, **self.options, **kwargs)
        if self.timesteps:
            if alphas_cumprod is None:
                raise ValueError(f"{self.name} needs alphas_cumprod (use SamplerSpec.plan)")
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
    SamplerSpec("DPM++ 2M SDE", sample_dpmpp_2m_sde, brownian=True, min_steps=2,
                options={"solver_type": "midpoint"}),
    SamplerSpec("DPM++ 2M SDE Heun", sample_dpmpp_2m_sde, brownian=True, min_steps=2,
                options={"solver_type": "heun"}),
    SamplerSpec("DPM++ 2S a", sample_dpmpp_2s_ancestral, second_order=True),
    SamplerSpec("DPM++ 3M SDE", sample_dpmpp_3m_sde, brownian=True, discard_next_to_last_sigma=True, min_steps=2),
    SamplerSpec("Euler a", sample_euler_ancestral),
    SamplerSpec("Euler", sample_euler),
    SamplerSpec("LMS", sample_lms),
    SamplerSpec("Heun", sample_heun, second_order=True),
    SamplerSpec("DPM2", sample_dpm_2, second_order=True, discard_next_to_last_sigma=True),
    SamplerSpec("DPM2 a", sample_dpm_2_ancestral, second_order=True, discard_next_to_last_sigma=True),
    SamplerSpec("DPM fast", sample_dpm_fast, sigma_range=True),
    SamplerSpec("DPM adaptive", sample_dpm_adaptive, sigma_range=True),
    SamplerSpec("Restart", sample_restart, second_order=True),
    SamplerSpec("DDIM", sample_ddim, timesteps=True),
    SamplerSpec("DDIM CFG++", sample_ddim_cfgpp, timesteps=True, cfg_scale_multiplier=1 / 12.5),
    SamplerSpec("PLMS", sample_plms, timesteps=True),
    SamplerSpec("UniPC", sample_unipc, timesteps=True, all_timesteps=True, min_steps=3),
    SamplerSpec("LCM", sample_lcm, wrap=LCMDenoiser),
)
SAMPLER_TABLE: dict[str, SamplerSpec] = {s.name: s for s in _SPECS}
if tuple(SAMPLER_TABLE) != SAMPLERS:
    raise ImportError(f"sampler table {tuple(SAMPLER_TABLE)} does not match params.SAMPLERS {SAMPLERS}")


def get_spec(name: str) -> SamplerSpec:
    if name not in SAMPLER_TABLE:
        raise InvalidParameter(f"unknown sampler {name!r}; valid: {', '.join(SAMPLER_TABLE)}")
    return SAMPLER_TABLE[name]
