"""What every sampler shares: the stop/callback bookkeeping, k-diffusion's small helpers, noise samplers."""
from __future__ import annotations

from typing import Callable, Optional

import torch

from ..errors import Interrupted

Callback = Optional[Callable[[int, int, torch.Tensor, torch.Tensor], None]]
ShouldStop = Optional[Callable[[], bool]]


class SamplingInterrupted(Interrupted):
    """should_stop() said stop. `latent` is the last denoised prediction (the start latent before any step)."""

    def __init__(self, latent: torch.Tensor, step: int):
        super().__init__(f"sampling interrupted at step {step}")
        self.latent = latent
        self.step = step


class Steps:
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


def append_dims(x: torch.Tensor, ndim: int) -> torch.Tensor:
    return x[(...,) + (None,) * (ndim - x.ndim)]


def to_d(x, sigma, denoised):
    return (x - denoised) / append_dims(sigma, x.ndim)


def get_ancestral_step(sigma_from, sigma_to, eta=1.0):
    if not eta:
        return sigma_to, 0.0
    sigma_up = min(sigma_to, eta * (sigma_to ** 2 * (sigma_from ** 2 - sigma_to ** 2) / sigma_from ** 2) ** 0.5)
    sigma_down = (sigma_to ** 2 - sigma_up ** 2) ** 0.5
    return sigma_down, sigma_up


def t_fn(sigma):
    return sigma.log().neg()


def sigma_fn(t):
    return t.neg().exp()


def default_noise_sampler(noise_fn):
    """k-diffusion's torch.randn_like(x) noise, which A1111 replaces by ImageRNG.next."""
    if noise_fn is None:
        raise ValueError("this sampler draws ancestral noise: pass noise_fn (ImageRNG.next)")
    return lambda sigma, sigma_next: noise_fn()


def need_brownian(noise_sampler, name):
    if noise_sampler is None:
        raise ValueError(f"{name} needs a Brownian noise_sampler (ImageRNG.brownian); A1111 seeds it per image")
    return noise_sampler
