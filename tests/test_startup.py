"""Start-up budget: the light commands and the UI page stay off torch/diffusers; the demo model is torch-free."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from creationmix.models.demo import MANIFEST, write_demo_checkpoint
from creationmix.models.loader import load_checkpoint
from creationmix.models.tiny import demo_manifest

ROOT = Path(__file__).resolve().parent.parent
_VERSION_KEYS = ("_diffusers_version", "transformers_version")


def _configs(configs: dict) -> dict:
    return {k: {n: v for n, v in json.loads(t).items() if n not in _VERSION_KEYS} for k, t in configs.items()}


def test_shipped_demo_manifest_matches_the_tiny_models():
    shipped, built = json.loads(MANIFEST.read_text(encoding="utf-8")), demo_manifest()
    assert shipped["tensors"] == built["tensors"]
    assert _configs(shipped["configs"]) == _configs(built["configs"])


def test_demo_checkpoint_loads_and_makes_finite_noise(tmp_path):
    from creationmix.engine import Engine
    from creationmix.params import GenerationParams
    from creationmix.paths import Folders

    folders = Folders(tmp_path)
    folders.ensure()
    write_demo_checkpoint(folders.checkpoint_dirs[0] / "demo.safetensors")
    model = load_checkpoint(folders.checkpoint_dirs[0] / "demo.safetensors")
    assert model.unet.config.sample_size == demo_manifest_unet_size()
    res = Engine(folders, device="cpu").generate(GenerationParams(prompt="x", steps=2, width=64, height=64, seed=1))
    arr = np.asarray(Image.open(res.paths[0]), dtype=np.float32)
    assert arr.std() > 1.0  # noise, not a flat (NaN -> black) image


def demo_manifest_unet_size() -> int:
    return json.loads(json.loads(MANIFEST.read_text(encoding="utf-8"))["configs"]["unet/config.json"])["sample_size"]


LIGHT = r"""
import sys
from pathlib import Path
from PIL import Image, PngImagePlugin
tmp = Path(sys.argv[1])
info = PngImagePlugin.PngInfo(); info.add_text("parameters", "a cat\nSteps: 4, Sampler: Euler, Seed: 1")
Image.new("RGB", (8, 8)).save(tmp / "i.png", pnginfo=info)
from creationmix import cli
for argv in (["presets"], ["samplers"], ["pnginfo", str(tmp / "i.png")]):
    assert cli.main(argv) == 0, argv
from creationmix.compose import ServiceOptions, build_service
svc = build_service(ServiceOptions(data_dir=tmp, demo_if_empty=True, create_folders=True))
assert svc.list_checkpoints() == ["demo-tiny-random.safetensors"]
from creationmix.ui.app import build_ui
build_ui(svc)
heavy = sorted(m for m in ("torch", "diffusers", "transformers", "torch._dynamo") if m in sys.modules)
print("HEAVY", heavy)
from creationmix.ui import gradio_import
print("STUBS SKIPPED", gradio_import.stub_rewrite_skipped())
"""


def test_light_commands_demo_build_and_ui_page_import_no_torch(tmp_path):
    r = subprocess.run([sys.executable, "-c", LIGHT, str(tmp_path)], cwd=ROOT, capture_output=True, text=True,
                       env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "GRADIO_ANALYTICS_ENABLED": "False"},
                       timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "HEAVY []" in r.stdout, r.stdout[-2000:]
    assert "STUBS SKIPPED True" in r.stdout  # gradio came in without its per-launch .pyi rewrite (gradio_import)


def test_background_warm_up_loads_the_model_and_generate_waits_for_it(folders):
    from creationmix.params import GenerationParams
    from creationmix.service import Service

    svc = Service(folders, device="cpu")
    assert not svc.model_ready()
    t = svc.warm_up_in_background()
    res = svc.generate(GenerationParams(prompt="x", steps=1, width=64, height=64, seed=3))  # waits on the lock
    t.join(60)
    assert svc.model_ready() and res.paths[0].is_file()
    assert svc.engine.model.name == "tiny.safetensors"


def test_startup_gc_is_off_until_the_first_model_load_then_collects(folders):
    """startup_gc: a process entry point starts without the cyclic GC; the engine's first load turns it back on
    (a failed load too), and code that never called begin() keeps its GC as it was."""
    import gc

    from creationmix import startup_gc
    from creationmix.engine import Engine

    gc.collect()  # little garbage to freeze with the test process's heap
    try:
        seen = {}

        def main():
            seen["during"] = gc.isenabled()
            engine = Engine(folders, device="cpu")
            try:
                engine.load("no-such-checkpoint")
            except Exception:
                pass
            seen["after_failed_load"] = gc.isenabled()
            return 7

        assert startup_gc.run_entry(main) == 7
        assert seen == {"during": False, "after_failed_load": True} and gc.isenabled()
        startup_gc.settled()  # without begin(): no change
        assert gc.isenabled()
    finally:
        gc.enable()
        gc.unfreeze()

