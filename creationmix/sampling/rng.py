"""A1111's random numbers: one torch.Generator per image seed (ImageRNG), and the Brownian-tree noise the SDE
samplers draw (k-diffusion's BatchedBrownianTree with A1111's replacement of torchsde's normal sampler).

Per-image generators make image i of a batch equal to a single image generated with seed + i.
"""
from __future__ import annotations

import contextlib
import contextvars
import warnings
from typing import Sequence

import torch
import torchsde
import torchsde._brownian.brownian_interval as _bi

CPU = torch.device("cpu")


def rng_device_for(source: str, device: torch.device | str) -> torch.device:
    """A1111 devices.randn: the model's device for RNG "GPU", the CPU for RNG "CPU" and on MPS."""
    device = torch.device(device)
    return CPU if source == "CPU" or device.type == "mps" else device


class ImageRNG:
    """A1111 modules/rng.ImageRNG (no subseeds, no seed resize).

    `shape` is one image's latent shape (C, H, W). `first()` gives the initial noise (unscaled: the caller
    multiplies by the first sigma), `next()` the next ancestral noise; both (batch, C, H, W) on `device`.
    As in A1111, calling `next()` before `first()` returns `first()`.
    """

    def __init__(self, shape: Sequence[int], seeds: Sequence[int], *, device: torch.device | str = "cpu",
                 generator_device: torch.device | str | None = None, source: str = "GPU",
                 eta_noise_seed_delta: int = 0):
        self.shape = tuple(int(s) for s in shape)
        self.seeds = [int(s) for s in seeds]
        self.device = torch.device(device)
        self.generator_device = (torch.device(generator_device) if generator_device is not None
                                 else rng_device_for(source, self.device))
        self.eta_noise_seed_delta = int(eta_noise_seed_delta or 0)
        self.generators = [self._generator(s) for s in self.seeds]
        self.is_first = True

    def _generator(self, seed: int) -> torch.Generator:
        return torch.Generator(self.generator_device).manual_seed(int(seed))

    def _draw(self) -> torch.Tensor:
        xs = [torch.randn(self.shape, device=self.generator_device, generator=g) for g in self.generators]
        return torch.stack(xs).to(self.device)

    def first(self) -> torch.Tensor:
        self.is_first = False
        noise = self._draw()
        if self.eta_noise_seed_delta:
            self.generators = [self._generator(s + self.eta_noise_seed_delta) for s in self.seeds]
        return noise

    def next(self) -> torch.Tensor:
        if self.is_first:
            return self.first()
        return self._draw()

    def brownian(self, x: torch.Tensor, sigmas: torch.Tensor) -> "BrownianTreeNoiseSampler":
        """A1111 create_noise_sampler: bounds from the whole schedule (img2img: the untruncated one)."""
        sigma_min, sigma_max = sigmas[sigmas > 0].min(), sigmas.max()
        return BrownianTreeNoiseSampler(x, sigma_min, sigma_max, self.seeds, self.generator_device)


# -- Brownian noise ------------------------------------------------------------------------------------------
# A1111 replaces torchsde's _randn by devices.randn_local: float32 normals from a fresh generator on the RNG
# device, then moved/cast. Patched once, active only inside `_brownian_rng(...)`, so other torchsde users keep
# the stock behaviour.
_ORIGINAL_RANDN = _bi._randn
_RNG_DEVICE: contextvars.ContextVar[torch.device | None] = contextvars.ContextVar("_RNG_DEVICE", default=None)


def _a1111_randn(size, dtype, device, seed):
    rng_device = _RNG_DEVICE.get()
    if rng_device is None:
        return _ORIGINAL_RANDN(size, dtype, device, seed)
    generator = torch.Generator(rng_device).manual_seed(int(seed))
    return torch.randn(size, device=rng_device, generator=generator).to(device=device, dtype=dtype)


if getattr(_bi._randn, "__name__", "") != "_a1111_randn":
    _bi._randn = _a1111_randn

# float32 schedule ends vs torchsde's float64 interval ends differ in the last digit; A1111 prints this on every
# SDE run. The query is clamped by torchsde and harmless.
warnings.filterwarnings("ignore", message=r"Should have t[ab][<>]=t[01] but got", module=r"torchsde")


@contextlib.contextmanager
def _brownian_rng(device: torch.device):
    token = _RNG_DEVICE.set(device)
    try:
        yield
    finally:
        _RNG_DEVICE.reset(token)


class BatchedBrownianTree:
    """k-diffusion's wrapper: one torchsde.BrownianTree per seed, queried in sorted order with a sign flip."""

    def __init__(self, x: torch.Tensor, t0: torch.Tensor, t1: torch.Tensor, seeds: Sequence[int]):
        t0, t1, self.sign = self.sort(t0, t1)
        w0 = torch.zeros_like(x)
        if len(seeds) != x.shape[0]:
            raise ValueError(f"{len(seeds)} seeds for a batch of {x.shape[0]}")
        w0 = w0[0]
        self.trees = [torchsde.BrownianTree(t0, w0, t1, entropy=int(s)) for s in seeds]

    @staticmethod
    def sort(a, b):
        return (a, b, 1) if a < b else (b, a, -1)

    def __call__(self, t0: torch.Tensor, t1: torch.Tensor) -> torch.Tensor:
        t0, t1, sign = self.sort(t0, t1)
        return torch.stack([tree(t0, t1) for tree in self.trees]) * (self.sign * sign)


class BrownianTreeNoiseSampler:
    """k-diffusion BrownianTreeNoiseSampler with A1111's per-image seeds: `ns(sigma, sigma_next)` is unit-variance
    noise for that interval, the same for an image whatever batch it is generated in."""

    def __init__(self, x: torch.Tensor, sigma_min, sigma_max, seeds: Sequence[int],
                 generator_device: torch.device | str = CPU):
        self.generator_device = torch.device(generator_device)
        t0, t1 = torch.as_tensor(sigma_min), torch.as_tensor(sigma_max)
        with _brownian_rng(self.generator_device):
            self.tree = BatchedBrownianTree(x, t0, t1, seeds)

    def __call__(self, sigma, sigma_next) -> torch.Tensor:
        t0, t1 = torch.as_tensor(sigma), torch.as_tensor(sigma_next)
        with _brownian_rng(self.generator_device):
            return self.tree(t0, t1) / (t1 - t0).abs().sqrt()
