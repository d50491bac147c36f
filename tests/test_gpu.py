"""GPU paths (CUDA fp16, GPU RNG). Skipped without CUDA; run them on a lent GPU with `pytest -m gpu`."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from creationmix.engine import Engine
from creationmix.params import GenerationParams

pytestmark = pytest.mark.gpu

P = dict(prompt="1girl, (solo:1.2)", negative_prompt="worst quality", steps=4, sampler="DPM++ 2M Karras",
         cfg_scale=7.0, seed=77, width=64, height=64, enable_hires=True, hires_scale=1.5, hires_steps=2,
         denoising_strength=0.6)


def test_cuda_fp16_generation_is_reproducible_and_close_to_fp32(folders):
    gpu = Engine(folders, device="cuda", precision="fp16")
    assert gpu.dtype == torch.float16
    a = gpu.generate(GenerationParams(**P), save=False).images[0]
    b = gpu.generate(GenerationParams(**P), save=False).images[0]
    assert np.array_equal(np.asarray(a), np.asarray(b))
    # RNG "CPU" on CUDA draws the same noise as the CPU engine: fp16 vs fp32 differ only by precision.
    cpu = Engine(folders, device="cpu", precision="fp32")
    c = cpu.generate(GenerationParams(**P, rng="CPU"), save=False).images[0]
    g = gpu.generate(GenerationParams(**P, rng="CPU"), save=False).images[0]
    assert np.abs(np.asarray(c, dtype=int) - np.asarray(g, dtype=int)).mean() < 8


def test_gpu_rng_noise_comes_from_a_cuda_generator(folders):
    from creationmix.sampling import ImageRNG
    rng = ImageRNG((4, 8, 8), [5], device="cuda", source="GPU")
    expected = torch.randn((4, 8, 8), generator=torch.Generator("cuda").manual_seed(5), device="cuda")
    assert torch.equal(rng.first()[0], expected)
