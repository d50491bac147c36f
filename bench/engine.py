"""Engine overhead: our A1111-style sampler loop vs diffusers' StableDiffusionPipeline, interleaved in one run.

Tiny checkpoint (CPU): `python bench/engine.py` prints the time ratio ours/diffusers (goal <= 1.0) and the
peak RSS. With `--checkpoint FILE [--vae FILE]` on a CUDA machine it times the documented CreationMix recipe
(672x1056, DPM++ 2M Karras, 30 steps, hires x1.6, 20 hires steps) with a first pass / hires / decode split.
"""
from __future__ import annotations

import argparse
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from creationmix.engine import Engine  # noqa: E402
from creationmix.params import GenerationParams  # noqa: E402
from creationmix.paths import Folders  # noqa: E402


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench_tiny(repeats: int, size: int, steps: int) -> None:
    from diffusers import DPMSolverMultistepScheduler

    from creationmix.models.tiny import write_tiny_checkpoint

    tmp = Path(tempfile.mkdtemp())
    folders = Folders(tmp)
    folders.ensure()
    write_tiny_checkpoint(folders.checkpoint_dirs[0] / "tiny.safetensors")
    engine = Engine(folders, device="cpu", precision="fp32")
    params = GenerationParams(prompt="1girl, solo", negative_prompt="worst quality", steps=steps,
                              sampler="DPM++ 2M Karras", cfg_scale=7, seed=1, width=size, height=size)
    model = engine.load()
    pipe = model.pipe
    pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config, use_karras_sigmas=True)
    pipe.set_progress_bar_config(disable=True)

    def ours():
        engine.generate(params, save=False)

    def theirs():
        pipe(params.prompt, negative_prompt=params.negative_prompt, num_inference_steps=steps, guidance_scale=7,
             width=size, height=size, generator=torch.Generator().manual_seed(1), output_type="pil")

    ours(), theirs()  # warm-up (caches, allocator)
    t_ours, t_theirs = [], []
    for _ in range(repeats):
        for fn, acc in ((ours, t_ours), (theirs, t_theirs)):
            start = time.perf_counter()
            fn()
            acc.append(time.perf_counter() - start)
    mo, mt = statistics.median(t_ours), statistics.median(t_theirs)
    print(f"tiny checkpoint, {size}x{size}, {steps} steps, CPU, median of {repeats}:")
    print(f"  ours      {mo * 1000:8.1f} ms")
    print(f"  diffusers {mt * 1000:8.1f} ms")
    print(f"  ratio ours/diffusers = {mo / mt:.3f}  (goal <= 1.0)")
    print(f"  peak RSS {peak_rss_mb():.0f} MB")


def bench_recipe(checkpoint: Path, vae: Path | None, repeats: int) -> None:
    if not torch.cuda.is_available():
        sys.exit("--checkpoint timing needs a CUDA GPU")
    tmp = Path(tempfile.mkdtemp())
    folders = Folders(tmp)
    folders.ensure()
    (folders.checkpoint_dirs[0] / checkpoint.name).symlink_to(checkpoint.resolve())
    vae_name = "Automatic"
    if vae:
        (folders.vae_dirs[0] / vae.name).symlink_to(vae.resolve())
        vae_name = vae.name
    engine = Engine(folders)
    params = GenerationParams(prompt="1girl", negative_prompt="(worst quality:2.0), (low quality:2.0)", steps=30,
                              sampler="DPM++ 2M Karras", cfg_scale=9.5, seed=106059479, width=672, height=1056,
                              clip_skip=2, enable_hires=True, hires_scale=1.6, hires_steps=20,
                              hires_upscaler="Latent", denoising_strength=0.6, vae=vae_name)
    engine.generate(params, save=False)
    rows = []
    for _ in range(repeats):
        torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        engine.generate(params, save=False)
        rows.append((time.perf_counter() - start, dict(engine.timings)))
    total = statistics.median(r[0] for r in rows)
    print(f"documented recipe on {torch.cuda.get_device_name()}: {total:.2f} s/image (median of {repeats})")
    for k in ("first", "hires", "decode"):
        print(f"  {k:6s} {statistics.median(r[1][k] for r in rows):.2f} s")
    print(f"  peak VRAM {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--checkpoint", type=Path)
    ap.add_argument("--vae", type=Path)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=20)
    a = ap.parse_args()
    if a.checkpoint:
        bench_recipe(a.checkpoint, a.vae, a.repeats)
    else:
        bench_tiny(a.repeats, a.size, a.steps)


if __name__ == "__main__":
    main()
