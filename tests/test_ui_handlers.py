"""UI handlers against a torch-free FakeService: fields <-> GenerationParams by name, presets, infotext paste,
LoRA sliders, errors as gr.Error, PNG Info, and the UI package staying torch-free."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import gradio as gr
import pytest
from PIL import Image

from creationmix.params import GenerationParams
from creationmix.jobs import Control
from creationmix.ui import build_ui, handlers as h, lora_tags
from creationmix.ui.fields import FIELD_NAMES, SAME_SAMPLER, fields_from_params, params_from_fields
from creationmix.ui.launcher import SHARE_WARNING, parse_args, parse_auth
from tests.fake_service import IN_GENERAL, FakeService, format_infotext

ROOT = Path(__file__).resolve().parents[1]


def no_progress(*args, **kwargs):
    return None


@pytest.fixture()
def service(tmp_path):
    return FakeService(tmp_path / "data")


@pytest.fixture()
def studio(service):
    _, studio = build_ui(service)
    return studio


def by_name(studio, updates: dict) -> dict:
    """{component: value} from a handler -> {field name: value}."""
    names = {id(c): n for n, c in studio.f.items()}
    return {names[id(c)]: v for c, v in updates.items() if id(c) in names}


def values_of(studio) -> dict:
    """The page's current widget values (what inputs_kwargs would pass), by field name."""
    return {name: comp.value for name, comp in studio.f.items()}


def run_generate(studio, **values):
    outs = list(studio._generate(None, progress=no_progress, **values))
    return outs[-1]


def run_error(studio, **values) -> str:
    """The error a run shows under the output (runs do not raise: see Studio._run), with the gallery back."""
    final = run_generate(studio, **values)
    assert final[studio.run_error]["visible"] is True and final[studio.gallery]["visible"] is True
    assert studio.result not in final  # the previous result is kept
    return final[studio.run_error]["value"]


# -- fields ----------------------------------------------------------------------------------------------------
def test_every_params_field_has_a_widget(studio):
    assert set(studio.f) == set(FIELD_NAMES)


def test_default_widgets_build_default_params(studio):
    p = params_from_fields(values_of(studio))
    assert p.replace(checkpoint=None) == GenerationParams()
    assert p.checkpoint == "tiny_demo.safetensors"


def test_params_from_fields_coerces_widget_types():
    p = params_from_fields({"steps": 4.0, "width": 128.0, "height": 192, "seed": 7.0, "cfg_scale": 5,
                            "hires_sampler": SAME_SAMPLER, "checkpoint": "", "enable_hires": 1,
                            "hires_scale": 1.5, "hires_steps": 2.0})
    assert (p.steps, p.width, p.height, p.seed, p.cfg_scale) == (4, 128, 192, 7, 5.0)
    assert p.hires_sampler is None and p.checkpoint is None and p.enable_hires is True
    assert p.hires_size == (192, 288)


@pytest.mark.parametrize("values, message", [
    ({"width": 100}, "width must be a multiple of 8"),
    ({"steps": 4.5}, "steps must be a whole number"),
    ({"seed": None}, "seed is empty"),
    ({"sampler": "Euler z"}, "unknown sampler"),
    ({"nonsense": 1}, "unknown field"),
])
def test_bad_field_values_become_gr_error(values, message):
    with pytest.raises(gr.Error, match=message):
        h.build_params(values)


def test_fields_round_trip(studio):
    values = fields_from_params(IN_GENERAL)
    assert values["hires_sampler"] == SAME_SAMPLER and "checkpoint" not in values
    assert params_from_fields(values) == IN_GENERAL


# -- presets and infotext -----------------------------------------------------------------------------------
def test_preset_click_sets_every_field(studio, service):
    ids = [p.id for p in service.list_presets()]
    updates = studio._preset_clicked(ids.index("in-general"), ids, "tiny_demo.safetensors")
    got = by_name(studio, updates)
    assert set(got) == set(FIELD_NAMES) - {"checkpoint"}  # the preset names no model: keep the current one
    assert params_from_fields(got) == IN_GENERAL
    assert got["seed"] == 106059479 and got["enable_hires"] is True
    assert updates[studio.hires_panel].open is True  # hires settings become visible


def test_preset_warning_is_shown(studio, service, monkeypatch):
    shown = []
    monkeypatch.setattr(gr, "Warning", lambda msg, *a, **k: shown.append(msg))
    ids = [p.id for p in service.list_presets()]
    updates = studio._preset_clicked(ids.index("portrait"), ids, "tiny_demo.safetensors")
    got = by_name(studio, updates)
    assert got["prompt"] == "portrait of a knight" and got["seed"] == 42 and "checkpoint" not in got
    assert any("missing_model.safetensors" in m for m in shown)


def test_save_preset_builds_params_from_fields(studio, service, monkeypatch):
    monkeypatch.setattr(gr, "Info", lambda *a, **k: None)
    values = values_of(studio) | {"prompt": "saved prompt", "steps": 7, "seed": 3}
    dataset, ids = studio._save_preset("My look", **values)
    params, title = service.saved[-1]
    assert title == "My look" and params.prompt == "saved prompt" and (params.steps, params.seed) == (7, 3)
    assert ids[-1] == "my-look" and dataset.raw_samples[-1][1] == "My look"
    with pytest.raises(gr.Error, match="title"):
        studio._save_preset("  ", **values)


def test_paste_infotext_sets_fields(studio):
    p = GenerationParams(prompt="red fox", negative_prompt="ugly", steps=12, sampler="Euler a", cfg_scale=4.5,
                         seed=1234, width=640, height=384, clip_skip=2, rng="CPU", enable_hires=True,
                         hires_scale=1.5, hires_steps=6, denoising_strength=0.35)
    got = by_name(studio, studio._paste(format_infotext(p, 1234, "tiny_demo")))
    assert params_from_fields(got) == p


def test_paste_rejects_garbage_without_touching_fields(studio, monkeypatch):
    shown = []
    monkeypatch.setattr(gr, "Warning", lambda msg, *a, **k: shown.append(msg))
    # A warning, and no update at all: raising would put gradio's red "Error" badge on every field.
    for text in ("just some words", "   "):
        updates = studio._paste(text)
        assert by_name(studio, updates) == {} and list(updates) == [studio.hires_panel]
    assert "no generation parameters" in shown[0] and "Nothing to read" in shown[1]
    with pytest.raises(gr.Error, match="no generation parameters"):
        studio.paste_values("just some words")


def test_paste_reads_the_prompt_box_or_the_last_generation(studio):
    p = GenerationParams(prompt="red fox", steps=12, sampler="Euler a", seed=1234, width=640, height=384)
    text = format_infotext(p, 1234, "tiny_demo")
    # A1111's ↙ next to Generate: the infotext was pasted into the Prompt box itself.
    got = by_name(studio, studio._paste(text, None, None))
    assert set(got) == set(FIELD_NAMES) - {"checkpoint"} and params_from_fields(got) == p
    # Empty prompt box: the selected (or last) generation's parameters.
    final = run_generate(studio, **values_of(studio) | {"prompt": "blue owl", "steps": 3, "seed": 55,
                                                          "width": 64, "height": 64})
    got = by_name(studio, studio._paste("", final[studio.result], final[studio.selected]))
    assert got["prompt"] == "blue owl" and got["seed"] == 55 and got["steps"] == 3
    # ... which "Send to txt2img" under the gallery does too.
    got = by_name(studio, studio._send_to_txt2img(final[studio.result], 0))
    assert got["prompt"] == "blue owl" and got["seed"] == 55


# -- LoRA ----------------------------------------------------------------------------------------------------
def test_lora_tag_helpers():
    prompt = "a cat <lora:paper_cut:0.8>, <lora:watercolor> and more"
    assert lora_tags.list_lora_weights(prompt) == [("paper_cut", 0.8), ("watercolor", 1.0)]
    out = lora_tags.set_lora_weight(prompt, "paper_cut", 1.25)
    assert out == "a cat <lora:paper_cut:1.25>, <lora:watercolor> and more"
    assert lora_tags.set_lora_weight("x <lora:w>", "w", 0.5) == "x <lora:w:0.5>"
    assert lora_tags.toggle_lora("a cat", "w", 0.7) == "a cat <lora:w:0.7>"
    assert lora_tags.toggle_lora("a cat <lora:w:0.7>", "w", 0.7) == "a cat"


def test_lora_card_click_and_slider_sync(studio, service):
    names = [c.name for c in service.list_loras()]
    prompt = studio._lora_clicked(names.index("paper_cut"), names, "a cozy cabin")
    assert prompt == "a cozy cabin <lora:paper_cut:0.8>"  # the card's preferred weight
    prompt = studio._lora_clicked(names.index("watercolor"), names, prompt)

    # text -> sliders
    tokens, slot_names, *sliders = studio._prompt_changed(prompt)
    assert slot_names[:2] == ["paper_cut", "watercolor"] and slot_names[2:] == [None] * (len(slot_names) - 2)
    assert sliders[0]["visible"] and sliders[0]["value"] == 0.8 and "paper_cut" in sliders[0]["label"]
    assert sliders[1]["value"] == 1.0 and sliders[2]["visible"] is False
    assert tokens.endswith("/75")

    # slider -> text
    prompt = studio._slider_moved(0)(prompt, slot_names, 0.35)
    assert prompt == "a cozy cabin <lora:paper_cut:0.35> <lora:watercolor:1>"
    _, slot_names, *sliders = studio._prompt_changed(prompt)
    assert sliders[0]["value"] == 0.35

    # hand edit -> slider follows; removing the tag hides its slider
    _, slot_names, *sliders = studio._prompt_changed("a cozy cabin <lora:watercolor:0.6>")
    assert slot_names[0] == "watercolor" and sliders[0]["value"] == 0.6 and sliders[1]["visible"] is False


def test_lora_search_and_broken_card(studio, service):
    dataset, names = studio._filter_loras("layered")
    assert names == ["paper_cut"] and len(dataset.raw_samples) == 1
    _, names = studio._filter_loras("")
    with pytest.raises(gr.Error, match="not a LoRA file"):
        studio._lora_clicked(names.index("broken"), names, "x")


# -- generation ----------------------------------------------------------------------------------------------
def test_generate_builds_one_params_from_named_fields(studio, service):
    values = values_of(studio) | {"prompt": "a lighthouse", "steps": 4, "width": 128, "height": 192,
                                  "seed": 106059479, "enable_hires": True, "hires_scale": 1.5, "hires_steps": 2,
                                  "batch_count": 2}
    final = run_generate(studio, **values)
    sent = service.calls[-1]
    assert sent == params_from_fields(values)
    assert (sent.width, sent.height, sent.hires_size, sent.hires_steps) == (128, 192, (192, 288), 2)
    state = final[studio.result]
    assert state["seeds"] == [106059479, 106059480]
    gallery = final[studio.gallery]["value"]
    assert final[studio.gallery]["visible"] is True
    assert [p for p, _ in gallery] == state["paths"] and gallery[0][1] == "seed 106059479"
    with Image.open(state["paths"][0]) as im:
        assert im.size == (192, 288) and "Seed: 106059479" in im.info["parameters"]
        assert "Hires upscale: 1.5" in im.info["parameters"] and "Hires steps: 2" in im.info["parameters"]
    assert final[studio.infotext] == state["infotexts"][0]
    assert "106059480" in final[studio.seeds_md]


def test_generate_streams_previews(studio, service, monkeypatch):
    monkeypatch.setattr("creationmix.ui.app.PREVIEW_EVERY_S", 0.0)
    seen = []
    outs = list(studio._generate(None, progress=lambda p, desc=None, **k: seen.append((p, desc)),
                                 **values_of(studio) | {"steps": 4, "width": 64, "height": 64}))
    assert any(studio.preview in o and o[studio.preview]["value"] is not None for o in outs[:-1])
    assert seen[0][0] == (1, 4) and seen[0][1].startswith("First pass: step 1/4, ETA") and seen[-1][0] == (4, 4)
    assert outs[-1][studio.preview]["visible"] is False


def test_engine_error_is_shown_and_app_keeps_working(studio, service, monkeypatch):
    warned = []
    monkeypatch.setattr(gr, "Warning", lambda msg, *a, **k: warned.append(msg))
    assert "width must be a multiple of 8" in run_error(studio, **values_of(studio) | {"width": 100})
    assert "checkpoint 'gone.safetensors' not found" in run_error(
        studio, **values_of(studio) | {"checkpoint": "gone.safetensors"})
    assert "not a LoRA file" in run_error(studio, **values_of(studio) | {"prompt": "<lora:broken:1>"})
    assert len(warned) == 3
    final = run_generate(studio, **values_of(studio) | {"width": 64, "height": 64, "steps": 2, "seed": 9})
    assert final[studio.result]["seeds"] == [9] and final[studio.run_error]["visible"] is False
    assert studio._controls == {}


def test_unexpected_error_is_reported_not_raised_raw(studio, service, monkeypatch):
    def boom(*a, **k):
        raise RuntimeError("CUDA out of memory")
    monkeypatch.setattr(service, "generate", boom)
    monkeypatch.setattr(gr, "Warning", lambda *a, **k: None)
    assert "CUDA out of memory" in run_error(studio, **values_of(studio) | {"width": 64, "height": 64})


def test_interrupt_reaches_the_engine(studio, service):
    service.step_delay = 0.01
    gen = studio._generate(None, progress=no_progress,
                           **values_of(studio) | {"steps": 50, "batch_count": 3, "width": 64, "height": 64})
    next(gen)  # running: a preview came back
    studio._controls["anonymous"].interrupt()
    final = list(gen)[-1]
    assert len(final[studio.result]["paths"]) < 3


def test_closing_the_page_interrupts_the_worker(service):
    service.step_delay = 0.01
    control = Control()
    events = h.stream_generation(service, GenerationParams(steps=100, width=64, height=64), control)
    next(events)
    events.close()  # what gradio does when the client goes away
    assert control.interrupted.is_set()


def test_api_generate_named_args(studio, service):
    import asyncio

    out = asyncio.run(studio.api_generate(prompt="api cat", steps=3, width=128, height=128, seed=77))
    assert out["seeds"] == [77] and Path(out["images"][0]).is_file()
    assert out["infotexts"][0].startswith("api cat")
    with pytest.raises(gr.Error, match="width"):
        asyncio.run(studio.api_generate(prompt="x", width=100))
    with pytest.raises(gr.Error, match="steps must be an integer, got str"):
        asyncio.run(studio.api_generate(prompt="x", steps="3"))


def test_seed_buttons(studio):
    assert studio._reuse_seed({"paths": ["a", "b"], "seeds": [5, 6], "infotexts": ["", ""]}, 1, -1) == 6
    assert studio._reuse_seed(None, None, 123) == 123


# -- PNG Info --------------------------------------------------------------------------------------------------
def test_png_info_reads_parameters_and_refuses_non_images(studio, tmp_path):
    final = run_generate(studio, **values_of(studio) | {"width": 64, "height": 64, "steps": 2, "seed": 31})
    path = final[studio.result]["paths"][0]
    text = studio._png_info(path)
    assert "Seed: 31" in text
    junk = tmp_path / "notes.txt"
    junk.write_text("hello")
    assert studio._png_info(str(junk)).endswith("not an image")
    plain = tmp_path / "plain.webp"
    Image.new("RGB", (8, 8)).save(plain)
    assert studio._png_info(str(plain)) == h.NO_PARAMETERS

    got = studio._png_to_generate(text)
    assert got[studio.f["seed"]] == 31 and got[studio.tabs].selected == "generate"
    pth, info, tabs = studio._send_to_pnginfo(final[studio.result], 0)
    assert pth == path and info == text and tabs.selected == "pnginfo"


# -- launcher ---------------------------------------------------------------------------------------------------
def test_launcher_args(tmp_path):
    f = tmp_path / "auth.txt"
    f.write_text("# users\nbob:pw:with:colons\n\ncarol:x\n")
    assert parse_auth(["alice:secret", "u1:p1,u2:p2"], f) == [
        ("alice", "secret"), ("u1", "p1"), ("u2", "p2"), ("bob", "pw:with:colons"), ("carol", "x")]
    with pytest.raises(ValueError, match="USER:PASS"):
        parse_auth(["nopassword"], None)
    a = parse_args(["--listen", "--port", "9000", "--max-queue", "3", "--auth", "a:b"])
    assert a.listen and a.port == 9000 and a.max_queue == 3 and a.auth_pairs == [("a", "b")]
    assert "anyone with the link" in SHARE_WARNING


def test_ui_package_imports_no_torch():
    code = ("import sys; import creationmix.ui, creationmix.ui.launcher, creationmix.ui.handlers; "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'diffusers', 'transformers')); "
            "print(bad); sys.exit(1 if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr


def test_share_failure_is_one_line_and_keeps_serving(monkeypatch, capsys):
    from gradio import networking

    from creationmix.ui.launcher import try_share

    def offline(**kw):
        raise RuntimeError("Could not get share link from Gradio API Server.\nmore detail")
    monkeypatch.setattr(networking, "setup_tunnel", offline)

    class FakeBlocks:
        share_token = "t"
        share_url = None
        share = False
    assert try_share(FakeBlocks(), "127.0.0.1", 7860) is None
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "serving locally only" in out
