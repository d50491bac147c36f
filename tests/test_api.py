"""The HTTP API in-process (FastAPI TestClient) over the real Service on tiny checkpoints, plus its request
mapping and the generation queue on their own. The live server with the real `webuiapi` client is in
test_api_live.py."""
from __future__ import annotations

import base64
import io
import json
import shutil
import threading
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from creationmix.api import mapping
from creationmix.api.errors import ApiError
from creationmix.api.models import Txt2ImgRequest
from creationmix.errors import Interrupted, QueueFull
from creationmix.jobs import Control
from creationmix.params import GenerationParams
from creationmix.queueing import GenerationQueue

# What webuiapi 0.9.x sends for `txt2img(prompt=..., steps=..., ...)` with its defaults.
WEBUIAPI_DEFAULTS = {
    "enable_hr": False, "hr_scale": 2, "hr_upscaler": "Latent", "hr_second_pass_steps": 0, "hr_resize_x": 0,
    "hr_resize_y": 0, "hr_checkpoint_name": None, "hr_sampler_name": None, "hr_scheduler": None, "hr_prompt": "",
    "hr_negative_prompt": "", "denoising_strength": 0.7, "firstphase_width": 0, "firstphase_height": 0,
    "prompt": "", "styles": [], "seed": -1, "subseed": -1, "subseed_strength": 0.0, "seed_resize_from_h": 0,
    "seed_resize_from_w": 0, "batch_size": 1, "n_iter": 1, "steps": 20, "cfg_scale": 7.0, "width": 512,
    "height": 512, "restore_faces": False, "tiling": False, "do_not_save_samples": False, "do_not_save_grid": False,
    "negative_prompt": "", "eta": 1.0, "s_churn": 0, "s_tmax": 0, "s_tmin": 0, "s_noise": 1, "override_settings": {},
    "override_settings_restore_afterwards": True, "sampler_name": "Euler a", "scheduler": "automatic",
    "sampler_index": "Euler a", "script_name": None, "script_args": [], "send_images": True, "save_images": False,
    "alwayson_scripts": {},
}


def to_params(body: dict, options: dict | None = None):
    return mapping.to_params(Txt2ImgRequest.model_validate(body), options or {}, lambda k, v: v)


def recipe_request(**changes) -> dict:
    """The documented `in-general` recipe (presets/in-general.toml) as an A1111 request, at a test size."""
    from creationmix.presets import PRESETS_DIR, find_preset
    p = find_preset(PRESETS_DIR, "in-general").to_params()
    body = dict(WEBUIAPI_DEFAULTS, prompt=p.prompt, negative_prompt=p.negative_prompt, steps=2,
                sampler_name=p.sampler, sampler_index=p.sampler, scheduler=p.schedule, cfg_scale=p.cfg_scale,
                seed=p.seed, width=64, height=64, enable_hr=True, denoising_strength=p.denoising_strength,
                hr_scale=p.hires_scale, hr_second_pass_steps=2, hr_upscaler=p.hires_upscaler,
                override_settings={"CLIP_stop_at_last_layers": p.clip_skip})
    body.update(changes)
    return body


# -- mapping (no model) ----------------------------------------------------------------------------------------------
def test_a1111_defaults_and_webuiapi_payload_map_to_params():
    p, _ = to_params({})
    assert (p.steps, p.sampler, p.cfg_scale, p.width, p.seed) == (50, "Euler", 7.0, 512, -1)  # A1111's API defaults
    p, _ = to_params(dict(WEBUIAPI_DEFAULTS, prompt="1girl", steps=3, n_iter=2, batch_size=2))
    assert (p.prompt, p.steps, p.sampler, p.schedule, p.batch_count, p.batch_size) == \
        ("1girl", 3, "Euler a", "Automatic", 2, 2)


def test_recipe_request_is_the_preset():
    from creationmix.presets import PRESETS_DIR, find_preset
    p, _ = to_params(recipe_request(), {"CLIP_stop_at_last_layers": 1})
    want = find_preset(PRESETS_DIR, "in-general").to_params().replace(width=64, height=64, steps=2, hires_steps=2)
    assert p == want


@pytest.mark.parametrize("body, field", [
    ({"restore_faces": True}, "restore_faces"),
    ({"tiling": True}, "tiling"),
    ({"styles": ["anime"]}, "styles"),
    ({"subseed_strength": 1.5}, "subseed_strength"),
    ({"sampler_name": "Euler a", "eta": 1.5}, "eta"),
    ({"sampler_name": "Euler", "s_churn": 200}, "s_churn"),
    ({"sampler_name": "Euler", "s_noise": 2}, "s_noise"),
    ({"s_min_uncond": 20}, "s_min_uncond"),
    ({"script_name": "x/y/z plot"}, "script_name"),
    ({"alwayson_scripts": {"ControlNet": {"args": []}}}, "alwayson_scripts"),
    ({"override_settings": {"sd_hypernetwork": "x"}}, "override_settings"),
    ({"steps": 0}, "steps"),
    ({"n_iter": 0}, "n_iter"),
    ({"width": 100}, "width"),
    ({"sampler_name": "Euler z"}, "sampler_name"),
    ({"scheduler": "sgm_nonsense"}, "scheduler"),
    ({"override_settings": {"CLIP_stop_at_last_layers": 13}}, "CLIP_stop_at_last_layers"),
    ({"enable_hr": True, "hr_scheduler": "nonsense"}, "hr_scheduler"),
    ({"infotext": "no parameters here"}, "infotext"),
])
def test_values_that_would_change_pixels_are_refused_with_the_field_named(body, field):
    with pytest.raises(ApiError) as e:
        to_params(body)
    assert e.value.status == 422 and e.value.field == field, e.value.detail


def test_seed_fields_are_applied():
    p, _ = to_params({"subseed": 9, "subseed_strength": 0.5, "seed_resize_from_w": 320, "seed_resize_from_h": 256,
                      "override_settings": {"eta_noise_seed_delta": 31337, "randn_source": "NV"}})
    assert (p.subseed, p.subseed_strength, p.seed_resize_from_w, p.seed_resize_from_h, p.eta_noise_seed_delta,
            p.rng) == (9, 0.5, 320, 256, 31337, "NV")


def test_sampler_options_reach_the_sampler_that_reads_them():
    # A1111's request eta is eta_ancestral for k-diffusion samplers and eta_ddim for DDIM; others ignore it.
    p, _ = to_params({"sampler_name": "DDIM", "eta": 0.5})
    assert (p.eta_ddim, p.eta) == (0.5, 1.0)
    p, _ = to_params({"sampler_name": "Euler a", "eta": 0.5, "s_noise": 0.9})
    assert (p.eta, p.eta_ddim, p.s_noise) == (0.5, 0.0, 0.9)
    p, _ = to_params({"sampler_name": "Euler", "s_churn": 0.5, "s_tmin": 0.1})
    assert (p.s_churn, p.s_tmin) == (0.5, 0.1)
    p, _ = to_params(dict(WEBUIAPI_DEFAULTS, sampler_name="DDIM"))  # webuiapi's eta=1.0 is A1111's eta 1 too
    assert p.eta_ddim == 1.0
    p, _ = to_params({"enable_hr": True, "hr_scheduler": "exponential", "sampler_name": "Euler"})
    assert p.hires_schedule == "Exponential"


def test_neutral_values_of_unimplemented_fields_are_accepted():
    # A1111 ignores subseed at strength 0, seed resize to the image's own size, and the "off" values.
    for body in ({"sampler_name": "DPM++ 2M", "eta": 0.3}, {"subseed": 1234, "subseed_strength": 0}, {"seed_resize_from_w": 512, "seed_resize_from_h": 512},
                 {"seed_resize_from_w": -1, "seed_resize_from_h": -1}, {"styles": []}, {"restore_faces": False},
                 {"hr_additional_modules": ["Use same choices"]}, {"scheduler": "Automatic"}):
        to_params(body)


def test_settings_map_and_override_beats_option():
    p, eff = to_params({"override_settings": {"CLIP_stop_at_last_layers": 2, "randn_source": "CPU",
                                              "emphasis": "No norm"}}, {"CLIP_stop_at_last_layers": 1})
    assert (p.clip_skip, p.rng, p.emphasis) == (2, "CPU", "No norm") and eff["CLIP_stop_at_last_layers"] == 2
    p, _ = to_params({}, {"CLIP_stop_at_last_layers": 2, "sd_model_checkpoint": "a.safetensors", "sd_vae": "None"})
    assert (p.clip_skip, p.checkpoint, p.vae) == (2, "a.safetensors", "None")


def test_schedulers_by_name_or_label_and_old_combined_sampler_names():
    assert to_params({"sampler_name": "DPM++ 2M", "scheduler": "karras"})[0].schedule == "Karras"
    assert to_params({"sampler_name": "DPM++ 2M Karras"})[0].schedule == "Karras"
    assert to_params({"sampler_index": "Heun", "sampler_name": None})[0].sampler == "Heun"


def test_infotext_fills_what_the_request_did_not_set():
    text = ("1girl\nNegative prompt: bad\nSteps: 7, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 9.5, "
            "Seed: 42, Size: 64x96, Clip skip: 2, Denoising strength: 0.6, Hires upscale: 1.5, Hires upscaler: Latent")
    p, _ = to_params({"infotext": text, "seed": 7}, {"CLIP_stop_at_last_layers": 1})
    assert (p.prompt, p.negative_prompt, p.steps, p.sampler, p.schedule, p.cfg_scale, p.seed, p.width, p.height,
            p.clip_skip, p.enable_hires, p.hires_scale) == \
        ("1girl", "bad", 7, "DPM++ 2M", "Karras", 9.5, 7, 64, 96, 2, True, 1.5)
    ancestral = text.replace("DPM++ 2M", "Euler a")  # ENSD only changes samplers that draw noise after the first
    p, _ = to_params({"infotext": ancestral + ", Variation seed: 3, Variation seed strength: 0.3, ENSD: 31337"})
    assert (p.subseed, p.subseed_strength, p.eta_noise_seed_delta) == (3, 0.3, 31337)


def test_firstphase_size_is_the_first_pass_and_width_height_the_hires_target():
    p, _ = to_params({"enable_hr": True, "firstphase_width": 64, "firstphase_height": 64, "width": 128,
                      "height": 96})
    assert (p.width, p.height, p.hires_size) == (64, 64, (128, 96))


# -- queue (no model) ------------------------------------------------------------------------------------------------
def _hold(queue, started: threading.Event, release: threading.Event, **kw):
    def body():
        with queue.run("hold", **kw):
            started.set()
            release.wait(10)
    t = threading.Thread(target=body, daemon=True)
    t.start()
    return t


def test_queue_is_bounded_fifo_reentrant_and_leaves_on_interrupt():
    q = GenerationQueue(max_waiting=1)
    started, release = threading.Event(), threading.Event()
    t1 = _hold(q, started, release)
    assert started.wait(5) and q.current().kind == "hold"
    waiting_control = Control()
    order = []

    def second():
        try:
            with q.run("second", waiting_control):
                order.append("second")
        except Interrupted:
            order.append("left")
    t2 = threading.Thread(target=second, daemon=True)
    t2.start()
    assert waiting_control.queued.wait(5)
    with pytest.raises(QueueFull, match="queue is full"):
        with q.run("third"):
            pass
    waiting_control.interrupt()  # a waiting job that is interrupted gives its place up
    t2.join(5)
    assert order == ["left"] and q.waiting() == 0
    release.set()
    t1.join(5)
    with q.run("outer") as outer:
        with q.run("inner") as inner:  # a job calling another queued method keeps its slot
            assert inner is outer
    assert q.current() is None


# -- the app over the real service -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def data_dir(tmp_path_factory, tiny_ckpt_dir):
    from creationmix.models.tiny import write_tiny_checkpoint
    root = tmp_path_factory.mktemp("api_data")
    shutil.copytree(tiny_ckpt_dir / "models", root / "models")
    write_tiny_checkpoint(root / "models" / "Stable-diffusion" / "tiny2.safetensors", seed=1)
    return root


@pytest.fixture(scope="module")
def service(data_dir):
    from creationmix.paths import Folders
    from creationmix.service import Service
    return Service(Folders(data_dir), device="cpu", max_queue=1)


@pytest.fixture(scope="module")
def client(service):
    from creationmix.api.server import create_app
    return TestClient(create_app(service))


def _png(b64: str) -> bytes:
    return base64.b64decode(b64)


def test_txt2img_png_equals_the_cli_png(client, data_dir, tmp_path, capsys):
    from creationmix import cli
    r = client.post("/sdapi/v1/txt2img", json=recipe_request())
    assert r.status_code == 200, r.text
    body = r.json()
    info = json.loads(body["info"])
    api_png = _png(body["images"][0])
    assert cli.main(["txt2img", "--preset", "in-general", "--width", "64", "--height", "64", "--steps", "2",
                     "--hires-steps", "2", "--data-dir", str(data_dir), "--checkpoint", "tiny.safetensors",
                     "--device", "cpu", "--out", str(tmp_path)]) == 0
    cli_path = capsys.readouterr().out.strip().splitlines()[-1]
    assert api_png == open(cli_path, "rb").read()
    im = Image.open(io.BytesIO(api_png))
    assert im.size == (96, 96) and im.text["parameters"] == info["infotexts"][0]
    for key in ("prompt", "all_prompts", "negative_prompt", "seed", "all_seeds", "subseed", "all_subseeds", "width",
                "height", "sampler_name", "cfg_scale", "steps", "batch_size", "sd_model_name", "sd_model_hash",
                "sd_vae_name", "clip_skip", "seed_resize_from_w", "seed_resize_from_h", "denoising_strength",
                "infotexts", "job_timestamp", "version"):
        assert key in info
    assert (info["seed"], info["clip_skip"], info["sd_model_name"], info["steps"]) == (106059479, 2, "tiny", 2)
    assert body["parameters"]["prompt"] == "1girl" and info["paths"] == []  # save_images false: nothing saved


def test_batch_seeds_save_images_and_png_info(client, data_dir):
    r = client.post("/sdapi/v1/txt2img", json={"prompt": "a", "steps": 1, "width": 64, "height": 64, "seed": 10,
                                               "batch_size": 2, "save_images": True, "send_images": True})
    assert r.status_code == 200, r.text
    info = json.loads(r.json()["info"])
    assert info["all_seeds"] == [10, 11] and len(info["paths"]) == 2
    saved = open(info["paths"][1], "rb").read()
    assert saved == _png(r.json()["images"][1])
    r = client.post("/sdapi/v1/png-info", json={"image": "data:image/png;base64," + r.json()["images"][1]})
    assert r.status_code == 200
    assert r.json()["info"] == info["infotexts"][1]
    assert (r.json()["parameters"]["Seed"], r.json()["parameters"]["Size-1"]) == ("11", "64")
    assert client.post("/sdapi/v1/png-info", json={"image": base64.b64encode(b"nope").decode()}).status_code == 422


def test_listings(client):
    models = client.get("/sdapi/v1/sd-models").json()
    assert sorted(m["model_name"] for m in models) == ["tiny", "tiny2"]
    assert {s["name"] for s in client.get("/sdapi/v1/samplers").json()} >= {"Euler a", "DPM++ 2M"}
    scheds = {s["name"]: s for s in client.get("/sdapi/v1/schedulers").json()}
    assert scheds["karras"]["label"] == "Karras" and scheds["karras"]["default_rho"] == 7.0
    assert scheds["sgm_uniform"]["label"] == "SGM Uniform"
    assert client.get("/sdapi/v1/latent-upscale-modes").json()[0] == {"name": "Latent"}
    assert client.get("/sdapi/v1/scripts").json() == {"txt2img": [], "img2img": []}
    assert "ram" in client.get("/sdapi/v1/memory").json()
    assert client.get("/sdapi/v1/embeddings").json() == {"loaded": {}, "skipped": {}}
    assert client.get("/sdapi/v1/progress").json()["state"]["job_count"] == 0


def test_options_switch_checkpoint_and_refuse_unknown_names(client, service):
    opts = client.get("/sdapi/v1/options").json()
    assert opts["CLIP_stop_at_last_layers"] == 1 and opts["samples_format"] == "png"
    title2 = next(m["title"] for m in client.get("/sdapi/v1/sd-models").json() if m["model_name"] == "tiny2")
    assert client.post("/sdapi/v1/options", json={"sd_model_checkpoint": title2}).status_code == 200
    assert service.engine.model.path.name == "tiny2.safetensors"  # switched (loaded) at once
    assert client.get("/sdapi/v1/options").json()["sd_model_checkpoint"].startswith("tiny2.safetensors")
    r = client.post("/sdapi/v1/txt2img", json={"prompt": "a", "steps": 1, "width": 64, "height": 64, "seed": 1})
    assert json.loads(r.json()["info"])["sd_model_name"] == "tiny2"
    for bad in ("../Stable-diffusion/tiny.safetensors", "/etc/passwd", "nope"):
        r = client.post("/sdapi/v1/options", json={"sd_model_checkpoint": bad})
        assert r.status_code == 404 and "not found" in r.json()["detail"]
    r = client.post("/sdapi/v1/options", json={"CLIP_stop_at_last_layers": 0})
    assert r.status_code == 422 and r.json()["field"] == "CLIP_stop_at_last_layers"
    assert client.post("/sdapi/v1/options", json={"samples_format": "jpg"}).status_code == 422
    assert client.post("/sdapi/v1/options", json={"sd_model_checkpoint": "tiny"}).status_code == 200
    r = client.post("/sdapi/v1/txt2img", json={"override_settings": {"sd_model_checkpoint": "../../x"}})
    assert r.status_code == 404


def test_full_queue_answers_503_and_interrupt_acts_on_the_running_job(client, service):
    started, release = threading.Event(), threading.Event()
    holder = _hold(service.queue, started, release)
    assert started.wait(5)
    ctl = Control()

    def wait_job():
        try:
            with service.queue.run("wait", ctl):
                pass
        except Interrupted:
            pass
    waiting = threading.Thread(target=wait_job, daemon=True)
    waiting.start()
    assert ctl.queued.wait(5)
    r = client.post("/sdapi/v1/txt2img", json={"prompt": "a", "steps": 1, "width": 64, "height": 64})
    assert r.status_code == 503 and "queue is full" in r.json()["detail"] and r.headers["Retry-After"]
    assert client.get("/sdapi/v1/progress").json()["state"]["job"] == "hold"
    assert client.post("/sdapi/v1/interrupt").status_code == 200
    assert service.queue.current().control.interrupted.is_set()
    ctl.interrupt()
    release.set()
    holder.join(5)
    waiting.join(5)


def test_auth_protects_every_route(service):
    from creationmix.api.server import create_app
    app = create_app(service, credentials=[("u", "p"), ("u2", "p2")])
    c = TestClient(app)
    paths = c.get("/openapi.json").json()["paths"]  # the OpenAPI page lists every route
    routes = [(path, method.upper()) for path, ops in paths.items() for method in ops]
    assert len(routes) >= 30
    assert ("/sdapi/v1/loras", "GET") in routes and ("/sdapi/v1/refresh-loras", "POST") in routes
    for path, method in routes:
        path = path.replace("{job_id}", "x")
        r = c.request(method, path)
        assert r.status_code == 401 and r.headers["WWW-Authenticate"] == "Basic", path
        assert c.request(method, path, auth=("u", "wrong")).status_code == 401
    assert c.get("/sdapi/v1/loras", auth=("u2", "p2")).status_code == 200


def test_previews_job(client, data_dir):
    import torch
    from tests.lora_fixtures import kohya_lora, write_lora
    from creationmix.models.loader import load_checkpoint
    model = load_checkpoint(data_dir / "models" / "Stable-diffusion" / "tiny.safetensors", device="cpu",
                            dtype=torch.float32)
    lora_dir = data_dir / "models" / "Lora"
    lora_dir.mkdir(parents=True, exist_ok=True)
    write_lora(lora_dir / "style_a.safetensors", kohya_lora(model.unet, model.text_encoder),
               {"ss_output_name": "styleA"})
    assert client.post("/sdapi/v1/refresh-loras").status_code == 200
    loras = client.get("/sdapi/v1/loras").json()
    assert [(x["name"], x["alias"]) for x in loras] == [("style_a", "styleA")] and loras[0]["metadata"]
    assert client.post("/creationmix/v1/previews", json={"preset": "nope"}).status_code == 404
    r = client.post("/creationmix/v1/previews", json={"names": ["../x"]})
    assert r.status_code == 404
    r = client.post("/creationmix/v1/previews", json={"overrides": {"steps": 0}})
    assert r.status_code == 422 and r.json()["field"] == "overrides"
    r = client.post("/creationmix/v1/previews", json={"preset": "lora-preview", "overrides": {
        "width": 64, "height": 64, "steps": 1, "enable_hires": False}})
    assert r.status_code == 200, r.text
    job_id = r.json()["id"]
    for _ in range(600):
        job = client.get(f"/creationmix/v1/jobs/{job_id}").json()
        if job["status"] not in ("queued", "running"):
            break
        time.sleep(0.1)
    assert job["status"] == "done", job
    assert [o["status"] for o in job["result"]["outcomes"]] == ["done"]
    assert (lora_dir / "style_a.preview.png").is_file()
    assert client.get("/creationmix/v1/jobs/nope").status_code == 404


def test_work_size_guard_and_typed_values_through_the_api(client, data_dir, monkeypatch):
    """Issue 14: a request too big for the device is refused before any allocation with the estimate and what
    fits; a width sent as a string is a 422 naming the field, not a coerced 64."""
    before = sorted((Path(data_dir) / "outputs").rglob("*.png"))
    from creationmix import worksize
    monkeypatch.setattr(worksize, "free_bytes", lambda device: 2 * 1024 ** 3)
    r = client.post("/sdapi/v1/txt2img", json={"prompt": "a", "steps": 1, "width": 4096, "height": 4096,
                                               "batch_size": 8})
    assert 400 <= r.status_code < 500, r.text
    assert "4096x4096 x batch 8 needs at least" in r.text and "is free" in r.text
    r = client.post("/sdapi/v1/txt2img", json={"prompt": "a", "steps": 1, "width": "64", "height": 64})
    assert r.status_code == 422 and "width" in r.text
    assert sorted((Path(data_dir) / "outputs").rglob("*.png")) == before
