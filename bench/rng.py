"""NV noise cost on the CPU: the noise of the documented recipe (672x1056, hires x1.6) per image.

`python bench/rng.py` times the first-pass noise (latent 4x132x84) plus the hires re-noise (4x211x134) drawn
with RNG "NV" (what RNG "GPU" draws off CUDA) and with torch's CPU generator (RNG "CPU"), interleaved, and
prints the NV figure (target: well under a second) and the ratio NV / torch CPU randn. With `--variation` the
NV draw includes a variation seed at strength 0.5 (twice the noise plus A1111's slerp). With `--sde` it also
times the Brownian-tree noise of a 20-step SDE hires pass (torchsde draws a fresh generator per tree node).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from creationmix.params import GenerationParams  # noqa: E402
from creationmix.sampling import BrownianTreeNoiseSampler, ImageRNG, NoiseSource, get_sigmas_karras  # noqa: E402


def shapes(width: int, height: int, scale: float) -> list[tuple[int, int, int]]:
    p = GenerationParams(width=width, height=height, enable_hires=True, hires_scale=scale)
    hw, hh = p.hires_size
    return [(4, height // 8, width // 8), (4, hh // 8, hw // 8)]


def draw(source: str, shapes_, seed: int, strength: float) -> None:
    for shape in shapes_:
        ImageRNG(shape, [seed], source=source, subseeds=[seed + 1], subseed_strength=strength).first()


def brownian(source, shape, steps: int = 20) -> float:
    sigmas = get_sigmas_karras(steps, 0.0292, 14.6146)
    t = time.perf_counter()
    ns = BrownianTreeNoiseSampler(torch.zeros(1, *shape), sigmas[sigmas > 0].min(), sigmas.max(), [7], source)
    for i in range(steps - 1):  # the last step goes to sigma 0 and draws no noise
        ns(sigmas[i], sigmas[i + 1])
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--width", type=int, default=672)
    ap.add_argument("--height", type=int, default=1056)
    ap.add_argument("--hires-scale", type=float, default=1.6)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--variation", action="store_true")
    ap.add_argument("--sde", action="store_true")
    args = ap.parse_args()
    sh = shapes(args.width, args.height, args.hires_scale)
    strength = 0.5 if args.variation else 0.0
    draw("NV", sh, 0, strength)  # warm-up
    draw("CPU", sh, 0, strength)
    nv, cpu = [], []
    for i in range(args.repeats):
        t = time.perf_counter()
        draw("NV", sh, 1000 + i, strength)
        nv.append(time.perf_counter() - t)
        t = time.perf_counter()
        draw("CPU", sh, 1000 + i, strength)
        cpu.append(time.perf_counter() - t)
    n_nv, n_cpu = statistics.median(nv), statistics.median(cpu)
    numel = sum(a * b * c for a, b, c in sh)
    print(f"noise for {args.width}x{args.height} + hires x{args.hires_scale} (latents {sh[0]} and {sh[1]}, "
          f"{numel} numbers{', variation 0.5' if args.variation else ''}), median of {args.repeats}:")
    print(f"  NV (Philox, CPU):   {n_nv * 1000:8.1f} ms per image")
    print(f"  torch CPU randn:    {n_cpu * 1000:8.1f} ms per image")
    print(f"  ratio NV / CPU:     {n_nv / n_cpu:8.2f}")
    if args.sde:
        b_nv, b_cpu = brownian(NoiseSource(None), sh[1]), brownian("cpu", sh[1])
        print(f"Brownian noise, 20-step SDE pass at {sh[1]}: NV {b_nv:.2f} s, torch CPU {b_cpu:.2f} s, "
              f"ratio {b_nv / b_cpu:.2f}")


if __name__ == "__main__":
    main()
