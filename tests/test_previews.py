"""LoRA library previews on the tiny checkpoint: files next to the LoRAs, skip/resume, failures, contact sheet."""
from __future__ import annotations

import os

import pytest
from PIL import Image

from creationmix.engine import Engine
from creationmix.infotext import parse_infotext
from creationmix.pnginfo import read_parameters
from creationmix.jobs import Control
from creationmix.presets_resolve import load_preset_by_id
from creationmix.xyz.plot import WorkCounter
from creationmix.previews.job import preview_path, run_previews, select_loras
from lora_fixtures import kohya_lora, loha_fake, write_garbage, write_lora, write_sidecar

SMALL = dict(steps=2, width=64, height=64, enable_hires=False, sampler="Euler")
GOOD = ("alpha", "beta", "gamma")


@pytest.fixture
def library(folders, tiny_model):
    d = folders.lora_dirs[0]
    unet, te = tiny_model.pipe.unet, tiny_model.pipe.text_encoder
    for i, name in enumerate(GOOD):
        write_lora(d / f"{name}.safetensors", kohya_lora(unet, te, seed=i, conv=False))
    write_sidecar(d / "beta.safetensors", preferred_weight=0.7, activation_text="betastyle")
    write_garbage(d / "broken.safetensors")
    write_lora(d / "loha.safetensors", loha_fake())
    return d


@pytest.fixture
def engine(folders):
    return Engine(folders, device="cpu", precision="fp32")


@pytest.fixture(scope="module")
def preset():
    return load_preset_by_id("lora-preview")


def run(engine, preset, folders, **kw):
    return run_previews(engine, preset, overrides=SMALL, sheet_dir=folders.outputs_dir / "lora-previews", **kw)


def test_previews_written_failures_reported_sheet_lists_all(engine, preset, folders, library):
    with WorkCounter(engine) as work:
        report = run(engine, preset, folders, append_triggers=True)
    assert sorted(o.name for o in report.done) == list(GOOD)
    assert sorted(o.name for o in report.failed) == ["broken", "loha"]
    assert all(o.reason for o in report.failed)
    assert "LoHa" in next(o for o in report.failed if o.name == "loha").reason
    for name in GOOD:
        path = library / f"{name}.preview.png"
        assert path.is_file() and preview_path(library / f"{name}.safetensors") == path
        assert Image.open(path).size == (64, 64)
        params, meta = parse_infotext(read_parameters(path))
        weight = "0.7" if name == "beta" else "1"
        assert f"<lora:{name}:{weight}>" in params.prompt and meta["Lora hashes"].startswith(f"{name}: ")
        assert params.steps == 2 and params.seed == 413740674  # the card's seed, our overrides
    beta, _ = parse_infotext(read_parameters(library / "beta.preview.png"))
    assert beta.prompt.endswith(", betastyle")
    alpha, _ = parse_infotext(read_parameters(library / "alpha.preview.png"))
    assert alpha.prompt.endswith(">")  # no activation text and no training tags: nothing appended
    assert not list(library.glob("*.tmp")) and not list(library.glob(".*"))
    assert not (library / "broken.preview.png").exists()
    # The sheet names every LoRA, with its strength.
    html = report.sheet_html.read_text()
    for name in GOOD + ("broken", "loha"):
        assert f"<b>{name}</b>" in html
    assert "weight 0.7" in html and 'src="../../models/Lora/alpha.preview.png"' in html
    assert Image.open(report.sheet_png).width > 64
    assert "3 done, 0 skipped, 2 failed" in report.summary()
    assert work.checkpoint_loads == 1 and work.lora_loads == 3
    assert work.encodings == len(set(work.encoded))


def test_existing_previews_are_skipped_not_overwritten(engine, preset, folders, library, monkeypatch):
    mine = library / "alpha.preview.png"
    Image.new("RGB", (8, 8), (1, 2, 3)).save(mine)
    before = mine.read_bytes()
    report = run(engine, preset, folders, names=["alpha", "beta"])
    assert [o.status for o in report.outcomes] == ["skipped", "done"]
    assert mine.read_bytes() == before
    # A re-run does nothing at all; --overwrite renders again.
    calls = []
    orig = engine.generate
    monkeypatch.setattr(engine, "generate", lambda *a, **k: calls.append(1) or orig(*a, **k))
    again = run(engine, preset, folders, names=["alpha", "beta"])
    assert [o.status for o in again.outcomes] == ["skipped", "skipped"] and calls == []
    forced = run(engine, preset, folders, names=["alpha"], overwrite=True)
    assert forced.outcomes[0].status == "done" and mine.read_bytes() != before and calls == [1]


def test_interrupt_then_resume(engine, preset, folders, library):
    control = Control()

    def progress(jp):
        if jp.done >= 1 and jp.event is None:
            control.interrupt()
    first = run(engine, preset, folders, names=list(GOOD), control=control, progress=progress)
    assert first.interrupted
    assert [o.status for o in first.outcomes] == ["done", "pending", "pending"]
    assert first.sheet_html.is_file()  # the sheet and summary are written anyway
    second = run(engine, preset, folders, names=list(GOOD))
    assert [o.status for o in second.outcomes] == ["skipped", "done", "done"]
    assert all((library / f"{n}.preview.png").is_file() for n in GOOD)


def test_ctrl_c_keeps_finished_previews(engine, preset, folders, library, monkeypatch):
    orig, calls = engine.generate, []

    def generate(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return orig(*a, **k)
    monkeypatch.setattr(engine, "generate", generate)
    report = run(engine, preset, folders, names=list(GOOD))
    assert report.interrupted and [o.status for o in report.outcomes] == ["done", "pending", "pending"]
    assert (library / "alpha.preview.png").is_file() and not (library / "beta.preview.png").exists()
    assert not [p for p in os.listdir(library) if p.endswith(".tmp")]


def test_missing_only_and_lora_dir_selection(engine, preset, folders, library, tiny_model):
    sub = library / "sub"
    write_lora(sub / "delta.safetensors", kohya_lora(tiny_model.pipe.unet, None, seed=9, conv=False))
    Image.new("RGB", (8, 8)).save(library / "gamma.png")  # an A1111-style preview counts as one
    report = run(engine, preset, folders, lora_dir=sub)
    assert [o.name for o in report.outcomes] == ["delta"] and report.done
    assert (sub / "delta.preview.png").is_file()
    engine.lora_library.refresh()
    missing = [i.name for i in select_loras(engine.lora_library, missing_only=True)]
    assert missing == ["alpha", "beta", "broken", "loha"]  # gamma has gamma.png, delta its new preview


def test_preset_without_slot_refused(engine, folders, library):
    from creationmix.errors import InvalidParameter
    with pytest.raises(InvalidParameter, match="no LoRA slot"):
        run(engine, load_preset_by_id("in-general"), folders)


def test_cli_previews(folders, library, capsys):
    from creationmix.cli import main
    rc = main(["previews", "--lora-dir", str(library), "--preset", "lora-preview",
               "--data-dir", str(folders.data_dir), "--device", "cpu", "--steps", "2",
               "--width", "64", "--height", "64", "--no-hires", "--sampler", "Euler",
               "--lora", "alpha", "--lora", "broken", "--no-progress"])
    assert rc == 0
    out, err = capsys.readouterr()
    lines = out.split()
    assert str(library / "alpha.preview.png") in lines
    assert any(line.endswith("contact-sheet.html") for line in lines)
    assert "1 done, 0 skipped, 1 failed" in err and "failed  broken:" in err


def test_cli_previews_all_done_is_silent_on_stderr(folders, library, capsys):
    from creationmix.cli import main
    rc = main(["previews", "--lora-dir", str(library), "--data-dir", str(folders.data_dir), "--device", "cpu",
               "--steps", "1", "--width", "64", "--height", "64", "--no-hires", "--lora", "alpha", "--no-progress"])
    out, err = capsys.readouterr()
    assert rc == 0 and err == "" and str(library / "alpha.preview.png") in out.split()
