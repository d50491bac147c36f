"""A1111 1.10 schedule types (modules/sd_schedulers.py) behind one table keyed by params.SCHEDULES.

Each function computes what A1111's does, in the same dtypes and order (float32 torch, float64 numpy where A1111
goes through numpy), because one sigma rounded differently is a different picture for the same seed.
`denoiser` is the sampler's model wrapper (KDenoiser, or LCM's): its `sigmas` table, `sigma_to_t`,
`t_to_sigma` and `get_sigmas` are what A1111's `inner_model` provides.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from ..params import SCHEDULES
from ..sampler_options import SCHEDULE_DEFAULT_RHO


def append_zero(x: torch.Tensor) -> torch.Tensor:
    return torch.cat([x, x.new_zeros([1])])


@dataclass(frozen=True)
class ScheduleOptions:
    """A1111's schedule settings (`sigma_min`, `sigma_max`, `rho`: 0 = unset; `beta_dist_alpha/beta`)."""

    sigma_min: float = 0.0
    sigma_max: float = 0.0
    rho: float = 0.0
    beta_alpha: float = 0.6
    beta_beta: float = 0.6


# -- k-diffusion ---------------------------------------------------------------------------------------------
def get_sigmas_karras(n: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> torch.Tensor:
    ramp = torch.linspace(0, 1, n)
    min_inv_rho = sigma_min ** (1 / rho)
    max_inv_rho = sigma_max ** (1 / rho)
    sigmas = (max_inv_rho + ramp * (min_inv_rho - max_inv_rho)) ** rho
    return append_zero(sigmas)


def get_sigmas_exponential(n: int, sigma_min: float, sigma_max: float) -> torch.Tensor:
    sigmas = torch.linspace(math.log(sigma_max), math.log(sigma_min), n).exp()
    return append_zero(sigmas)


def get_sigmas_polyexponential(n: int, sigma_min: float, sigma_max: float, rho: float = 1.0) -> torch.Tensor:
    ramp = torch.linspace(1, 0, n) ** rho
    sigmas = torch.exp(ramp * (math.log(sigma_max) - math.log(sigma_min)) + math.log(sigma_min))
    return append_zero(sigmas)


# -- A1111 sd_schedulers -------------------------------------------------------------------------------------
def _floats(values) -> torch.Tensor:
    # torch.FloatTensor(list): every element rounded once to float32.
    return torch.tensor([float(v) for v in values], dtype=torch.float32)


def uniform(n, sigma_min, sigma_max, denoiser, **_):
    return denoiser.get_sigmas(n).cpu()


def karras(n, sigma_min, sigma_max, denoiser, rho=7.0, **_):
    return get_sigmas_karras(n, sigma_min, sigma_max, rho)


def exponential(n, sigma_min, sigma_max, denoiser, **_):
    return get_sigmas_exponential(n, sigma_min, sigma_max)


def polyexponential(n, sigma_min, sigma_max, denoiser, rho=1.0, **_):
    return get_sigmas_polyexponential(n, sigma_min, sigma_max, rho)


def sgm_uniform(n, sigma_min, sigma_max, denoiser, **_):
    start = denoiser.sigma_to_t(torch.tensor(sigma_max))
    end = denoiser.sigma_to_t(torch.tensor(sigma_min))
    sigs = [denoiser.t_to_sigma(ts) for ts in torch.linspace(start, end, n + 1)[:-1]]
    return _floats(sigs + [0.0])


def kl_optimal(n, sigma_min, sigma_max, denoiser, **_):
    # A1111 returns n + 1 values ending at sigma_min, not 0: its last step stops at sigma_min.
    alpha_min = torch.arctan(torch.tensor(sigma_min))
    alpha_max = torch.arctan(torch.tensor(sigma_max))
    step_indices = torch.arange(n + 1)
    return torch.tan(step_indices / n * alpha_min + (1.0 - step_indices / n) * alpha_max)


# NVIDIA's Align Your Steps sigmas for SD 1.5 (A1111 uses these for every non-SDXL model).
AYS_SD15 = (14.615, 6.475, 3.861, 2.697, 1.886, 1.396, 0.963, 0.652, 0.399, 0.152, 0.029)


def _loglinear_interp(t_steps, num_steps):
    xs = np.linspace(0, 1, len(t_steps))
    ys = np.log(t_steps[::-1])
    new_xs = np.linspace(0, 1, num_steps)
    new_ys = np.interp(new_xs, xs, ys)
    return np.exp(new_ys)[::-1].copy()


def align_your_steps(n, sigma_min, sigma_max, denoiser, **_):
    sigmas = list(AYS_SD15)
    if n != len(sigmas):
        return torch.FloatTensor(np.append(_loglinear_interp(sigmas, n), [0.0]))
    return torch.FloatTensor(sigmas + [0.0])


def simple(n, sigma_min, sigma_max, denoiser, **_):
    table = denoiser.sigmas
    ss = len(table) / n
    return _floats([float(table[-(1 + int(x * ss))]) for x in range(n)] + [0.0])


def normal(n, sigma_min, sigma_max, denoiser, **_):
    start = denoiser.sigma_to_t(torch.tensor(sigma_max))
    end = denoiser.sigma_to_t(torch.tensor(sigma_min))
    timesteps = torch.linspace(start, end, n)
    return _floats([denoiser.t_to_sigma(ts) for ts in timesteps] + [0.0])


def ddim(n, sigma_min, sigma_max, denoiser, **_):
    # Every (1000 // n)-th table sigma from index 1: 30 steps gives 31 levels, as in A1111.
    table = denoiser.sigmas
    ss = max(len(table) // n, 1)
    sigs = [float(table[x]) for x in range(1, len(table), ss)]
    return _floats(sigs[::-1] + [0.0])


def beta(n, sigma_min, sigma_max, denoiser, beta_alpha=0.6, beta_beta=0.6, **_):
    from scipy import stats  # scipy is only needed for this schedule

    timesteps = 1 - np.linspace(0, 1, n)
    timesteps = [stats.beta.ppf(x, beta_alpha, beta_beta) for x in timesteps]
    return _floats([sigma_min + (x * (sigma_max - sigma_min)) for x in timesteps] + [0.0])


@dataclass(frozen=True)
class Schedule:
    label: str
    fn: Callable

    @property
    def default_rho(self) -> float:  # A1111: -1 = takes no rho
        return SCHEDULE_DEFAULT_RHO.get(self.label, -1.0)


SCHEDULE_TABLE: dict[str, Schedule] = {s.label: s for s in (
    Schedule("Uniform", uniform),
    Schedule("Karras", karras),
    Schedule("Exponential", exponential),
    Schedule("Polyexponential", polyexponential),
    Schedule("SGM Uniform", sgm_uniform),
    Schedule("KL Optimal", kl_optimal),
    Schedule("Align Your Steps", align_your_steps),
    Schedule("Simple", simple),
    Schedule("Normal", normal),
    Schedule("DDIM", ddim),
    Schedule("Beta", beta),
)}
if tuple(SCHEDULE_TABLE) != SCHEDULES[1:]:
    raise ImportError(f"schedule table {tuple(SCHEDULE_TABLE)} does not match params.SCHEDULES {SCHEDULES}")


def schedule_kwargs(schedule: Schedule, denoiser, options: ScheduleOptions) -> dict:
    """A1111 KDiffusionSampler.get_sigmas' keyword arguments: the model's sigma range unless a setting overrides
    it, rho only when it differs from the schedule's own, the beta distribution for Beta."""
    m_min, m_max = denoiser.sigmas[0].item(), denoiser.sigmas[-1].item()
    kw = {"sigma_min": m_min, "sigma_max": m_max}
    if options.sigma_min != 0 and options.sigma_min != m_min:
        kw["sigma_min"] = options.sigma_min
    if options.sigma_max != 0 and options.sigma_max != m_max:
        kw["sigma_max"] = options.sigma_max
    if schedule.default_rho != -1 and options.rho != 0 and options.rho != schedule.default_rho:
        kw["rho"] = options.rho
    if schedule.label == "Beta":
        kw["beta_alpha"], kw["beta_beta"] = options.beta_alpha, options.beta_beta
    return kw


def compute_schedule(label: str, n: int, denoiser, options: ScheduleOptions | None = None) -> torch.Tensor:
    schedule = SCHEDULE_TABLE[label]
    return schedule.fn(n, denoiser=denoiser, **schedule_kwargs(schedule, denoiser, options or ScheduleOptions()))
