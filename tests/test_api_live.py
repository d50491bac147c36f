"""A live `python app.py --api` (web UI + API in one process) driven by the real `webuiapi` client and raw HTTP.

One server per module on a free port, over a tmp data dir holding two tiny checkpoints; stopped at the end.
"""
from __future__ import annotations

import base64
import shutil
import threading
import time
from pathlib import Path

import pytest

webuiapi = pytest.importorskip("webuiapi")
requests = pytest.importorskip("requests")

from live_server import serve  # noqa: E402
from tests.test_api import recipe_request  # noqa: E402

USER, PASSWORD = "lora", "author"


@pytest.fixture(scope="module")
def live_data(tmp_path_factory, tiny_ckpt_dir):
    from creationmix.models.tiny import write_tiny_checkpoint
    root = tmp_path_factory.mktemp("live_data")
    shutil.copytree(tiny_ckpt_dir / "models", root / "models")
    write_tiny_checkpoint(root / "models" / "Stable-diffusion" / "tiny2.safetensors", seed=1)
    return root


@pytest.fixture(scope="module")
def server(live_data, tmp_path_factory):
    args = ["--device", "cpu", "--api", "--data-dir", str(live_data), "--api-auth", f"{USER}:{PASSWORD}",
            "--max-queue", "1"]
    with serve("app.py", args, tmp_path_factory.mktemp("api-live") / "server.log", ready="running on",
               timeout=240) as live:
        yield live.url, live.port


@pytest.fixture(scope="module")
def api(server):
    return webuiapi.WebUIApi(port=server[1], username=USER, password=PASSWORD)


def test_webuiapi_txt2img_with_the_recipe_gives_the_cli_png(api, live_data, tmp_path, capsys):
    from creationmix import cli
    body = recipe_request()
    kw = {k: body[k] for k in ("prompt", "negative_prompt", "steps", "sampler_name", "scheduler", "cfg_scale",
                               "seed", "width", "height", "enable_hr", "denoising_strength", "hr_scale",
                               "hr_second_pass_steps", "hr_upscaler", "override_settings")}
    result = api.txt2img(**kw)
    assert result.image.size == (96, 96)
    assert result.info["infotexts"][0] == result.image.info["parameters"]
    assert cli.main(["txt2img", "--preset", "in-general", "--width", "64", "--height", "64", "--steps", "2",
                     "--hires-steps", "2", "--data-dir", str(live_data), "--checkpoint", "tiny.safetensors",
                     "--device", "cpu", "--out", str(tmp_path)]) == 0
    cli_png = Path(capsys.readouterr().out.strip().splitlines()[-1]).read_bytes()
    assert base64.b64decode(result.json["images"][0]) == cli_png


def test_webuiapi_listings_and_switching_the_checkpoint(api):
    assert sorted(m["model_name"] for m in api.get_sd_models()) == ["tiny", "tiny2"]
    assert api.get_loras() == []
    assert "Euler a" in api.util_get_sampler_names() and "karras" in api.util_get_scheduler_names()
    assert api.get_options()["sd_model_checkpoint"].startswith("tiny.safetensors")
    api.set_options({"sd_model_checkpoint": "tiny2.safetensors"})
    assert api.util_get_current_model().startswith("tiny2.safetensors")
    r = api.txt2img(prompt="x", steps=1, width=64, height=64, seed=1)
    assert r.info["sd_model_name"] == "tiny2"
    api.util_set_model("tiny.safetensors")
    assert api.get_options()["sd_model_checkpoint"].startswith("tiny.safetensors")


def test_progress_full_queue_and_interrupt_keeping_finished_images(api, server):
    base, _ = server
    out: dict = {}

    def run(key, **kw):
        try:
            out[key] = api.txt2img(width=64, height=64, seed=5, **kw)
        except RuntimeError as e:
            out[key] = e

    slow = threading.Thread(target=run, args=("slow",), kwargs=dict(prompt="a", steps=60, n_iter=3,
                                                                     save_images=True), daemon=True)
    slow.start()
    progress = None
    for _ in range(600):
        progress = api.get_progress()
        if progress["state"]["sampling_step"] > 0:
            break
        time.sleep(0.05)
    assert progress["state"]["job"] == "txt2img" and progress["state"]["job_count"] == 3
    assert 0 < progress["progress"] < 1 and progress["state"]["sampling_steps"] == 60
    waiting = threading.Thread(target=run, args=("waiting",), kwargs=dict(prompt="b", steps=1), daemon=True)
    waiting.start()
    for _ in range(200):
        if api.get_progress()["state"]["queued"] == 1:
            break
        time.sleep(0.05)
    full = requests.post(f"{base}/sdapi/v1/txt2img", json={"prompt": "c", "steps": 1, "width": 64, "height": 64},
                         auth=(USER, PASSWORD), timeout=30)
    assert full.status_code == 503 and "queue is full" in full.json()["detail"]
    for _ in range(1200):  # let the first image finish, then interrupt the second
        if api.get_progress()["state"]["job_no"] >= 1:
            break
        time.sleep(0.05)
    api.interrupt()
    slow.join(120)
    waiting.join(120)
    slow_result = out["slow"]
    assert slow_result.info["interrupted"] is True
    assert 1 <= len(slow_result.images) < 3
    assert all(Path(p).is_file() for p in slow_result.info["paths"])
    assert len(slow_result.info["paths"]) == len(slow_result.images)
    assert out["waiting"].image.size == (64, 64)  # the queued request ran after the interrupted one


def test_raw_http_auth_errors_openapi_and_the_ui(server):
    base, _ = server
    paths = requests.get(f"{base}/openapi.json", timeout=30).json()["paths"]
    ours = [(p, m.upper()) for p, ops in paths.items() if p.startswith(("/sdapi", "/creationmix")) for m in ops]
    for route in ("/sdapi/v1/txt2img", "/sdapi/v1/progress", "/sdapi/v1/options", "/sdapi/v1/loras",
                  "/sdapi/v1/refresh-loras", "/creationmix/v1/previews", "/creationmix/v1/jobs/{job_id}"):
        assert route in paths
    for path, method in ours:
        r = requests.request(method, base + path.replace("{job_id}", "x"), timeout=30)
        assert r.status_code == 401, (path, r.status_code)
    auth = (USER, PASSWORD)
    r = requests.post(f"{base}/sdapi/v1/txt2img", json={"steps": 0}, auth=auth, timeout=30)
    assert r.status_code == 422 and r.json()["field"] == "steps"
    r = requests.post(f"{base}/sdapi/v1/txt2img", json={"tiling": True}, auth=auth, timeout=30)
    assert r.status_code == 422 and r.json()["field"] == "tiling"
    r = requests.post(f"{base}/sdapi/v1/txt2img", json={"width": "64"}, auth=auth, timeout=30)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "width"]
    assert requests.get(f"{base}/docs", timeout=30).status_code == 200
    assert requests.get(f"{base}/", timeout=30).status_code == 200  # the web UI is served by the same process


def test_nowebui_serves_the_api_alone(live_data, tmp_path):
    with serve("app.py", ["--device", "cpu", "--nowebui", "--data-dir", str(live_data)],
               tmp_path / "server.log", ready="API running on", timeout=120) as live:
        base = live.url
        for _ in range(100):
            try:
                r = requests.get(f"{base}/sdapi/v1/sd-models", timeout=5)
                break
            except requests.ConnectionError:
                time.sleep(0.1)
        assert r.status_code == 200 and len(r.json()) == 2
        assert requests.get(f"{base}/", timeout=5).status_code == 404
