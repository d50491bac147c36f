"""LoRAs per minute for the previews job on Ray: 1 vs 2 CPU workers on the tiny model (in one run), or one
worker per GPU on a cluster.

    python bench/previews_ray.py [--loras 8] [--workers 1,2]          # local Ray, CPU workers
    python bench/previews_ray.py --address auto --gpu --loras 64      # an existing cluster, one actor per GPU

Each run renders the same LoRAs into a fresh copy of the library (no resume), so the figures compare like with
like. On a 2-core machine expect well under 2x for 2 workers: both share the same cores.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from creationmix.compose import ServiceOptions, build_service  # noqa: E402
from creationmix.presets_resolve import load_preset_by_id  # noqa: E402
from creationmix.previews.job import run_previews  # noqa: E402
from creationmix.previews.ray_runner import RayRenderer, RaySettings, local_ray_init_kwargs  # noqa: E402

SMALL = dict(steps=4, width=64, height=64, enable_hires=False, sampler="Euler")


def make_library(root: Path, count: int) -> Path:
    from creationmix.models.tiny import write_tiny_checkpoint
    from lora_fixtures import kohya_lora, write_lora
    import torch

    from creationmix.models.loader import load_checkpoint
    ckpt = write_tiny_checkpoint(root / "models" / "Stable-diffusion" / "tiny.safetensors")
    model = load_checkpoint(ckpt, device="cpu", dtype=torch.float32)
    for i in range(count):
        write_lora(root / "models" / "Lora" / f"lora{i:03d}.safetensors",
                   kohya_lora(model.pipe.unet, model.pipe.text_encoder, seed=i, conv=False))
    return root


def one_run(src: Path, settings: RaySettings) -> tuple[float, int, int]:
    data = Path(tempfile.mkdtemp(prefix="bench-ray-"))
    shutil.copytree(src, data, dirs_exist_ok=True)
    service = build_service(ServiceOptions(data_dir=data, device="cpu" if settings.cpu_workers else None))
    renderer = RayRenderer(service, settings)
    start = time.perf_counter()
    report = run_previews(None, load_preset_by_id("lora-preview"), overrides=SMALL, renderer=renderer)
    seconds = time.perf_counter() - start
    shutil.rmtree(data, ignore_errors=True)
    return seconds, len(report.done), renderer.read_ahead


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--loras", type=int, default=8)
    ap.add_argument("--workers", default="1,2", help="CPU worker counts to compare")
    ap.add_argument("--address", default=None, help="an existing Ray cluster ('auto', 'ray://host:port')")
    ap.add_argument("--gpu", action="store_true", help="one worker per GPU of the cluster")
    args = ap.parse_args()
    import ray

    src = make_library(Path(tempfile.mkdtemp(prefix="bench-ray-src-")), args.loras)
    counts = [0] if args.gpu else [int(n) for n in args.workers.split(",")]
    if args.address:
        ray.init(address=args.address)
    else:
        ray.init(**local_ray_init_kwargs(max(counts)))
    print(f"load average {os.getloadavg()[0]:.1f}, {os.cpu_count()} CPUs, {args.loras} LoRAs, 64x64, 4 steps")
    rates = {}
    for n in counts:
        seconds, done, ahead = one_run(src, RaySettings(cpu_workers=n))
        rates[n] = 60.0 * done / seconds
        label = "one per GPU" if n == 0 else f"{n} CPU worker(s)"
        print(f"{label}: {done} previews in {seconds:.1f} s = {rates[n]:.1f} LoRAs/min; {ahead} of them read ahead "
              f"by their worker while it sampled the one before")
    if len(counts) > 1:
        print(f"ratio {counts[-1]} vs {counts[0]} workers: {rates[counts[-1]] / rates[counts[0]]:.2f}x")
    ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
