"""LoRA previewing cost on the tiny checkpoint: a strength sweep and a library run vs plain txt2img.

`python bench/previews.py [--size 64] [--steps 4] [--repeats 3]` prints, for a 6-strength x 2-seed sweep and a
5-LoRA library preview run started on an engine with the checkpoint loaded (as in the app): wall time, per-image
cost relative to one warm txt2img of the same request, and what the caches saved: LoRA file loads (must equal
the distinct LoRAs), LoRAs read ahead on the background thread, and prompt encodings (must equal the distinct
prompt texts per text-encoder state: a LoRA that touches the text encoder makes the same text a new encoding,
exactly once).
"""
from __future__ import annotations

import argparse
import os
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
N_PROBES = 3  # LoRAs outside the job, each made by hand with one txt2img: the "as a user would" baseline
JOB_NAMES = [f"lora{i}" for i in range(N_LORAS)]


def setup(tmp: Path) -> Folders:
    folders = Folders(tmp)
    folders.ensure()
    write_tiny_checkpoint(folders.checkpoint_dirs[0] / "tiny.safetensors")
    write_loras(folders, 0)
    return folders


def write_loras(folders: Folders, generation: int) -> None:
    """The library's 5 LoRA files, with new weights per `generation`: to an engine, each rewrite is 5 LoRAs it
    has never seen (new file key: read, checked, applied, and every prompt encoded again under it)."""
    model = load_checkpoint(folders.checkpoint_dirs[0] / "tiny.safetensors", device="cpu", dtype=torch.float32)
    names = JOB_NAMES + [f"probe{i}" for i in range(N_PROBES)]
    for i, name in enumerate(names):
        path = folders.lora_dirs[0] / f"{name}.safetensors"
        write_lora(path, kohya_lora(model.pipe.unet, model.pipe.text_encoder, seed=100 * generation + i, conv=False))
        ns = time.time_ns() + generation * 1_000_000_000  # a distinct mtime even on a coarse clock
        os.utime(path, ns=(ns, ns))


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


def fresh_engine(folders: Folders, base: GenerationParams) -> Engine:
    """An engine as the app has it when a job starts: checkpoint loaded and warm, no LoRA loaded yet."""
    engine = Engine(folders, device="cpu", precision="fp32")
    engine.generate(base.replace(prompt="warm-up", negative_prompt="warm-up negative", seed=1), save=False)
    return engine  # (other texts than the jobs': the encoding counts below are all the jobs' own)


def median_time(fn, repeats: int) -> float:
    fn()  # warm (LoRA loaded, prompt parsed, encodings cached: what the image itself costs)
    return statistics.median(timed(fn)[0] for _ in range(repeats))


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
    print(f"tiny checkpoint, {args.size}x{args.size}, {args.steps} steps, Euler, CPU "
          f"({torch.get_num_threads()} threads); jobs start on an engine with the checkpoint loaded, no LoRA")

    # -- strength sweep: 6 strengths x 2 seeds of one LoRA -----------------------------------------------------------
    engine = fresh_engine(folders, base)
    plan = plan_strength_sweep(base, "lora0", seeds=2, check_lora=engine.lora_library.resolve)
    one = plan.cells[-1].params.replace(batch_size=1, batch_count=1)
    with WorkCounter(engine) as work:
        t, res = timed(lambda: run_plot(engine, plan, save=False))
    n = sum(im is not None for im in res.images)
    single = median_time(lambda: engine.generate(one, save=False), args.repeats)
    want = expected_encodings([c.params for c in plan.cells])
    print(f"  single txt2img of a sweep cell (its LoRA loaded, warm): {single * 1000:.1f} ms / image")
    print(f"  sweep 6 strengths x 2 seeds: {n} images in {t:.2f} s = {t / n * 1000:.1f} ms / image "
          f"= {t / n / single:.2f}x a single txt2img (target <= 1.00; LoRA load included); "
          f"{len(plan.runs)} engine calls (seeds batched)")
    print(f"    LoRA loads {work.lora_loads} (want 1), prompt encodings {work.encodings} (want {want}: distinct "
          f"text x text-encoder state), text-encoder passes {work.te_forwards}")
    ok_sweep = work.lora_loads == 1 and work.encodings == want

    # -- library previews: 5 LoRAs through the lora-preview card, each a new LoRA ------------------------------------
    preset = load_preset_by_id("lora-preview")
    engine = fresh_engine(folders, base)
    infos = [engine.lora_library.resolve(n) for n in JOB_NAMES]
    probes = [engine.lora_library.resolve(f"probe{i}") for i in range(N_PROBES)]
    from creationmix.previews.job import preview_params
    want = expected_encodings([preview_params(preset, i, overrides=small) for i in infos])
    card = preview_params(preset, infos[0], overrides=small)

    def job():  # (seconds, PreviewReport)
        return timed(lambda: run_previews(engine, preset, overrides=small, overwrite=True, names=JOB_NAMES,
                                          sheet_dir=folders.outputs_dir / "lora-previews"))

    def by_hand() -> float:  # one txt2img of the card per LoRA it has never seen: read, applied, encoded, saved
        return statistics.median(timed(lambda: engine.generate(preview_params(preset, p, overrides=small),
                                                               save=True))[0] for p in probes)

    def card_encoding() -> float:  # LoRA loaded, its prompt not encoded yet under it: as any first txt2img
        engine.encoder._cache.clear()
        return timed(lambda: engine.generate(card, save=True))[0]

    with WorkCounter(engine) as work:
        t_first, report = job()
    n = len(report.done)
    loads, encodings, te_passes, hits = work.lora_loads, work.encodings, work.te_forwards, engine.loras.prefetch_hits
    # Interleaved (job on 5 never-seen LoRAs, then the baselines with them loaded) so the machine's drift hits
    # both sides of each ratio alike; the medians are of the per-round figures.
    per, enc, warm, hand = [t_first / n], [], [], [by_hand()]
    for generation in range(1, args.repeats + 2):
        enc.append(statistics.median(card_encoding() for _ in range(3)))
        warm.append(median_time(lambda: engine.generate(card, save=True), 2))
        if generation <= args.repeats:
            write_loras(folders, generation)
            hand.append(by_hand())
            per.append(job()[0] / n)
    per_m, enc_m, warm_m, hand_m = (statistics.median(x) for x in (per, enc, warm, hand))
    ratio = statistics.median(p / e for p, e in zip(per, enc))
    ratio_hand = statistics.median(p / h for p, h in zip(per, hand))
    print(f"  the card by hand, one txt2img per LoRA it has never seen (read, applied, encoded, PNG saved): "
          f"{hand_m * 1000:.1f} ms")
    print(f"  the card's own txt2img (long prompt + its LoRA loaded, PNG saved): {enc_m * 1000:.1f} ms encoding its "
          f"prompt under the LoRA (as any txt2img of a new text/LoRA does), {warm_m * 1000:.1f} ms warm (prompt "
          f"encodings cached)")
    print(f"  library previews, {N_LORAS} new LoRAs, {len(per)} rounds: {n} done, {len(report.failed)} failed, "
          f"{per_m * 1000:.1f} ms / image (first round {per[0] * 1000:.1f}) = {ratio:.2f}x the card's txt2img "
          f"encoding its prompt (target <= 1.00), {per_m / warm_m:.2f}x the warm one (every LoRA read + applied, "
          f"every prompt encoded under its LoRA, contact sheet included), {ratio_hand:.2f}x the card by hand")
    print(f"    first round: LoRA loads {loads} (want {N_LORAS}), read ahead in the background {hits} "
          f"(want {N_LORAS - 1}), prompt encodings {encodings} (want {want}), text-encoder passes {te_passes}")
    with WorkCounter(engine) as cached:
        t2, _ = timed(lambda: run_previews(engine, preset, overrides=small, overwrite=True, names=JOB_NAMES))
    print(f"    re-run with the LoRAs cached: {t2 / n * 1000:.1f} ms / image = {t2 / n / warm_m:.2f}x the warm "
          f"txt2img; LoRA loads {cached.lora_loads}")
    injected = _switch_ms(folders)
    print(f"    left on the generating thread per new LoRA (read ahead): applying it, {injected:.2f} ms")
    ok = ok_sweep and loads == N_LORAS and encodings == want
    print("  OK" if ok else "  MISMATCH")


def _switch_ms(folders: Folders) -> float:
    """What making a new, already read LoRA active costs on the generating thread (hooks pointed at it)."""
    from creationmix.lora.tags import LoraRequest
    engine = Engine(folders, device="cpu", precision="fp32")
    engine.load()
    m = engine.loras
    names = [f"lora{i}" for i in range(N_LORAS)]
    m.prefetch([LoraRequest(n, 1.0) for n in names])
    for fut in list(m._prefetched.values()):
        fut.result()
    start = time.perf_counter()
    for n in names:
        m.activate([LoraRequest(n, 1.0)])
    return (time.perf_counter() - start) / len(names) * 1000


if __name__ == "__main__":
    main()
