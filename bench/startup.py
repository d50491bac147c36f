"""Cold start: a one-image CLI run vs diffusers' own pipeline, the UI's first HTTP 200, and import offenders.

`python bench/startup.py [--repeats 3] [--steps 4] [--size 64]` prints, all measured in this one run with fresh
processes (nothing warm but the OS file cache, which both sides share):
  (a) `python -m creationmix txt2img` of a tiny demo checkpoint;
  (b) a baseline process: import torch + diffusers, `StableDiffusionPipeline.from_single_file(path, config=...)`,
      the same steps and size, save one PNG;
  the ratio median(a) / median(b) (target <= 0.85), with (a) and (b) interleaved so machine load hits both;
  the time from `python app.py` on an empty data dir to its first HTTP 200 (target <= 5 s);
  `python -X importtime` top offenders for `txt2img --help`, `presets` and `pnginfo`.
The machine's load average is printed next to every figure: on a shared machine they are noisy.
"""
from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable

BASELINE = r"""
import sys, torch
from diffusers import StableDiffusionPipeline
path, cfg, out, steps, size = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
pipe = StableDiffusionPipeline.from_single_file(path, config=cfg, local_files_only=True, safety_checker=None,
                                                requires_safety_checker=False)
pipe.set_progress_bar_config(disable=True)
img = pipe("a cat", negative_prompt="", num_inference_steps=steps, height=size, width=size, guidance_scale=7.0,
           generator=torch.Generator().manual_seed(1)).images[0]
img.save(out)
"""


def load() -> str:
    return "load %.2f %.2f %.2f" % os.getloadavg()


def _env() -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False")
    return env


def timed(cmd: list[str], cwd: Path) -> float:
    t = time.perf_counter()
    r = subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True)
    dt = time.perf_counter() - t
    if r.returncode != 0:
        raise SystemExit(f"failed ({r.returncode}): {' '.join(cmd)}\n{r.stderr[-3000:]}")
    return dt


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ui_first_200(data_dir: Path, timeout: float = 300.0) -> float:
    data_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    t = time.perf_counter()
    proc = subprocess.Popen([PY, str(ROOT / "app.py"), "--port", str(port), "--data-dir", str(data_dir)],
                            cwd=data_dir, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        while time.perf_counter() - t < timeout:
            if proc.poll() is not None:
                raise SystemExit(f"app.py exited {proc.returncode}: {proc.stderr.read().decode()[-2000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as r:
                    if r.status == 200:
                        return time.perf_counter() - t
            except OSError:
                pass
            time.sleep(0.1)
        raise SystemExit("app.py did not answer in time")
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def importtime(args: list[str], cwd: Path, top: int = 8) -> None:
    r = subprocess.run([PY, "-X", "importtime", "-m", "creationmix", *args], cwd=cwd, env=_env(),
                       capture_output=True, text=True)
    rows = []
    for line in r.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        head, cum_us, name = line.split("|", 2)
        self_us = head.split(":", 1)[1]
        name = name.rstrip("\n")[1:]  # one separator space; more spaces mean a nested import
        rows.append((int(cum_us), int(self_us), name))
    total = sum(c for c, _, n in rows if not n.startswith(" "))
    heavy = [n.strip() for _, _, n in rows if n.strip().split(".")[0] in ("torch", "diffusers", "transformers",
                                                                           "gradio")]
    roots = sorted({h.split(".")[0] for h in heavy})
    shown = " ".join(args) if len(args) < 4 else " ".join(args[:1]) + " ..."
    print(f"  importtime `creationmix {shown}`: total {total / 1e6:.2f} s; heavy packages: "
          f"{', '.join(roots) or 'none'}; torch._dynamo: {'yes' if 'torch._dynamo' in heavy else 'no'}  ({load()})")
    for cum, self_us, name in sorted(rows, key=lambda r: -r[1])[:top]:
        print(f"    self {self_us / 1e3:8.1f} ms  cum {cum / 1e3:8.1f} ms  {name.strip()}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--parts", default="cold,ui,imports", help="comma-separated subset of cold,ui,imports")
    a = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    from creationmix.models.tiny import config_dir_for, write_tiny_checkpoint

    # pip byte-compiles what it installs (diffusers, torch ...); a source checkout gets its .pyc files on the
    # first run, unless PYTHONDONTWRITEBYTECODE is set (it is on some CI/dev machines). Compile ours once so
    # both sides start from bytecode, as on a user's machine after the first launch.
    import compileall
    compileall.compile_dir(str(ROOT / "creationmix"), quiet=1)
    print(f"creationmix byte-compiled (PYTHONDONTWRITEBYTECODE={os.environ.get('PYTHONDONTWRITEBYTECODE', '')!r})")

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = tmp / "data"
        ckpt_dir = data / "models" / "Stable-diffusion"
        ckpt_dir.mkdir(parents=True)
        ckpt = ckpt_dir / "tiny.safetensors"
        write_tiny_checkpoint(ckpt, with_tokenizer=True)
        cfg = config_dir_for(ckpt)
        ours = [PY, "-m", "creationmix", "txt2img", "--data-dir", str(data), "--checkpoint", "tiny.safetensors",
                "--prompt", "a cat", "--steps", str(a.steps), "--width", str(a.size), "--height", str(a.size),
                "--seed", "1", "--sampler", "Euler"]
        base = [PY, "-c", BASELINE, str(ckpt), str(cfg), str(tmp / "base.png"), str(a.steps), str(a.size)]
        parts = set(a.parts.split(","))
        if parts & {"cold", "imports"}:
            timed(ours, tmp)  # warms the OS file cache (and gives pnginfo its image)
        if "cold" in parts:
            timed(base, tmp)
            ta, tb = [], []
            for _ in range(a.repeats):
                ta.append(timed(ours, tmp))
                tb.append(timed(base, tmp))
            ma, mb = statistics.median(ta), statistics.median(tb)
            print(f"cold txt2img {a.size}x{a.size}/{a.steps} steps, {a.repeats} interleaved runs each  ({load()})")
            print(f"  (a) creationmix txt2img: median {ma:.2f} s  {[round(x, 2) for x in ta]}")
            print(f"  (b) diffusers from_single_file: median {mb:.2f} s  {[round(x, 2) for x in tb]}")
            print(f"  ratio a/b = {ma / mb:.3f}  (target <= 0.85)")
        if "ui" in parts:
            ui = [ui_first_200(tmp / f"ui{i}") for i in range(max(1, a.repeats // 2))]
            print(f"UI first HTTP 200 on an empty data dir: median {statistics.median(ui):.2f} s "
                  f"{[round(x, 2) for x in ui]}  (target <= 5 s; {load()})")
        if "imports" not in parts:
            return
        png = next((data / "outputs").rglob("*.png"))
        importtime(["txt2img", "--help"], tmp)
        importtime(["presets"], tmp)
        importtime(["pnginfo", str(png)], tmp)
        importtime(["samplers"], tmp)
        importtime(ours[3:], tmp, top=12)  # the real run: where a cold one-image CLI call spends its imports


if __name__ == "__main__":
    main()
