"""Noise levels the way A1111 computes them: LDM's alphas_cumprod, k-diffusion's CompVisDenoiser (quantize off)
and its schedules, A1111's sampler-level tweaks (discard penultimate sigma, img2img step arithmetic).

Every dtype and operation order here copies the reference code: a different rounding of one sigma is a
different picture for the same seed.
"""
from __future__ import annotations

from typing import Callable

import torch

from ..errors import InvalidParameter
from ..params import resolve_schedule
from .schedulers import (SCHEDULE_TABLE, ScheduleOptions, append_zero, compute_schedule,  # noqa: F401
                         get_sigmas_exponential, get_sigmas_karras, get_sigmas_polyexponential)

NUM_TIMESTEPS = 1000


def sd15_alphas_cumprod() -> torch.Tensor:
    """LDM's "linear" schedule: computed in float64, registered as a float32 buffer."""
    betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, NUM_TIMESTEPS, dtype=torch.float64) ** 2
    alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)
    return alphas_cumprod.to(torch.float32)


def _append_dims(x: torch.Tensor, ndim: int) -> torch.Tensor:
    return x[(...,) + (None,) * (ndim - x.ndim)]


class KDenoiser:
    """k-diffusion's CompVisDenoiser(quantize=False) around an eps-predicting `unet_fn(x, t, **cond)`.

    Called as `denoiser(x, sigma, **cond) -> denoised x0`, sigma of shape (batch,). The UNet sees the fractional
    timestep interpolated in log-sigma, as A1111 does with quantization off (its default).
    """

    def __init__(self, unet_fn: Callable[..., torch.Tensor], alphas_cumprod: torch.Tensor):
        self.unet_fn = unet_fn
        self.alphas_cumprod = alphas_cumprod
        self.sigmas = ((1 - alphas_cumprod) / alphas_cumprod) ** 0.5
        self.log_sigmas = self.sigmas.log()

    @property
    def sigma_min(self) -> torch.Tensor:
        return self.sigmas[0]

    @property
    def sigma_max(self) -> torch.Tensor:
        return self.sigmas[-1]

    def _tables(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        if self.log_sigmas.device != device:
            self.sigmas, self.log_sigmas = self.sigmas.to(device), self.log_sigmas.to(device)
        return self.sigmas, self.log_sigmas

    def sigma_to_t(self, sigma: torch.Tensor) -> torch.Tensor:
        _, log_sigmas = self._tables(sigma.device)
        log_sigma = sigma.log()
        dists = log_sigma - log_sigmas[:, None]
        low_idx = dists.ge(0).cumsum(dim=0).argmax(dim=0).clamp(max=log_sigmas.shape[0] - 2)
        high_idx = low_idx + 1
        low, high = log_sigmas[low_idx], log_sigmas[high_idx]
        w = (low - log_sigma) / (low - high)
        w = w.clamp(0, 1)
        t = (1 - w) * low_idx + w * high_idx
        return t.view(sigma.shape)

    def t_to_sigma(self, t: torch.Tensor) -> torch.Tensor:
        _, log_sigmas = self._tables(t.device)
        t = t.float()
        low_idx, high_idx, w = t.floor().long(), t.ceil().long(), t.frac()
        log_sigma = (1 - w) * log_sigmas[low_idx] + w * log_sigmas[high_idx]
        return log_sigma.exp()

    def get_sigmas(self, n: int) -> torch.Tensor:
        """k-diffusion DiscreteSchedule.get_sigmas: n levels evenly spaced in t, then 0 ("Uniform")."""
        t_max = len(self.sigmas) - 1
        t = torch.linspace(t_max, 0, n, device=self.sigmas.device)
        return append_zero(self.t_to_sigma(t))

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, **cond) -> torch.Tensor:
        c_out = _append_dims(-sigma, x.ndim)
        c_in = _append_dims(1 / (sigma ** 2 + 1.0) ** 0.5, x.ndim)
        eps = self.unet_fn(x * c_in, self.sigma_to_t(sigma), **cond)
        return x + eps * c_out


class TimestepsDenoiser:
    """A1111's CompVisTimestepsDenoiser for DDIM: the raw UNet on unscaled latents at integer timesteps.

    Called as `denoiser(x, t, **cond) -> eps`; classifier-free guidance combines eps the same linear way.
    """

    def __init__(self, denoiser: KDenoiser):
        self.unet_fn = denoiser.unet_fn
        self.alphas_cumprod = denoiser.alphas_cumprod

    def __call__(self, x: torch.Tensor, t: torch.Tensor, **cond) -> torch.Tensor:
        return self.unet_fn(x, t, **cond)


# -- schedules ------------------------------------------------------------------------------------------------
def schedule_sigmas(schedule: str, steps: int, denoiser: KDenoiser, *, discard_next_to_last_sigma: bool = False,
                    options: ScheduleOptions | None = None) -> torch.Tensor:
    """A1111 KDiffusionSampler.get_sigmas for a concrete schedule name. CPU float32 (usually ending with 0)."""
    if schedule not in SCHEDULE_TABLE:
        raise InvalidParameter(f"unknown schedule type {schedule!r}; valid: {', '.join(SCHEDULE_TABLE)}")
    if steps < 1:
        raise InvalidParameter(f"steps must be at least 1, got {steps}")
    n = steps + 1 if discard_next_to_last_sigma else steps
    sigmas = compute_schedule(schedule, n, denoiser, options)
    if discard_next_to_last_sigma:
        sigmas = torch.cat([sigmas[:-2], sigmas[-1:]])
    return sigmas


def _spec(sampler: str):
    from .samplers import SAMPLER_TABLE  # samplers import this module

    if sampler not in SAMPLER_TABLE:
        raise InvalidParameter(f"unknown sampler {sampler!r}; valid: {', '.join(SAMPLER_TABLE)}")
    return SAMPLER_TABLE[sampler]


def get_sigmas(sampler: str, schedule: str, steps: int, denoiser: KDenoiser,
               options: ScheduleOptions | None = None) -> torch.Tensor:
    """The sigmas a k-diffusion sampler runs over for `steps` steps (len == steps + 1, last 0).

    `schedule` may be "Automatic" (resolved per sampler as A1111 does). For DDIM, which A1111 runs on integer
    timesteps and where the schedule type has no effect, these are the table sigmas at its timesteps
    (informative only: DDIM runs from `ddim_timesteps`, see `SamplerSpec.plan`).
    """
    spec = _spec(sampler)
    if spec.timesteps:
        t = ddim_timesteps(steps)
        return denoiser.sigmas.cpu()[t.flip(0)]
    return schedule_sigmas(resolve_schedule(sampler, schedule), steps, spec.denoiser(denoiser),
                           discard_next_to_last_sigma=spec.discard_next_to_last_sigma, options=options)


def img2img_steps(steps: int, denoise: float) -> tuple[int, int]:
    """A1111 setup_img2img_steps with an explicit step count (hires fix): (schedule length, t_enc)."""
    if not 0 < denoise <= 1:
        raise InvalidParameter(f"denoising strength must be in (0, 1], got {denoise!r}")
    total = int(steps / min(denoise, 0.999))
    return total, steps - 1


def img2img_sigmas(sampler: str, schedule: str, steps: int, denoise: float,
                   denoiser: KDenoiser) -> torch.Tensor:
    """The tail of a longer schedule that A1111's img2img/hires runs: `steps` steps, len == steps + 1.

    20 steps at denoise 0.6 -> a 33-step schedule, the last 20 steps run. The start latent is
    `init + noise * sigmas[0]`.
    """
    total, t_enc = img2img_steps(steps, denoise)
    sigmas = get_sigmas(sampler, schedule, total, denoiser)
    return sigmas[total - t_enc - 1:]


sample_img2img_sigmas = img2img_sigmas


def ddim_timesteps(steps: int) -> torch.Tensor:
    """A1111 CompVisSampler.get_timesteps: ascending int64, e.g. 20 steps -> 1, 51, ..., 951."""
    stride = NUM_TIMESTEPS // steps if steps > 0 else 0
    if stride < 1:
        raise InvalidParameter(f"DDIM needs between 1 and {NUM_TIMESTEPS} steps, got {steps}")
    return torch.clip(torch.asarray(list(range(0, NUM_TIMESTEPS, stride))) + 1, 0, NUM_TIMESTEPS - 1)
