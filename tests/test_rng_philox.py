"""NV noise (sampling/philox.py): Philox4x32-10 known answers, A1111's layout and Box-Muller checked against an
independent scalar implementation written here, the sources' mapping, and (GPU marker) CUDA's torch.randn."""
from __future__ import annotations

import math
import struct

import numpy as np
import pytest
import torch

from creationmix.sampling import BrownianTreeNoiseSampler, ImageRNG, NoiseSource, rng_device_for
from creationmix.sampling.philox import PhiloxGenerator, philox4x32, seed_key

# Random123's published known-answer vectors for philox4x32-10 (its tests/kat_vectors; also quoted in
# TensorFlow's stateful random tests): (counter, key) -> output.
KAT = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]


@pytest.mark.parametrize("counter,key,expected", KAT)
def test_philox4x32_10_known_answers(counter, key, expected):
    out = philox4x32(np.array(counter, dtype=np.uint32).reshape(4, 1), key)
    assert tuple(int(v) for v in out[:, 0]) == expected


def test_philox_vectorised_over_counters_and_keys():
    counters = np.array([c for c, _, _ in KAT], dtype=np.uint32).T
    keys = np.array([k for _, k, _ in KAT], dtype=np.uint32).T
    out = philox4x32(counters, keys)
    assert [tuple(int(v) for v in col) for col in out.T] == [e for _, _, e in KAT]
    assert counters[0, 1] == 0xFFFFFFFF  # inputs untouched


# -- an independent, deliberately plain scalar implementation -------------------------------------------------
M32 = 0xFFFFFFFF


def scalar_philox(ctr, key):
    c, k = list(ctr), list(key)
    for r in range(10):
        if r:
            k = [(k[0] + 0x9E3779B9) & M32, (k[1] + 0xBB67AE85) & M32]
        hi_lo0 = c[0] * 0xD2511F53
        hi_lo1 = c[2] * 0xCD9E8D57
        c = [(hi_lo1 >> 32) ^ c[1] ^ k[0], hi_lo1 & M32, (hi_lo0 >> 32) ^ c[3] ^ k[1], hi_lo0 & M32]
    return c


def f32(x: float) -> float:
    return struct.unpack("f", struct.pack("f", x))[0]


def scalar_randn(seed: int, n: int, offset: int = 0) -> list[float]:
    """A1111's rng_philox layout written out per element: counter (offset, 0, i, 0), key = the seed's two words,
    Box-Muller on words 0 and 1 with curand's float32 constants (A1111 evaluates it in float64)."""
    inv, inv_2pi = f32(2.3283064e-10), f32(2.3283064e-10 * 6.2831855)
    key = (seed & M32, (seed >> 32) & M32)
    out = []
    for i in range(n):
        x, y, _, _ = scalar_philox((offset, 0, i, 0), key)
        u = x * inv + inv / 2
        v = y * inv_2pi + inv_2pi / 2
        out.append(f32(math.sqrt(-2.0 * math.log(u)) * math.sin(v)))
    return out


@pytest.mark.parametrize("seed", [0, 1, 1234, 31337, 4294967294, 4294967294 + 31337, 2 ** 63 + 5])
def test_nv_randn_equals_the_scalar_implementation(seed):
    g = PhiloxGenerator(seed)
    first, second = g.randn((2, 3, 5)), g.randn((7,))
    assert first.dtype == np.float32 and first.shape == (2, 3, 5)
    np.testing.assert_allclose(first.ravel(), scalar_randn(seed, 30), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(second, scalar_randn(seed, 7, offset=1), rtol=1e-6, atol=1e-7)  # offset moves by 1


def test_nv_randn_matches_a1111_quoted_values():
    """rng_philox.py's docstring: Generator(seed=0).randn((3, 4)). Those printed digits are the exact-math
    values; A1111's code (float32 2*pi constant, as curand) lands within 3e-7 of them, as does ours."""
    quoted = np.array([[-0.92466259, -0.42534415, -2.6438457, 0.14518388],
                       [-0.12086647, -0.57972564, -0.62285122, -0.32838709],
                       [-1.07454231, -0.36314407, -1.67105067, 2.26550497]])
    got = PhiloxGenerator(0).randn((3, 4))
    assert np.abs(got - quoted).max() < 3e-7
    assert not np.array_equal(PhiloxGenerator(1).randn((3, 4)), got)


def test_seed_key_is_low_word_then_high_word():
    assert seed_key(0x0000000500000007) == (7, 5)
    assert seed_key(-1) == (M32, M32)


def test_nv_noise_is_standard_normal():
    x = PhiloxGenerator(99).randn((200_000,))
    assert abs(float(x.mean())) < 0.01 and abs(float(x.std()) - 1) < 0.01
    assert np.isfinite(x).all()


# -- sources --------------------------------------------------------------------------------------------------
def test_sources_map_as_documented():
    assert NoiseSource.for_rng("NV", "cpu").is_nv and NoiseSource.for_rng("NV", "cuda").is_nv
    assert NoiseSource.for_rng("GPU", "cpu").is_nv and NoiseSource.for_rng("GPU", "mps").is_nv
    assert NoiseSource.for_rng("GPU", "cuda") == NoiseSource(torch.device("cuda"))
    assert NoiseSource.for_rng("CPU", "cuda") == NoiseSource(torch.device("cpu"))
    assert rng_device_for("CPU", "mps") == torch.device("cpu")
    with pytest.raises(ValueError, match="unknown RNG source"):
        NoiseSource.for_rng("Philox", "cpu")


@pytest.mark.parametrize("source", ["GPU", "NV"])
def test_image_rng_off_cuda_draws_nv_noise(source):
    rng = ImageRNG((4, 6, 5), [42, 43], source=source)
    first, nxt = rng.first(), rng.next()
    for i, seed in enumerate([42, 43]):
        g = PhiloxGenerator(seed)
        assert torch.equal(first[i], torch.from_numpy(g.randn((4, 6, 5))))
        assert torch.equal(nxt[i], torch.from_numpy(g.randn((4, 6, 5))))


def test_cpu_source_is_torch_cpu_generator():
    rng = ImageRNG((4, 6, 5), [42], source="CPU")
    assert torch.equal(rng.first()[0], torch.randn((4, 6, 5), generator=torch.Generator().manual_seed(42)))


def test_ensd_reseeds_nv_generators():
    rng = ImageRNG((3, 4), [10], source="NV", eta_noise_seed_delta=31337)
    first, nxt = rng.first(), rng.next()
    assert torch.equal(first[0], torch.from_numpy(PhiloxGenerator(10).randn((3, 4))))
    assert torch.equal(nxt[0], torch.from_numpy(PhiloxGenerator(10 + 31337).randn((3, 4))))


def test_brownian_noise_follows_the_source():
    """torchsde's normals come from a freshly seeded generator of the chosen source (A1111's randn_local)."""
    x = torch.zeros(2, 3, 4)
    bounds = torch.tensor(0.03), torch.tensor(14.6)
    nv = BrownianTreeNoiseSampler(x, *bounds, [1, 2], NoiseSource(None))
    cpu = BrownianTreeNoiseSampler(x, *bounds, [1, 2], "cpu")
    single = BrownianTreeNoiseSampler(x[:1], *bounds, [2], NoiseSource(None))
    a, b = torch.tensor(10.0), torch.tensor(5.0)
    n = nv(a, b)
    assert torch.allclose(n[1:], single(a, b)) and not torch.allclose(n, cpu(a, b))
    # The tree's root increment W(t1) - W(t0) is the first NV draw of torchsde's first derived seed.
    from torchsde._brownian import brownian_interval as bi
    from creationmix.sampling.rng import _brownian_rng
    with _brownian_rng(NoiseSource(None)):
        drawn = bi._randn((3, 4), torch.float32, torch.device("cpu"), 7)
    assert torch.equal(drawn, torch.from_numpy(PhiloxGenerator(7).randn((3, 4))))
    assert not torch.equal(bi._randn((3, 4), torch.float32, torch.device("cpu"), 7), drawn)  # stock outside


# -- CUDA (lent GPU only) ---------------------------------------------------------------------------------------
def _resident_threads() -> int:
    props = torch.cuda.get_device_properties(0)
    # 1536 (consumer Ampere/Ada) is the smallest per-SM thread count of recent GPUs: a safe lower bound.
    return props.multi_processor_count * getattr(props, "max_threads_per_multi_processor", 1536)


@pytest.mark.gpu
def test_nv_equals_cuda_randn_below_the_thread_threshold():
    """Where every element gets its own CUDA thread (numel <= SMs x threads per SM), CUDA's randn is A1111's
    layout; Box-Muller on the GPU uses float32 intrinsics, so equality is to a few float32 ulps."""
    n = min(_resident_threads(), 4 * 132 * 84)
    for seed in (0, 1234, 3518116526):
        g = torch.Generator("cuda").manual_seed(seed)
        nv = PhiloxGenerator(seed)
        for shape in ((n,), (4, 8, 8)):
            cuda = torch.randn(shape, device="cuda", generator=g).cpu().numpy()
            ours = nv.randn(shape)
            assert np.abs(cuda - ours).max() < 1e-4 and np.abs(cuda - ours).mean() < 1e-6


@pytest.mark.gpu
def test_image_rng_gpu_source_on_cuda_vs_nv_on_cpu():
    shape = (4, 16, 16)
    cuda = ImageRNG(shape, [77, 78], device="cuda", source="GPU")
    cpu = ImageRNG(shape, [77, 78], device="cpu", source="GPU")
    for _ in range(3):
        a, b = cuda.next().cpu(), cpu.next()  # first noise, then ancestral noise
        assert (a - b).abs().max().item() < 1e-4
