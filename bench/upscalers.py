"""Time and memory of the hires upscale step (A1111's tiled upscale_with_model) on CPU, random weights.

`python bench/upscalers.py` times, each case in its own process (so the peak RSS is that case's):
tiny RRDB and Compact models on a 512x512 image (tiled vs whole image), the real-size RRDB (23 blocks, nf 64,
as RealESRGAN_x4plus / 4x-UltraSharp) on one 192 px tile, and the real-size Compact (32 convs, nf 64, as
realesr-general-x4v3) on 536x844, the first pass of a 1072x1688 hires target. `--full` adds the real RRDB on the
whole 536x844 (15 tiles: minutes on 2 cores). Prints seconds, tiles, peak RSS above the baseline.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CASES = {
    "tiny RRDB (nb 2, nf 8) 512x512 tiled": ("rrdb", dict(nb=2, nf=8), (512, 512), 192),
    "tiny RRDB (nb 2, nf 8) 512x512 whole": ("rrdb", dict(nb=2, nf=8), (512, 512), 0),
    "tiny Compact (4 convs, nf 8) 512x512 tiled": ("compact", dict(num_conv=4, num_feat=8), (512, 512), 192),
    "tiny Compact (4 convs, nf 8) 512x512 whole": ("compact", dict(num_conv=4, num_feat=8), (512, 512), 0),
    "real RRDB (nb 23, nf 64) one 192 tile": ("rrdb", dict(nb=23, nf=64), (192, 192), 192),
    "real Compact (32 convs, nf 64) 536x844 tiled": ("compact", dict(num_conv=32, num_feat=64), (536, 844), 192),
}
FULL = {"real RRDB (nb 23, nf 64) 536x844 tiled": ("rrdb", dict(nb=23, nf=64), (536, 844), 192)}


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_case(kind: str, kw: dict, size: tuple[int, int], tile: int) -> dict:
    import numpy as np
    import torch
    from PIL import Image

    from creationmix.upscalers.archs import RRDBNet, SRVGGNetCompact
    from creationmix.upscalers.pixels import model_runner, split_grid, upscale_with_model

    torch.manual_seed(0)
    net = RRDBNet(**kw) if kind == "rrdb" else SRVGGNetCompact(**kw)
    net.eval().requires_grad_(False)
    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    run = model_runner(net, torch.device("cpu"), torch.float32)
    base = rss_mb()
    tiles = split_grid(img, tile, tile, 8).tile_count if tile else 1
    start = time.perf_counter()
    out = upscale_with_model(run, img, tile_size=tile, tile_overlap=8)
    secs = time.perf_counter() - start
    return {"seconds": secs, "tiles": tiles, "out": list(out.size), "peak_rss_mb": rss_mb() - base,
            "params_m": sum(p.numel() for p in net.parameters()) / 1e6}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--full", action="store_true", help="also the real RRDB on 536x844 (slow on CPU)")
    ap.add_argument("--case", help=argparse.SUPPRESS)
    args = ap.parse_args()
    cases = {**CASES, **(FULL if args.full else {})}
    if args.case:
        print(json.dumps(run_case(*cases[args.case])))
        return
    import torch
    print(f"CPU, torch {torch.__version__}, {torch.get_num_threads()} threads; 4x models, tile overlap 8")
    print(f"{'case':48s} {'params':>7s} {'tiles':>5s} {'out':>10s} {'s':>8s} {'s/tile':>7s} {'peak MB':>8s}")
    for name in cases:
        argv = [sys.executable, __file__, "--case", name] + (["--full"] if args.full else [])
        r = json.loads(subprocess.run(argv, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1])
        print(f"{name:48s} {r['params_m']:6.2f}M {r['tiles']:5d} {'x'.join(map(str, r['out'])):>10s} "
              f"{r['seconds']:8.2f} {r['seconds'] / r['tiles']:7.2f} {r['peak_rss_mb']:8.0f}")


if __name__ == "__main__":
    main()
