"""Sampling with A1111's k-diffusion semantics: sigmas, the CompVis denoiser wrapper, samplers, per-seed RNG."""
from .rng import BrownianTreeNoiseSampler, ImageRNG, NoiseSource, rng_device_for
from .samplers import (SAMPLER_TABLE, SamplerSpec, SamplingInterrupted, SamplingPlan, get_spec, sampler_kwargs,
                       schedule_options)
from .schedulers import SCHEDULE_TABLE, ScheduleOptions, compute_schedule
from .sigmas import (KDenoiser, TimestepsDenoiser, ddim_timesteps, get_sigmas, get_sigmas_exponential,
                     get_sigmas_karras, img2img_sigmas, img2img_steps, sample_img2img_sigmas, schedule_sigmas,
                     sd15_alphas_cumprod)

__all__ = [
    "BrownianTreeNoiseSampler", "ImageRNG", "NoiseSource", "rng_device_for",
    "SAMPLER_TABLE", "SamplerSpec", "SamplingInterrupted", "SamplingPlan", "get_spec", "sampler_kwargs",
    "schedule_options", "SCHEDULE_TABLE", "ScheduleOptions", "compute_schedule",
    "KDenoiser", "TimestepsDenoiser", "ddim_timesteps", "get_sigmas", "get_sigmas_exponential",
    "get_sigmas_karras", "img2img_sigmas", "img2img_steps", "sample_img2img_sigmas", "schedule_sigmas",
    "sd15_alphas_cumprod",
]
