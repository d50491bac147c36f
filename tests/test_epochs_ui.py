"""The LoRA epochs tab builds (gradio, no torch in the UI) and its handlers drive a service (the fake here; the
real service's job is tested in test_epochs.py)."""
from __future__ import annotations

import json

import pytest

gr = pytest.importorskip("gradio")

from creationmix.ui.epochs_tab import NO_PRESET, EpochsTab  # noqa: E402
from fake_service import FakeService  # noqa: E402


def drain(gen):
    return list(gen)[-1]


def test_tab_builds_runs_and_publishes(tmp_path):
    svc = FakeService(tmp_path)
    tab = EpochsTab(svc)
    with gr.Blocks():
        tab.build()
    assert tab.series.value == "paper_run"
    assert [k for _, k in tab.epoch.choices] == ["1", "2", "final"]
    prompts = tmp_path / "prompt.txt"
    prompts.write_text("# kohya\n1girl --w 64 --h 64 --s 2 --d 3 --ss euler_a\n")
    text, grids = drain(tab.run("paper_run", str(prompts), NO_PRESET, "0.5, 1", 1, None, None))
    assert text.startswith("6 cells made") and "euler_a" in text and len(grids) == 1
    again = drain(tab.run("paper_run", str(prompts), NO_PRESET, "0.5, 1", 1, None, None))[0]
    assert again.startswith("0 cells made, 6 already there")  # resumed
    done = drain(tab.publish("paper_run", str(prompts), NO_PRESET, "0.5, 1", 1, None, None, "2", 1, "png", False))
    assert "published paper_run-000002.safetensors" in done
    lora = tmp_path / "models" / "Lora"
    assert (lora / "paper_run-000002.png").is_file()
    assert json.loads((lora / "paper_run-000002.json").read_text())["preferred weight"] == 1.0
    with pytest.raises(gr.Error, match="choose the epoch"):
        drain(tab.publish("paper_run", str(prompts), NO_PRESET, "1", 1, None, None, None, 1, "png", False))
