"""End-to-end: `python app.py` in a subprocess, driven by Chromium (Playwright) and by gradio_client.

Runs the real service (which builds the tiny demo checkpoint in an empty data dir). Skips with a reason when
/usr/bin/chromium, playwright or the real service (torch) is missing. CREATIONMIX_UI_TEST_FAKE=1 runs the same
flow against tests/fake_service.py via tests/fake_app.py (UI development only). Screenshots go to test-artifacts/ (gitignored).
"""
from __future__ import annotations

import importlib.util
import io
import os
import re
import socket
import subprocess
import sys
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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _newest_png(data_dir: Path) -> Path | None:
    pngs = list((data_dir / "outputs").rglob("*.png"))
    return max(pngs, key=lambda p: p.stat().st_mtime_ns) if pngs else None


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("cm-ui-data")
    port = _free_port()
    env = dict(os.environ, PYTHONUNBUFFERED="1", GRADIO_ANALYTICS_ENABLED="False")
    if FAKE:
        env.update(CREATIONMIX_FAKE_STEP_DELAY="0.02")
    log_path = data_dir / "server.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "tests/fake_app.py" if FAKE else "app.py", "--data-dir", str(data_dir), "--port", str(port),
                                 "--auth", f"{USER}:{PASSWORD}", "--max-queue", "4"],
                                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        import httpx

        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"app.py exited with {proc.returncode}:\n{log_path.read_text(errors='replace')[-4000:]}")
            try:
                if httpx.get(url + "config", timeout=2).status_code in (200, 401):
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"app.py did not start in {START_TIMEOUT_S}s:\n"
                            f"{log_path.read_text(errors='replace')[-4000:]}")
            time.sleep(0.5)
        yield {"url": url, "data_dir": data_dir, "log": log_path}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def page(server):
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1400, "height": 1800}, accept_downloads=True)
        pg = context.new_page()
        pg.set_default_timeout(60_000)
        pg.goto(server["url"])
        pg.get_by_label("username").fill(USER)
        pg.get_by_label("password").fill(PASSWORD)
        pg.get_by_role("button", name="Login").click()
        pg.wait_for_selector("#cm_generate")
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


def test_preset_generate_error_and_recover(page, server):
    from PIL import Image

    pg = page
    card = pg.locator("#cm_presets").get_by_text("In general", exact=True).first
    try:
        card.wait_for(timeout=20_000)
    except Exception:
        pg.screenshot(path=str(ARTIFACTS / "ui-no-preset.png"), full_page=True)
        pytest.fail("no 'In general' preset card; server log:\n" + server["log"].read_text(errors="replace")[-3000:])
    card.click()
    expect_seed = "106059479"
    pg.wait_for_function("() => document.querySelector('#cm_seed input').value === '106059479'")
    assert pg.locator("#cm_seed input").input_value() == expect_seed
    assert pg.locator("#cm_enable_hires input[type=checkbox]").is_checked()

    for elem_id, value in (("cm_width", 128), ("cm_height", 192), ("cm_steps", 4), ("cm_hires_scale", 1.5),
                           ("cm_hires_steps", 2)):
        _set_number(pg, elem_id, value)
    pg.screenshot(path=str(ARTIFACTS / "ui-1-preset-loaded.png"), full_page=True)

    first = _generate(pg, server, _newest_png(server["data_dir"]))
    pg.screenshot(path=str(ARTIFACTS / "ui-2-generated.png"), full_page=True)
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
    err = pg.get_by_text(re.compile(r"width must be a multiple of 8")).first
    err.wait_for(timeout=60_000)
    pg.screenshot(path=str(ARTIFACTS / "ui-3-error.png"), full_page=True)
    assert _newest_png(server["data_dir"]) == first

    # ... and the next valid run works.
    _set_number(pg, "cm_width", 144)
    second = _generate(pg, server, first, keyboard=True)
    with Image.open(second) as im:
        assert im.size == (216, 288) and "Size: 144x192" in im.info["parameters"]
    pg.screenshot(path=str(ARTIFACTS / "ui-4-recovered.png"), full_page=True)


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
