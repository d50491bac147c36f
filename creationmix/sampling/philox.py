"""NV noise: the normal numbers CUDA's `torch.randn` draws, computed on any device (A1111's RNG source "NV").

torch's CUDA generator is Philox4x32-10 (Salmon et al. 2011, the curand flavour) keyed by the 64-bit seed. For
a tensor of n elements, element i comes from the Philox block at counter (offset, 0, i, 0): its first two words
go through Box-Muller and the sine branch is kept; the other two words and the cosine branch are discarded.
Every draw moves the generator's offset on by one. That is A1111's layout (modules/rng_philox.py), and CUDA's
whenever every element gets its own GPU thread (see README: "Seeds on CPU and Mac").

Box-Muller is computed as A1111 computes it, so "NV" images match A1111's bit for bit: float32 constants,
float64 arithmetic (NumPy promotes uint32 x float32 to float64), rounded to float32 at the end. CUDA itself
uses float32 fast-math `__logf`/`__sinf`, so CUDA and NV agree to a few float32 ulps, not bitwise.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

PHILOX_M = (0xD2511F53, 0xCD9E8D57)  # round multipliers
PHILOX_W = (0x9E3779B9, 0xBB67AE85)  # Weyl key increments
ROUNDS = 10
_MASK32 = 0xFFFFFFFF
_MASK64 = (1 << 64) - 1

# A1111's float32 constants, kept as float32 values (then used in float64 arithmetic, as NumPy does there).
_INV32 = np.float64(np.float32(2.3283064e-10))
_INV32_HALF = np.float64(np.float32(2.3283064e-10) / np.float32(2))
_INV32_2PI = np.float64(np.float32(2.3283064e-10 * 6.2831855))
_INV32_2PI_HALF = np.float64(np.float32(2.3283064e-10 * 6.2831855) / np.float32(2))


def philox4x32(counter: np.ndarray, key: Sequence[int] | np.ndarray, rounds: int = ROUNDS) -> np.ndarray:
    """Philox4x32-R on a batch of counters: `counter` (4, N) uint32, `key` two uint32 words (scalars, or (2, N)).

    Returns a new (4, N) uint32 array; the input is not modified."""
    words = np.array(counter, dtype=np.uint64)  # a copy, worked on in place
    if isinstance(key, np.ndarray) and key.ndim == 2:
        k0, k1 = key[0].astype(np.uint64), key[1].astype(np.uint64)
    else:
        k0, k1 = np.uint64(int(key[0]) & _MASK32), np.uint64(int(key[1]) & _MASK32)
    _rounds(words, k0, k1, rounds)
    return words.astype(np.uint32)


def _rounds(words: np.ndarray, k0, k1, rounds: int) -> None:
    """The Philox rounds on (4, N) uint64 words holding 32-bit values, in place (products are exact in 64 bits;
    in-place ufuncs because this runs for every Brownian-tree draw of the SDE samplers)."""
    c0, c1, c2, c3 = words
    p0, p1 = np.empty_like(c0), np.empty_like(c0)
    m0, m1 = np.uint64(PHILOX_M[0]), np.uint64(PHILOX_M[1])
    w0, w1 = np.uint64(PHILOX_W[0]), np.uint64(PHILOX_W[1])
    mask, shift = np.uint64(_MASK32), np.uint64(32)
    for r in range(rounds):
        if r:
            k0, k1 = (k0 + w0) & mask, (k1 + w1) & mask
        np.multiply(c0, m0, out=p0)
        np.multiply(c2, m1, out=p1)
        # (hi(p1) ^ c1 ^ k0, lo(p1), hi(p0) ^ c3 ^ k1, lo(p0)); each old word is read before it is overwritten
        np.right_shift(p1, shift, out=c0)
        c0 ^= c1
        c0 ^= k0
        np.bitwise_and(p1, mask, out=c1)
        np.right_shift(p0, shift, out=c2)
        c2 ^= c3
        c2 ^= k1
        np.bitwise_and(p0, mask, out=c3)


def seed_key(seed: int) -> tuple[int, int]:
    """The Philox key of a torch seed: its 64 bits as (low word, high word)."""
    s = int(seed) & _MASK64
    return s & _MASK32, s >> 32


def box_muller(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The first (sine) normal of Box-Muller on two uint32 words, as float32."""
    u = x.astype(np.float64)
    u *= _INV32
    u += _INV32_HALF
    np.log(u, out=u)
    u *= -2.0
    np.sqrt(u, out=u)
    v = y.astype(np.float64)
    v *= _INV32_2PI
    v += _INV32_2PI_HALF
    np.sin(v, out=v)
    u *= v
    return u.astype(np.float32)


class PhiloxGenerator:
    """A seeded stream of CUDA-equivalent normal tensors: `randn(shape)` as `torch.randn(shape, device="cuda",
    generator=torch.Generator("cuda").manual_seed(seed))` and each later call on that generator."""

    def __init__(self, seed: int):
        self.seed = int(seed) & _MASK64
        self.offset = 0

    def randn(self, shape: Sequence[int]) -> np.ndarray:
        shape = tuple(int(s) for s in shape)
        n = int(np.prod(shape, dtype=np.int64))
        if n > 1 << 32:
            raise ValueError(f"NV noise draws at most 2**32 numbers at once, asked for {n}")
        words = np.zeros((4, n), dtype=np.uint64)
        words[0] = self.offset & _MASK32
        words[1] = (self.offset >> 32) & _MASK32
        words[2] = np.arange(n, dtype=np.uint64)
        self.offset += 1
        k0, k1 = seed_key(self.seed)
        _rounds(words, np.uint64(k0), np.uint64(k1), ROUNDS)
        return box_muller(words[0], words[1]).reshape(shape)
