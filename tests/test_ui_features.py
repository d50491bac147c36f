"""Issue 15 behaviours that need no browser: limits as one truth, run estimate and confirm, ETA over both passes,
styles, keyboard emphasis editing, icons without emoji, checkpoint notice, progress line, login script."""
from __future__ import annotations

import re

import gradio as gr
import pytest

from creationmix.params import LIMITS, GenerationParams
from creationmix.styles import apply_styles, load_styles, merge_prompt
from creationmix.jobs import ProgressEvent
from creationmix.ui import build_ui, handlers as h
from creationmix.ui.estimate import EtaTracker, StepRate, estimate
from creationmix.ui.keyboard import emphasis_edit
from tests.fake_service import FakeService


@pytest.fixture()
def service(tmp_path):
    return FakeService(tmp_path / "data")


@pytest.fixture()
def studio(service):
    _, studio = build_ui(service)
    return studio


def values_of(studio, **over):
    return {name: comp.value for name, comp in studio.f.items()} | over


def quiet(monkeypatch):
    shown = []
    monkeypatch.setattr(gr, "Warning", lambda msg, *a, **k: shown.append(msg))
    monkeypatch.setattr(gr, "Info", lambda msg, *a, **k: shown.append(msg))
    return shown


# -- limits ------------------------------------------------------------------------------------------------------
def test_sliders_take_their_range_from_params_limits(studio):
    # (The variation-seed and advanced-sampling sliders keep their own tables for now.)
    sliders = {n: c for n, c in studio.f.items() if isinstance(c, gr.Slider) and n in LIMITS}
    assert {"steps", "width", "height", "cfg_scale", "batch_count", "batch_size", "hires_steps"} <= set(sliders)
    for name, slider in sliders.items():
        lim = LIMITS[name]
        lo = 0 if lim.zero_ok or name == "steps" else lim.lo  # steps: a typed 0 must reach the params' message
        assert (slider.minimum, slider.maximum, slider.step) == (lo, lim.hi, lim.step)
    # ... so whatever a slider takes, the params take (no silent clamp to a narrower UI range).
    GenerationParams(width=LIMITS["width"].hi, height=LIMITS["height"].hi)


def test_steps_zero_is_a_clear_error_not_one(studio, service, monkeypatch):
    quiet(monkeypatch)
    final = list(studio._generate(None, progress=lambda *a, **k: None, **values_of(studio, steps=0)))[-1]
    assert "steps must be in [1, 150], got 0" in final[studio.run_error]["value"]
    assert service.calls == []


def test_width_error_names_the_same_bounds_as_the_slider():
    lim = LIMITS["width"]
    with pytest.raises(Exception, match=f"between {lim.lo} and {lim.hi}"):
        GenerationParams(width=100)


# -- estimate and confirm ------------------------------------------------------------------------------------
def test_far_over_the_usual_asks_first_and_runs_after_confirm(studio, service, monkeypatch):
    shown = quiet(monkeypatch)
    big = values_of(studio, width=4096, height=4096, steps=2, seed=5)
    outs = list(studio._generate(None, progress=lambda *a, **k: None, **big))
    assert service.calls == [] and len(outs) == 1
    assert outs[0][studio.confirm_box]["visible"] is True
    assert "far over the usual" in outs[0][studio.confirm_md] and "GB" in outs[0][studio.confirm_md]
    assert any("Generate anyway" in m for m in shown)
    asked = []  # the fake renders it small: the test is about what the UI sends
    monkeypatch.setattr(service, "generate", lambda params, **k: asked.append(params) or
                        FakeService.generate(service, params.replace(width=64, height=64), **k))
    final = list(studio._generate_confirmed(None, progress=lambda *a, **k: None, **big))[-1]
    assert asked[-1].width == 4096 and final[studio.result]["seeds"] == [5]


def test_estimate_uses_the_measured_rate_and_latent_area():
    rate = StepRate()
    p = GenerationParams(width=512, height=512, steps=20)
    assert estimate(p, rate).seconds is None and not estimate(p, rate).far_over
    rate.update(seconds=10.0, steps=20, area=64 * 64, batch_size=1)  # 0.5 s/step at 512x512
    assert estimate(p, rate).seconds == pytest.approx(10.0)
    hires = p.replace(enable_hires=True, hires_scale=2.0, hires_steps=10)
    assert estimate(hires, rate).seconds == pytest.approx(10.0 + 10 * 0.5 * 4)  # 4x the latent area per step
    slow = p.replace(steps=150, batch_count=40)
    assert estimate(slow, rate).far_over and "at the speed measured" in estimate(slow, rate).reason
    text = estimate(p, rate).text()
    assert text.startswith("Estimate: ~") and "0:10" in text


def test_estimate_line_follows_the_fields(studio):
    assert "GB" in studio._estimate(**values_of(studio))
    assert "far over the usual" in studio._estimate(**values_of(studio, width=4096, height=4096))
    assert studio._estimate(**values_of(studio, width=100)).startswith("⚠ width must be")


def test_eta_covers_both_passes_priced_by_latent_area():
    clock = iter([0.0, 1.0, 2.0, 3.0]).__next__
    p = GenerationParams(width=64, height=64, steps=10, enable_hires=True, hires_scale=2.0, hires_steps=5)
    eta = EtaTracker(p, clock=clock)
    ev = lambda step, name="first", total=10: ProgressEvent(step, total, name, 0, 1)  # noqa: E731
    assert eta.update(ev(1)) is None  # the first step pays warm-up: not measured
    eta.update(ev(2))
    left = eta.update(ev(3))  # 1 s per first-pass step
    assert left == pytest.approx(7 * 1.0 + 5 * 4.0)  # hires steps cost 4x (2x scale -> 4x latent area)
    assert eta.fraction(ev(3)) == pytest.approx(3 / (10 + 5 * 4))
    assert eta.fraction(ProgressEvent(5, 5, "hires", 0, 1)) == 1.0


def test_progress_line_and_live_preview_during_a_run(studio, service, monkeypatch):
    monkeypatch.setattr("creationmix.ui.app.PREVIEW_EVERY_S", 0.0)
    outs = list(studio._generate(None, progress=lambda *a, **k: None,
                                 **values_of(studio, steps=4, width=128, height=64)))
    start, running, final = outs[0], outs[1:-1], outs[-1]
    assert start[studio.gallery]["visible"] is False and start[studio.preview]["visible"] is True
    shots = [o[studio.preview]["value"] for o in running if studio.preview in o]
    assert shots and shots[0].size == (256, 128)  # the 1/8 latent preview scaled up, aspect kept
    lines = [o[studio.progress_html] for o in running]
    assert all(re.search(r"First pass: step \d/4", line) for line in lines)
    assert all(studio.gallery not in o for o in running)  # nothing else redrawn while sampling
    assert final[studio.gallery]["visible"] is True and final[studio.progress_html]["visible"] is False


def test_engine_error_puts_the_gallery_back(studio, monkeypatch):
    quiet(monkeypatch)
    gen = studio._generate(None, progress=lambda *a, **k: None, **values_of(studio, prompt="<lora:broken:1>"))
    assert next(gen)[studio.gallery]["visible"] is False
    restored = next(gen)
    assert restored[studio.gallery]["visible"] is True and restored[studio.preview]["visible"] is False
    assert "not a LoRA file" in restored[studio.run_error]["value"]
    assert list(gen) == []


# -- styles --------------------------------------------------------------------------------------------------
def test_a1111_styles_csv_and_merge_rule(tmp_path):
    (tmp_path / "styles.csv").write_text(
        'name,prompt,negative_prompt\n"Anime","masterpiece, {prompt}, anime","lowres"\n'
        '"Painterly","oil painting",""\n"Empty","",""\n', encoding="utf-8")
    other = tmp_path / "a1111"
    other.mkdir()
    (other / "styles.csv").write_text("name,prompt,negative_prompt\nAnime,ignored,x\nFilm,film grain,\n")
    styles = load_styles([tmp_path, other])
    assert [s.name for s in styles] == ["Anime", "Painterly", "Empty", "Film"]  # data dir wins a repeated name
    assert merge_prompt("masterpiece, {prompt}", "1girl") == "masterpiece, 1girl"
    assert merge_prompt("oil painting", "1girl") == "1girl, oil painting"
    assert merge_prompt("oil painting", "") == "oil painting"
    assert apply_styles("1girl", "", ["Anime", "Painterly", "Empty"], styles) == (
        "masterpiece, 1girl, anime, oil painting", "lowres")
    with pytest.raises(Exception, match="unknown style"):
        apply_styles("x", "", ["Nope"], styles)


def test_selected_styles_apply_at_generate_and_by_button(service, monkeypatch):
    quiet(monkeypatch)
    (service.folders.data_dir / "styles.csv").write_text("name,prompt,negative_prompt\nSoft,soft light,blurry\n")
    _, studio = build_ui(service)
    assert studio.styles.choices == [("Soft", "Soft")]
    list(studio._generate(None, progress=lambda *a, **k: None,
                          **values_of(studio, prompt="a fox", steps=2, width=64, height=64), styles=["Soft"]))
    assert service.calls[-1].prompt == "a fox, soft light" and service.calls[-1].negative_prompt == "blurry"
    assert studio._apply_styles("a fox", "", ["Soft"]) == ("a fox, soft light", "blurry", [])


# -- keyboard ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, sel, up, want", [
    ("a cat, sitting", (2, 5), True, "a (cat:1.1), sitting"),
    ("a (cat:1.1), sitting", (3, 6), True, "a (cat:1.2), sitting"),
    ("a (cat:1.1), sitting", (3, 6), False, "a cat, sitting"),
    ("a cat, sitting", (3, 3), False, "a (cat:0.9), sitting"),  # no selection: the word under the cursor
    ("red hair, blue eyes", (0, 8), True, "(red hair:1.1), blue eyes"),
])
def test_ctrl_up_down_emphasis(text, sel, up, want):
    out, start, end = emphasis_edit(text, *sel, up)
    assert out == want
    assert out[start:end] in ("cat", "red hair")  # the edited words stay selected


# -- icons, notice -------------------------------------------------------------------------------------------
def test_buttons_have_no_emoji(studio):
    emoji = re.compile("[\U0001F300-\U0001FAFF\u2600-\u27BF\uFE0F\u267B]")
    buttons = [b for b in studio.blocks.blocks.values() if isinstance(b, gr.Button)]
    assert buttons and not [b.value for b in buttons if emoji.search(str(b.value))]
    tools = [b for b in buttons if "cm-tool" in (b.elem_classes or [])]
    assert tools and all(any(c.startswith("cm-icon-") for c in b.elem_classes) for b in tools)


def test_not_creationmix_notice_does_not_block(studio, service):
    up = studio._notice("tiny_demo.safetensors")
    assert up["visible"] is True and "not CreationMix V1" in up["value"]
    assert studio._notice(None)["visible"] is False
    assert "Could not check" in studio._notice("gone.safetensors")["value"]


# -- login ---------------------------------------------------------------------------------------------------
def test_login_page_gets_the_keep_username_script():
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.responses import HTMLResponse, JSONResponse
    from starlette.routing import Route
    from starlette.testclient import TestClient

    from creationmix.ui.login import LOGIN_SCRIPT, LoginScriptMiddleware

    app = Starlette(routes=[Route("/", lambda r: HTMLResponse("<html><head></head><body>login</body></html>")),
                            Route("/config", lambda r: JSONResponse({"a": 1}))],
                    middleware=[Middleware(LoginScriptMiddleware)])
    client = TestClient(app)
    page = client.get("/")
    assert LOGIN_SCRIPT in page.text and page.text.index(LOGIN_SCRIPT) < page.text.index("</head>")
    assert int(page.headers["content-length"]) == len(page.content)
    assert client.get("/config").json() == {"a": 1}


# -- settings tab ----------------------------------------------------------------------------------------------
def test_settings_tab_saves_defaults_for_new_pages(service, tmp_path, monkeypatch):
    import json

    from creationmix.ui.settings_tab import load_defaults

    path = tmp_path / "ui-settings.json"
    from creationmix.ui.settings_tab import SettingsTab

    _, studio = build_ui(service, settings_path=path)
    tab = SettingsTab(path, studio.f)
    out = tab.save(rng="CPU", emphasis="No norm", prompt_syntax="A1111", clip_skip=2, sampler="Euler a",
                   schedule="Karras")
    assert out[0].startswith("Applied to this page") and "CPU" in out[1:]  # the open page follows
    assert json.loads(path.read_text())["rng"] == "CPU"
    _, fresh = build_ui(service, settings_path=path)
    assert (fresh.f["rng"].value, fresh.f["emphasis"].value, fresh.f["clip_skip"].value) == ("CPU", "No norm", 2)
    with pytest.raises(gr.Error, match="Settings not saved"):
        tab.save(rng="TPU", emphasis="Original", prompt_syntax="A1111", clip_skip=1, sampler="Euler",
                 schedule="Automatic")
    path.write_text('{"rng": "CPU", "colour": "blue"}')  # unknown key: the file is ignored, the page starts
    assert load_defaults(path).overrides() == {}
