"""A1111's random numbers: one generator per image seed (ImageRNG, with variation seeds and seed resize), and the
Brownian-tree noise the SDE samplers draw (k-diffusion's BatchedBrownianTree with A1111's replacement of
torchsde's normal sampler), all from one RNG source.

Sources (A1111's names): "GPU" is torch's CUDA generator on a CUDA device and, anywhere else, NV noise, so a
seed from an NVIDIA machine (A1111's default source) gives the same noise on a CPU or a Mac; "CPU" is torch's
CPU generator; "NV" is NV noise (philox.py) everywhere.

Per-image generators make image i of a batch equal to a single image generated with seed + i.
"""
from __future__ import annotations

import contextlib
import contextvars
import warnings
from dataclasses import dataclass
from typing import Sequence

import torch
import torchsde
import torchsde._brownian.brownian_interval as _bi

from .philox import PhiloxGenerator

CPU = torch.device("cpu")


@dataclass(frozen=True)
class NoiseSource:
    """Where normal noise comes from: torch's generator on `device`, or NV noise (`device` is None)."""

    device: torch.device | None

    @classmethod
    def for_rng(cls, source: str, device: torch.device | str) -> "NoiseSource":
        device = torch.device(device)
        if source == "NV" or (source == "GPU" and device.type != "cuda"):
            return cls(None)
        if source in ("CPU", "GPU"):
            return cls(CPU if source == "CPU" else device)
        raise ValueError(f"unknown RNG source {source!r}; valid: GPU, CPU, NV")

    @property
    def is_nv(self) -> bool:
        return self.device is None

    def generator(self, seed: int) -> "_Generator":
        return _Generator(self, int(seed))


class _Generator:
    """One seeded stream: `randn(shape)` draws the next float32 tensor (on the source's device; NV: CPU)."""

    def __init__(self, source: NoiseSource, seed: int):
        if source.is_nv:
            self._nv, self._torch = PhiloxGenerator(seed), None
        else:
            self._nv, self._torch = None, torch.Generator(source.device).manual_seed(seed)
        self.device = CPU if source.is_nv else source.device

    def randn(self, shape: Sequence[int]) -> torch.Tensor:
        if self._nv is not None:
            return torch.from_numpy(self._nv.randn(shape))
        return torch.randn(tuple(shape), device=self.device, generator=self._torch)


def rng_device_for(source: str, device: torch.device | str) -> torch.device:
    """The device the noise of `source` is drawn on (NV noise is computed on the CPU)."""
    return NoiseSource.for_rng(source, device).device or CPU


def slerp(val: float, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """A1111's slerp of one image's noise (C, H, W) towards the variation noise, norms taken over dim 1 as A1111
    does (and its near-parallel fallback, weights as written there)."""
    low_norm = low / torch.norm(low, dim=1, keepdim=True)
    high_norm = high / torch.norm(high, dim=1, keepdim=True)
    dot = (low_norm * high_norm).sum(1)
    if dot.mean() > 0.9995:
        return low * val + high * (1 - val)
    omega = torch.acos(dot)
    so = torch.sin(omega)
    return (torch.sin((1.0 - val) * omega) / so).unsqueeze(1) * low + (torch.sin(val * omega) / so).unsqueeze(1) * high


def paste_resized(x: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """A1111's seed resize: the noise drawn for another size, centred on this size's noise, cropped or padded
    by it (both (C, H, W); `x` is changed and returned)."""
    dx = (x.shape[2] - noise.shape[2]) // 2
    dy = (x.shape[1] - noise.shape[1]) // 2
    w = noise.shape[2] if dx >= 0 else noise.shape[2] + 2 * dx
    h = noise.shape[1] if dy >= 0 else noise.shape[1] + 2 * dy
    tx, ty = max(dx, 0), max(dy, 0)
    sx, sy = max(-dx, 0), max(-dy, 0)
    x[:, ty:ty + h, tx:tx + w] = noise[:, sy:sy + h, sx:sx + w]
    return x


class ImageRNG:
    """A1111 modules/rng.ImageRNG.

    `shape` is one image's latent shape (C, H, W). `first()` gives the initial noise (unscaled: the caller
    multiplies by the first sigma), `next()` the next ancestral noise; both (batch, C, H, W) on `device`.
    As in A1111, calling `next()` before `first()` returns `first()`.

    Variation: with `subseed_strength` != 0, each image's first noise is slerped towards the noise of its
    subseed (images past the end of `subseeds` use subseed 0, as A1111). Seed resize: with both
    `seed_resize_from_w/h` > 0, the first noise is drawn at that size (its latent) and pasted centred into this
    one. Ancestral noise always comes from the image's own seed (re-seeded with seed + ENSD after the first
    noise when `eta_noise_seed_delta` is set).
    """

    def __init__(self, shape: Sequence[int], seeds: Sequence[int], *, device: torch.device | str = "cpu",
                 source: str = "GPU", eta_noise_seed_delta: int = 0, subseeds: Sequence[int] | None = None,
                 subseed_strength: float = 0.0, seed_resize_from_h: int = 0, seed_resize_from_w: int = 0):
        self.shape = tuple(int(s) for s in shape)
        self.seeds = [int(s) for s in seeds]
        self.device = torch.device(device)
        self.source = source
        self.noise_source = NoiseSource.for_rng(source, self.device)
        self.eta_noise_seed_delta = int(eta_noise_seed_delta or 0)
        self.subseeds = None if subseeds is None else [int(s) for s in subseeds]
        self.subseed_strength = float(subseed_strength or 0.0)
        self.seed_resize_from_h = int(seed_resize_from_h or 0)
        self.seed_resize_from_w = int(seed_resize_from_w or 0)
        self.generators = [self.noise_source.generator(s) for s in self.seeds]
        self.is_first = True

    @property
    def generator_device(self) -> torch.device:
        return self.noise_source.device or CPU

    def _fresh(self, seed: int, shape) -> torch.Tensor:
        # A1111's rng.randn(seed, shape): a newly seeded generator's first draw.
        return self.noise_source.generator(seed).randn(shape)

    def first(self) -> torch.Tensor:
        self.is_first = False
        resized = self.seed_resize_from_h > 0 and self.seed_resize_from_w > 0
        noise_shape = ((self.shape[0], self.seed_resize_from_h // 8, self.seed_resize_from_w // 8) if resized
                       else self.shape)
        xs = []
        for i, (seed, generator) in enumerate(zip(self.seeds, self.generators)):
            subnoise = None
            if self.subseeds is not None and self.subseed_strength != 0:
                subseed = self.subseeds[i] if i < len(self.subseeds) else 0
                subnoise = self._fresh(subseed, noise_shape)
            noise = self._fresh(seed, noise_shape) if noise_shape != self.shape else generator.randn(self.shape)
            if subnoise is not None:
                noise = slerp(self.subseed_strength, noise, subnoise)
            if noise_shape != self.shape:
                noise = paste_resized(generator.randn(self.shape), noise)
            xs.append(noise)
        if self.eta_noise_seed_delta:
            self.generators = [self.noise_source.generator(s + self.eta_noise_seed_delta) for s in self.seeds]
        return torch.stack(xs).to(self.device)

    def next(self) -> torch.Tensor:
        if self.is_first:
            return self.first()
        return torch.stack([g.randn(self.shape) for g in self.generators]).to(self.device)

    def brownian(self, x: torch.Tensor, sigmas: torch.Tensor) -> "BrownianTreeNoiseSampler":
        """A1111 create_noise_sampler: bounds from the whole schedule (img2img: the untruncated one)."""
        sigma_min, sigma_max = sigmas[sigmas > 0].min(), sigmas.max()
        return BrownianTreeNoiseSampler(x, sigma_min, sigma_max, self.seeds, self.noise_source)


# -- Brownian noise ------------------------------------------------------------------------------------------
# A1111 replaces torchsde's _randn by devices.randn_local: the first float32 normals of a generator freshly
# seeded on the RNG source, then moved/cast. Patched once, active only inside `_brownian_rng(...)`, so other
# torchsde users keep the stock behaviour.
_ORIGINAL_RANDN = _bi._randn
_NOISE_SOURCE: contextvars.ContextVar[NoiseSource | None] = contextvars.ContextVar("_NOISE_SOURCE", default=None)


def _a1111_randn(size, dtype, device, seed):
    source = _NOISE_SOURCE.get()
    if source is None:
        return _ORIGINAL_RANDN(size, dtype, device, seed)
    return source.generator(int(seed)).randn(size).to(device=device, dtype=dtype)


if getattr(_bi._randn, "__name__", "") != "_a1111_randn":
    _bi._randn = _a1111_randn

# float32 schedule ends vs torchsde's float64 interval ends differ in the last digit; A1111 prints this on every
# SDE run. The query is clamped by torchsde and harmless.
warnings.filterwarnings("ignore", message=r"Should have t[ab][<>]=t[01] but got", module=r"torchsde")


@contextlib.contextmanager
def _brownian_rng(source: NoiseSource):
    token = _NOISE_SOURCE.set(source)
    try:
        yield
    finally:
        _NOISE_SOURCE.reset(token)


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
                 source: NoiseSource | torch.device | str = CPU):
        # A device means torch's generator there (what A1111's "CPU"/"GPU" sources draw with).
        self.source = source if isinstance(source, NoiseSource) else NoiseSource(torch.device(source))
        t0, t1 = torch.as_tensor(sigma_min), torch.as_tensor(sigma_max)
        with _brownian_rng(self.source):
            self.tree = BatchedBrownianTree(x, t0, t1, seeds)

    def __call__(self, sigma, sigma_next) -> torch.Tensor:
        t0, t1 = torch.as_tensor(sigma), torch.as_tensor(sigma_next)
        with _brownian_rng(self.source):
            return self.tree(t0, t1) / (t1 - t0).abs().sqrt()
