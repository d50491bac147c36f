"""LoRA switching costs on the tiny checkpoint (CPU), medians of repeats in one run.

`python bench/lora.py [--repeats N]` times, through LoraManager.activate:
  strength change   the same LoRA at a new weight (goal: <= 10 ms and <= 5 % of a new load)
  add cached        a second LoRA that is already loaded in the pipeline
  new load          a LoRA file never seen before (read + validate + convert + inject + switch)
  deactivate        back to no LoRA (adapters stay cached)
  unload all        every adapter and peft wrapper removed
and prints the strength-change / new-load ratio.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # lora_fixtures: the kohya writer the tests use

import torch  # noqa: E402

from creationmix.lora import LoraLibrary, LoraManager, LoraRequest  # noqa: E402
from creationmix.models.loader import load_checkpoint  # noqa: E402
from creationmix.models.tiny import write_tiny_checkpoint  # noqa: E402
from lora_fixtures import kohya_lora, write_lora  # noqa: E402


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=15)
    args = ap.parse_args()
    n = args.repeats

    tmp = Path(tempfile.mkdtemp(prefix="cm-lora-bench-"))
    ckpt = write_tiny_checkpoint(tmp / "models" / "Stable-diffusion" / "tiny.safetensors")
    model = load_checkpoint(ckpt, device="cpu", dtype=torch.float32)
    unet, te = model.pipe.unet, model.pipe.text_encoder
    lora_dir = tmp / "models" / "Lora"
    for name, seed in (("a", 1), ("b", 2)):
        write_lora(lora_dir / f"{name}.safetensors", kohya_lora(unet, te, seed=seed))
    for i in range(n + 1):  # one fresh file per "new load" repeat (+1 warm-up)
        write_lora(lora_dir / "new" / f"n{i}.safetensors", kohya_lora(unet, te, seed=100 + i))
    mgr = LoraManager(model.pipe, LoraLibrary([lora_dir]), max_cached=n + 8)

    mgr.activate([LoraRequest("a", 1.0)])
    mgr.activate([LoraRequest("a", 1.0), LoraRequest("b", 1.0)])  # both cached from here on
    mgr.activate([LoraRequest("a", 1.0)])

    results: dict[str, list[float]] = {k: [] for k in
                                       ("strength change", "add cached", "new load", "deactivate", "unload all")}
    loads_before = mgr.load_count
    for i in range(n):
        w = 0.3 + 0.05 * i
        results["strength change"].append(timed(lambda: mgr.activate([LoraRequest("a", w, w / 2)])))
    assert mgr.load_count == loads_before, "a strength change reloaded a file"
    for _ in range(n):
        mgr.activate([LoraRequest("a", 0.8)])
        results["add cached"].append(timed(lambda: mgr.activate([LoraRequest("a", 0.8), LoraRequest("b", 0.6)])))
    assert mgr.load_count == loads_before, "adding a cached LoRA reloaded a file"
    mgr.activate([LoraRequest("new/n0", 1.0)])  # warm-up of the load path
    for i in range(1, n + 1):
        mgr.activate([LoraRequest("a", 0.8)])
        results["new load"].append(timed(lambda: mgr.activate([LoraRequest("a", 0.8), LoraRequest(f"new/n{i}", 1.0)])))
    for _ in range(n):
        mgr.activate([LoraRequest("a", 0.8)])
        results["deactivate"].append(timed(lambda: mgr.activate([])))
    for _ in range(max(3, n // 3)):
        mgr.activate([LoraRequest("a", 0.8), LoraRequest("b", 0.5)])
        results["unload all"].append(timed(mgr.unload_all))

    print(f"LoRA bench, tiny checkpoint, CPU, torch threads {torch.get_num_threads()}, {n} repeats (median, min):")
    med = {}
    for k, v in results.items():
        med[k] = statistics.median(v)
        print(f"  {k:16s} {med[k] * 1e3:9.3f} ms   (min {min(v) * 1e3:.3f} ms)")
    ratio = med["strength change"] / med["new load"]
    ok = med["strength change"] <= 0.010 and ratio <= 0.05
    print(f"strength change / new load = {ratio * 100:.2f} %  (goal <= 10 ms and <= 5 %: {'met' if ok else 'NOT met'})")


if __name__ == "__main__":
    main()
