"""End-to-end: `python app.py` in a subprocess, driven by Chromium (Playwright) and by gradio_client.

Runs the real service (which builds the tiny demo checkpoint in an empty data dir). Skips with a reason when
/usr/bin/chromium, playwright or the real service (torch) is missing. CREATIONMIX_UI_TEST_FAKE=1 runs the same
flow against tests/fake_service.py via tests/fake_app.py (UI development only). Screenshots go to test-artifacts/
(gitignored), at 1366x900 (the first viewport is what an A1111 user judges the layout by).
"""
from __future__ import annotations

import importlib.util
import io
import os
import re
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / "test-artifacts"
USER, PASSWORD = "tester", "s3cret:pass"
FAKE = os.environ.get("CREATIONMIX_UI_TEST_FAKE") == "1"
START_TIMEOUT_S = 180
GENERATE_TIMEOUT_MS = 300_000
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--disable-sync"]


def _skip_reason() -> str | None:
    if not CHROMIUM.exists():
        return f"{CHROMIUM} not found (apt-get install chromium)"
    if importlib.util.find_spec("playwright") is None:
        return "playwright is not installed"
    if not FAKE:
        if importlib.util.find_spec("torch") is None:
            return "torch is not installed: the real service cannot run"
        if importlib.util.find_spec("creationmix.service") is None:
            return "creationmix.service is not available yet"
    return None


if (_reason := _skip_reason()) is not None:
    pytest.skip(_reason, allow_module_level=True)

from live_server import http_ready, serve  # noqa: E402


VIEWPORT = {"width": 1366, "height": 900}
PASTED = ("1girl, solo, looking at viewer\nNegative prompt: worst quality, lowres\n"
          "Steps: 7, Sampler: Euler a, Schedule type: Automatic, CFG scale: 6.5, Seed: 424242, Size: 96x128, "
          "Model hash: 1234567890, Model: somebody_else, Clip skip: 2, Denoising strength: 0.45, "
          "Hires upscale: 1.5, Hires steps: 3, Hires upscaler: Latent")


_MODEL: list = []


def _lora(path: Path, seed: int, scratch: Path) -> Path:
    """A real kohya-format LoRA for the demo checkpoint's architecture (the tiny model, built in `scratch`)."""
    import torch

    from creationmix.models.loader import load_checkpoint
    from creationmix.models.tiny import write_tiny_checkpoint
    from lora_fixtures import kohya_lora, write_lora

    if not _MODEL:
        ckpt = write_tiny_checkpoint(scratch / "tiny.safetensors")
        _MODEL.append(load_checkpoint(ckpt, device="cpu", dtype=torch.float32))
    model = _MODEL[0]
    return write_lora(path, kohya_lora(model.pipe.unet, model.pipe.text_encoder, seed=seed, conv=False))


def _newest_png(data_dir: Path) -> Path | None:
    pngs = list((data_dir / "outputs").rglob("*.png"))
    return max(pngs, key=lambda p: p.stat().st_mtime_ns) if pngs else None


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("cm-ui-data")
    if not FAKE:  # a LoRA with its preview image, there before start-up
        from PIL import Image

        lora_dir = data_dir / "models" / "Lora"
        lora_dir.mkdir(parents=True)
        _lora(lora_dir / "inked.safetensors", seed=1, scratch=tmp_path_factory.mktemp("cm-ui-scratch"))
        Image.new("RGB", (48, 48), (30, 160, 90)).save(lora_dir / "inked.preview.png")
    env = {"CREATIONMIX_FAKE_STEP_DELAY": "0.02"} if FAKE else {}
    args = ["--data-dir", str(data_dir), "--auth", f"{USER}:{PASSWORD}", "--max-queue", "4"]
    with serve("tests/fake_app.py" if FAKE else "app.py", args, data_dir / "server.log", ready=http_ready(),
               env=env, timeout=START_TIMEOUT_S) as live:
        yield {"url": live.url + "/", "data_dir": data_dir, "log": live.log_path,
               "scratch": tmp_path_factory.mktemp("cm-scr")}


@pytest.fixture(scope="module")
def page(server):
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport=VIEWPORT, accept_downloads=True)
        pg = context.new_page()
        pg.set_default_timeout(60_000)
        pg.goto(server["url"])
        pg.get_by_label("username").fill(USER)
        pg.get_by_label("password").fill(PASSWORD)
        pg.get_by_role("button", name="Login").click()
        pg.wait_for_selector("#cm_generate")
        # The token counters come from the service's first (slow) call: wait so the layout has settled.
        pg.wait_for_function("() => /\\d+\\/75/.test(document.querySelector('#cm_prompt_tokens')?.innerText || '')",
                             timeout=120_000)
        yield pg
        context.close()
        browser.close()


def _set_number(pg, elem_id: str, value) -> None:
    box = pg.locator(f"#{elem_id} input[type=number]").first
    box.fill(str(value))
    box.press("Enter")
    box.blur()


def _gallery_srcs(pg) -> list[str]:
    return pg.locator("#cm_gallery img").evaluate_all("els => els.map(e => e.src)")


def _generate(pg, server, previous: Path | None, *, keyboard: bool = False) -> Path:
    if keyboard:  # A1111's Ctrl+Enter in the prompt box
        pg.locator("#cm_prompt textarea").press("Control+Enter")
    else:
        pg.locator("#cm_generate").click()
    deadline = time.monotonic() + GENERATE_TIMEOUT_MS / 1000
    while time.monotonic() < deadline:
        newest = _newest_png(server["data_dir"])
        if newest is not None and newest != previous and _gallery_srcs(pg):
            srcs = _gallery_srcs(pg)
            if any(newest.name in s for s in srcs):
                return newest
        pg.wait_for_timeout(500)
    pg.screenshot(path=str(ARTIFACTS / "ui-generate-timeout.png"), full_page=True)
    pytest.fail("no new image in the gallery; server log:\n" + server["log"].read_text(errors="replace")[-4000:])


def _shot(pg, name: str) -> None:
    pg.screenshot(path=str(ARTIFACTS / name))  # the viewport, as the user sees it


def _tab(pg, name: str) -> None:
    pg.get_by_role("tab", name=name, exact=True).click()
    pg.wait_for_timeout(300)


def _error_badges(pg) -> int:
    """gradio's red "Error" badges left on fields after a failed event."""
    return pg.evaluate("""() => Array.from(document.querySelectorAll('.error, .wrap span'))
        .filter(e => e.offsetParent !== null && (e.innerText || '').trim() === 'Error').length""")


def _in_view(box) -> bool:
    return box is not None and box["y"] >= 0 and box["y"] + 120 <= VIEWPORT["height"]


def test_first_viewport_shows_settings_beside_the_output(page):
    pg = page
    pg.evaluate("window.scrollTo(0, 0)")
    settings = pg.locator("#cm_sampler").bounding_box()
    steps = pg.locator("#cm_steps").bounding_box()
    output = pg.locator("#cm_output_column").bounding_box()
    prompt = pg.locator("#cm_prompt").bounding_box()
    _shot(pg, "ui-1-first-view.png")
    assert _in_view(settings) and _in_view(steps) and _in_view(output)
    assert output["x"] > settings["x"] + settings["width"] - 1  # side by side ...
    assert abs(output["y"] - pg.locator("#cm_settings_column").bounding_box()["y"]) < 80
    assert settings["y"] > prompt["y"] + prompt["height"]  # ... under the prompts
    assert not pg.locator("#cm_presets").is_visible()  # presets are a tab, not an open table above


def test_lora_card_shows_its_preview(page):
    if FAKE:
        pytest.skip("the fake service's LoRA is not on disk")
    pg = page
    _tab(pg, "Lora")
    img = pg.locator("#cm_loras img").first
    img.wait_for(timeout=20_000)
    pg.wait_for_function("() => (document.querySelector('#cm_loras img') || {}).naturalWidth > 0")
    assert "inked.preview.png" in img.get_attribute("src")
    assert pg.locator("#cm_loras").get_by_text("inked", exact=True).is_visible()
    _shot(pg, "ui-2-lora-card.png")
    _tab(pg, "Generation")


def test_paste_from_the_prompt_box_sets_every_field_without_error_badges(page):
    pg = page
    _tab(pg, "Generation")
    # First something that is no infotext: a warning, nothing changed, no badge.
    pg.locator("#cm_prompt textarea").fill("just words")
    pg.locator("#cm_paste_apply").click()
    pg.get_by_text(re.compile("no generation parameters")).first.wait_for(timeout=30_000)
    assert pg.locator("#cm_prompt textarea").input_value() == "just words" and _error_badges(pg) == 0
    pg.locator("#cm_prompt textarea").fill(PASTED)
    pg.locator("#cm_paste_apply").click()
    pg.wait_for_function("() => document.querySelector('#cm_seed input').value === '424242'", timeout=30_000)
    pg.wait_for_timeout(500)
    num = lambda eid: float(pg.locator(f"#{eid} input[type=number]").first.input_value())  # noqa: E731
    assert pg.locator("#cm_prompt textarea").input_value() == "1girl, solo, looking at viewer"
    assert pg.locator("#cm_negative_prompt textarea").input_value() == "worst quality, lowres"
    assert pg.locator("#cm_sampler input").input_value() == "Euler a"
    assert (num("cm_steps"), num("cm_cfg_scale"), num("cm_width"), num("cm_height"), num("cm_clip_skip")) == (
        7, 6.5, 96, 128, 2)
    assert pg.locator("#cm_enable_hires input[type=checkbox]").is_checked()
    assert (num("cm_hires_scale"), num("cm_hires_steps"), num("cm_denoising_strength")) == (1.5, 3, 0.45)
    _shot(pg, "ui-3-pasted.png")
    assert _error_badges(pg) == 0


def test_limits_steps_zero_and_far_over_usual_confirm(page, server):
    pg = page
    before = _newest_png(server["data_dir"])
    _set_number(pg, "cm_steps", 0)
    assert pg.locator("#cm_steps input[type=number]").first.input_value() == "0"  # not clamped to 1
    pg.locator("#cm_generate").click()
    pg.get_by_text(re.compile(r"steps must be in \[1, 150\], got 0")).first.wait_for(timeout=30_000)
    _set_number(pg, "cm_steps", 3)
    pg.locator("#cm_enable_hires input[type=checkbox]").uncheck()
    for elem_id, value in (("cm_width", 4096), ("cm_height", 4096)):
        _set_number(pg, elem_id, value)
    assert pg.locator("#cm_width input[type=number]").first.input_value() == "4096"  # no clamp to 2048
    pg.get_by_text(re.compile("far over the usual")).first.wait_for(timeout=30_000)  # the estimate line
    pg.locator("#cm_generate").click()
    pg.locator("#cm_confirm_generate").wait_for(state="visible", timeout=30_000)
    assert "GB" in pg.locator("#cm_confirm_text").inner_text()
    _shot(pg, "ui-4-confirm-big-run.png")
    pg.locator("#cm_confirm_cancel").click()
    pg.locator("#cm_confirm_generate").wait_for(state="hidden", timeout=10_000)
    assert _newest_png(server["data_dir"]) == before  # nothing ran


def test_live_preview_visible_and_interrupt_keeps_the_partial_png(page, server):
    from PIL import Image

    pg = page
    before = _newest_png(server["data_dir"])
    for elem_id, value in (("cm_width", 64), ("cm_height", 64), ("cm_steps", 60)):
        _set_number(pg, elem_id, value)
    pg.locator("#cm_prompt textarea").fill("a lighthouse")
    pg.locator("#cm_generate").click()
    pg.wait_for_function("""() => { const i = document.querySelector('#cm_preview img');
        return i && i.naturalWidth > 0 && i.getBoundingClientRect().width > 100; }""", timeout=GENERATE_TIMEOUT_MS)
    box = pg.locator("#cm_preview img").bounding_box()
    assert _in_view(box)
    # One progress line, over nothing: gradio's own overlay is off for the run.
    assert pg.locator("#cm_progress").is_visible() and "First pass: step" in pg.locator("#cm_progress").inner_text()
    overlays = pg.locator(".progress-text:visible, .eta-bar:visible").evaluate_all(
        "els => els.map(e => (e.closest('[id]') || {}).id + ':' + e.className + ':' + e.innerText)")
    assert overlays == []
    _shot(pg, "ui-5-live-preview.png")
    step = int(re.search(r"step (\d+)/60", pg.locator("#cm_progress").inner_text()).group(1))
    pg.locator("#cm_interrupt").click()
    deadline = time.monotonic() + 60
    kept = None
    while time.monotonic() < deadline:
        kept = _newest_png(server["data_dir"])
        if kept not in (None, before) and any(kept.name in s for s in _gallery_srcs(pg)):
            break
        pg.wait_for_timeout(300)
    assert kept not in (None, before), "interrupt kept no PNG"
    with Image.open(kept) as im:
        assert im.size == (64, 64) and "Steps: 60" in im.info["parameters"]  # the infotext A1111 writes
    assert any(kept.name in s for s in _gallery_srcs(pg)), (kept, _gallery_srcs(pg), server["log"].read_text()[-3000:])
    assert step < 60
    _shot(pg, "ui-6-interrupted.png")


def test_lora_added_after_start_appears_in_previews_tab_after_refresh(page, server):
    if FAKE:
        pytest.skip("the fake service has no previews tab")
    pg = page
    _lora(server["data_dir"] / "models" / "Lora" / "late_addition.safetensors", seed=2, scratch=server["scratch"])
    _tab(pg, "LoRA previews")
    assert pg.locator("#cm_pv_steps textarea, #cm_pv_steps input").first.input_value() == ""  # not 0
    pg.locator("#cm_pv_lora input").click()
    assert pg.get_by_role("option", name="late_addition").count() == 0
    pg.keyboard.press("Escape")
    pg.locator("#cm_pv_refresh").click()
    pg.wait_for_timeout(1500)
    pg.locator("#cm_pv_lora input").click()
    pg.get_by_role("option", name="late_addition").wait_for(timeout=20_000)
    _shot(pg, "ui-7-previews-refresh.png")
    pg.keyboard.press("Escape")
    _tab(pg, "txt2img")


def test_preset_generate_error_and_recover(page, server):
    from PIL import Image

    pg = page
    _tab(pg, "Presets")
    card = pg.locator("#cm_presets").get_by_text("In general", exact=True).first
    try:
        card.wait_for(timeout=20_000)
    except Exception:
        pg.screenshot(path=str(ARTIFACTS / "ui-no-preset.png"), full_page=True)
        pytest.fail("no 'In general' preset card; server log:\n" + server["log"].read_text(errors="replace")[-3000:])
    card.click()
    _tab(pg, "Generation")
    expect_seed = "106059479"
    pg.wait_for_function("() => document.querySelector('#cm_seed input').value === '106059479'")
    assert pg.locator("#cm_seed input").input_value() == expect_seed
    assert pg.locator("#cm_enable_hires input[type=checkbox]").is_checked()

    for elem_id, value in (("cm_width", 128), ("cm_height", 192), ("cm_steps", 4), ("cm_hires_scale", 1.5),
                           ("cm_hires_steps", 2)):
        _set_number(pg, elem_id, value)
    pg.screenshot(path=str(ARTIFACTS / "ui-8-preset-loaded.png"), full_page=True)

    first = _generate(pg, server, _newest_png(server["data_dir"]))
    _shot(pg, "ui-9-generated.png")
    with Image.open(first) as im:
        info = im.info.get("parameters", "")
        assert im.size == (192, 288)
    assert "Seed: 106059479" in info and "Size: 128x192" in info
    assert "Hires upscale: 1.5" in info and "Hires steps: 2" in info and "Steps: 4" in info
    assert "seed 106059479" in pg.locator("#cm_gallery").inner_text() or \
        "106059479" in pg.locator("#cm_seeds").inner_text()
    assert "Seed: 106059479" in pg.locator("#cm_infotext textarea").input_value()

    # The gallery serves the PNG as written (no WebP conversion): metadata survives a download.
    src = next(s for s in _gallery_srcs(pg) if first.name in s)
    served = pg.request.get(src)
    assert served.ok
    with Image.open(io.BytesIO(served.body())) as im:
        assert im.format == "PNG" and im.info.get("parameters") == info

    # Invalid width: the engine's message is shown and nothing is written.
    _set_number(pg, "cm_width", 100)
    pg.locator("#cm_generate").click()
    err = pg.locator("#cm_run_error").get_by_text(re.compile(r"width must be a multiple of 8")).first
    err.wait_for(timeout=60_000)
    _shot(pg, "ui-10-error.png")
    assert _error_badges(pg) == 0
    assert _newest_png(server["data_dir"]) == first

    # ... and the next valid run works.
    _set_number(pg, "cm_width", 144)
    second = _generate(pg, server, first, keyboard=True)
    with Image.open(second) as im:
        assert im.size == (216, 288) and "Size: 144x192" in im.info["parameters"]
    _shot(pg, "ui-11-recovered.png")


def test_gradio_client_named_generate_endpoint(server):
    from gradio_client import Client

    client = Client(server["url"], auth=(USER, PASSWORD), verbose=False)
    out = client.predict(prompt="a red cube", negative_prompt="blurry", steps=3, sampler="Euler", cfg_scale=5.0,
                         seed=1234, width=64, height=96, api_name="/generate")
    assert out["seeds"] == [1234] and len(out["images"]) == 1
    path = Path(out["images"][0])
    assert path.is_file() and (server["data_dir"] / "outputs") in path.parents
    assert out["infotexts"][0].startswith("a red cube\nNegative prompt: blurry\n")
    assert "Seed: 1234" in out["infotexts"][0] and "Sampler: Euler" in out["infotexts"][0]
    with pytest.raises(Exception, match="width must be a multiple of 8"):
        client.predict(prompt="x", width=100, api_name="/generate")


def test_auth_refuses_wrong_password(server):
    import httpx

    bad = httpx.post(server["url"] + "login", data={"username": USER, "password": "wrong"}, timeout=10)
    assert bad.status_code >= 400 and "access-token" not in "".join(bad.headers.get_list("set-cookie"))
    assert httpx.get(server["url"] + "config", timeout=10).status_code == 401
    good = httpx.post(server["url"] + "login", data={"username": USER, "password": PASSWORD}, timeout=10)
    assert good.status_code == 200 and "access-token" in "".join(good.headers.get_list("set-cookie"))


def test_wrong_password_keeps_the_user_name(page, server):
    context = page.context.browser.new_context(viewport=VIEWPORT)  # a fresh, logged-out session
    try:
        pg = context.new_page()
        pg.goto(server["url"])
        pg.get_by_label("username").fill(USER)
        pg.get_by_label("password").fill("wrong")
        pg.get_by_role("button", name="Login").click()
        pg.wait_for_timeout(1500)
        assert pg.get_by_label("username").input_value() == USER
        pg.screenshot(path=str(ARTIFACTS / "ui-12-login-refused.png"))
        pg.get_by_label("password").fill(PASSWORD)
        pg.get_by_role("button", name="Login").click()
        pg.wait_for_selector("#cm_generate", timeout=60_000)
    finally:
        context.close()
