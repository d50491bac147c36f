"""LoRA previewing cost on the tiny checkpoint: a strength sweep and a library run vs plain txt2img.

`python bench/previews.py [--size 64] [--steps 4] [--repeats 3]` prints, for a 6-strength x 2-seed sweep and a
5-LoRA library preview run: wall time, per-image cost relative to one txt2img of the same size and steps, and
what the caches saved: checkpoint loads (must be 1), LoRA file loads (must equal the distinct LoRAs) and prompt
encodings (must equal the distinct prompt texts per text-encoder state: a LoRA that touches the text encoder
makes the same text a new encoding, exactly once).
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
sys.path.insert(0, str(ROOT / "tests"))

import torch  # noqa: E402

from creationmix.engine import Engine  # noqa: E402
from creationmix.lora.tags import extract_prompt_loras  # noqa: E402
from creationmix.models.loader import load_checkpoint  # noqa: E402
from creationmix.models.tiny import write_tiny_checkpoint  # noqa: E402
from creationmix.params import GenerationParams  # noqa: E402
from creationmix.paths import Folders  # noqa: E402
from creationmix.presets_resolve import load_preset_by_id  # noqa: E402
from creationmix.xyz.plot import WorkCounter, plan_strength_sweep, run_plot  # noqa: E402
from creationmix.previews.job import run_previews  # noqa: E402
from lora_fixtures import kohya_lora, write_lora  # noqa: E402

N_LORAS = 5


def setup(tmp: Path) -> Folders:
    folders = Folders(tmp)
    folders.ensure()
    ckpt = write_tiny_checkpoint(folders.checkpoint_dirs[0] / "tiny.safetensors")
    model = load_checkpoint(ckpt, device="cpu", dtype=torch.float32)
    for i in range(N_LORAS):
        write_lora(folders.lora_dirs[0] / f"lora{i}.safetensors",
                   kohya_lora(model.pipe.unet, model.pipe.text_encoder, seed=i, conv=False))
    return folders


def expected_encodings(param_list: list[GenerationParams]) -> int:
    """Distinct (text, text-encoder LoRA state) pairs, prompt and negative each."""
    seen = set()
    for p in param_list:
        pos, neg, reqs = extract_prompt_loras(p.prompt, p.negative_prompt)
        state = tuple((r.name, r.resolved().te_weight) for r in reqs if r.resolved().te_weight != 0)
        seen.add((pos.rstrip(), state))
        seen.add((neg.rstrip(), state))
    return len(seen)


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    folders = setup(Path(tempfile.mkdtemp(prefix="cm-bench-previews-")))
    small = dict(steps=args.steps, width=args.size, height=args.size, sampler="Euler", enable_hires=False)
    base = GenerationParams(prompt="1girl, solo, kimono", negative_prompt="lowres, worst quality", seed=7,
                            cfg_scale=7, **small)

    engine = Engine(folders, device="cpu", precision="fp32")
    engine.generate(base, save=False)  # load + warm-up
    singles = [timed(lambda: engine.generate(base.replace(seed=100 + i), save=False))[0]
               for i in range(args.repeats)]
    single = statistics.median(singles)
    print(f"tiny checkpoint, {args.size}x{args.size}, {args.steps} steps, Euler, CPU "
          f"({torch.get_num_threads()} threads)")
    print(f"  single txt2img (no LoRA, warm)      {single * 1000:8.1f} ms / image  (median of {args.repeats})")

    # -- strength sweep: a fresh engine, so the checkpoint and LoRA loads are part of the job ----------------------
    engine = Engine(folders, device="cpu", precision="fp32")
    plan = plan_strength_sweep(base, "lora0", seeds=2, check_lora=engine.lora_library.resolve)
    with WorkCounter(engine) as work:
        t, res = timed(lambda: run_plot(engine, plan, save=False))
    n = sum(im is not None for im in res.images)
    want = expected_encodings([c.params for c in plan.cells])
    print(f"  sweep 6 strengths x 2 seeds: {n} images in {t:.2f} s = {t / n * 1000:.1f} ms / image "
          f"= {t / n / single:.2f}x a single txt2img (incl. checkpoint load); {len(plan.runs)} engine calls")
    print(f"    checkpoint loads {work.checkpoint_loads} (want 1), LoRA loads {work.lora_loads} (want 1), "
          f"prompt encodings {work.encodings} (want {want}: distinct text x text-encoder state), "
          f"text-encoder passes {work.te_forwards}")
    with WorkCounter(engine) as warm:
        t2, _ = timed(lambda: run_plot(engine, plan_strength_sweep(base.replace(seed=50), "lora0", seeds=2),
                                       save=False))
    print(f"    warm re-run: {t2 / n * 1000:.1f} ms / image = {t2 / n / single:.2f}x a single txt2img; "
          f"LoRA loads {warm.lora_loads}, encodings {warm.encodings}")

    # -- library previews: 5 LoRAs through the lora-preview card --------------------------------------------------
    engine = Engine(folders, device="cpu", precision="fp32")
    preset = load_preset_by_id("lora-preview")
    with WorkCounter(engine) as work:
        t, report = timed(lambda: run_previews(engine, preset, overrides=small, overwrite=True,
                                               sheet_dir=folders.outputs_dir / "lora-previews"))
    n = len(report.done)
    infos = list(engine.lora_library)
    from creationmix.previews.job import preview_params
    want = expected_encodings([preview_params(preset, i, overrides=small) for i in infos])
    print(f"  library previews, {N_LORAS} LoRAs: {n} done, {len(report.failed)} failed in {t:.2f} s = "
          f"{t / max(n, 1) * 1000:.1f} ms / image = {t / max(n, 1) / single:.2f}x a single txt2img "
          f"(incl. checkpoint load, contact sheet)")
    print(f"    checkpoint loads {work.checkpoint_loads} (want 1), LoRA loads {work.lora_loads} (want {N_LORAS}), "
          f"prompt encodings {work.encodings} (want {want}), text-encoder passes {work.te_forwards}")
    card = preview_params(preset, infos[0], overrides=small)
    engine.generate(card, save=False)
    card_single = statistics.median(timed(lambda: engine.generate(card, save=False))[0] for _ in range(args.repeats))
    print(f"    the card's own txt2img (long prompt + LoRA, warm): {card_single * 1000:.1f} ms / image")
    with WorkCounter(engine) as warm:
        t2, _ = timed(lambda: run_previews(engine, preset, overrides=small, overwrite=True))
    print(f"    warm re-run (checkpoint and LoRAs cached): {t2 / max(n, 1) * 1000:.1f} ms / image = "
          f"{t2 / max(n, 1) / card_single:.2f}x the card's txt2img; LoRA loads {warm.lora_loads}, "
          f"encodings {warm.encodings}")
    ok = work.checkpoint_loads == 1 and work.lora_loads == N_LORAS and work.encodings == want
    print("  OK" if ok else "  MISMATCH")


if __name__ == "__main__":
    main()
