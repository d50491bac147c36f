"""The LoRA previews tab builds (gradio, no torch in the UI) and its handlers drive the real service."""
from __future__ import annotations

import pytest

gr = pytest.importorskip("gradio")

from creationmix.service import Service  # noqa: E402
from creationmix.ui.previews_tab import PreviewsTab  # noqa: E402
from lora_fixtures import kohya_lora, write_lora  # noqa: E402


@pytest.fixture
def service(folders, tiny_model):
    write_lora(folders.lora_dirs[0] / "style.safetensors",
               kohya_lora(tiny_model.pipe.unet, tiny_model.pipe.text_encoder, seed=1, conv=False))
    return Service(folders, device="cpu", precision="fp32", demo_if_empty=False)


def drain(gen):
    out = list(gen)
    return out[-1]


def test_tab_builds_and_runs(service, folders):
    tab = PreviewsTab(service)
    with gr.Blocks():
        tab.build()
    assert tab.lora.choices and tab.preset.value == "lora-preview"
    text, grid = drain(tab.sweep("lora-preview", "style", "0, 1", 1, 2, 64, False))
    assert "2 cells and 1 grid" in text and grid.endswith(".png")
    text, sheet = drain(tab.library("lora-preview", False, False, 2, 64, False))
    assert text.startswith("1 done") and sheet.endswith("contact-sheet.png")
    assert (folders.lora_dirs[0] / "style.preview.png").is_file()


def test_refresh_lists_loras_added_after_start_and_steps_start_empty(service, folders, tiny_model):
    tab = PreviewsTab(service)
    with gr.Blocks():
        tab.build()
    assert tab.steps.value == "" and tab.size.value == ""  # empty means the card's, not 0
    assert "late" not in [c[0] for c in tab.lora.choices]
    write_lora(folders.lora_dirs[0] / "late.safetensors",
               kohya_lora(tiny_model.pipe.unet, tiny_model.pipe.text_encoder, seed=2, conv=False))
    update = tab.refresh("style")
    assert "late" in update["choices"] and update["value"] == "style"
    assert tab._overrides("", "", True) == {}
    assert tab._overrides(" 7 ", "64", False) == {"steps": 7, "width": 64, "height": 64, "enable_hires": False}
    with pytest.raises(gr.Error, match="Steps must be a whole number"):
        tab._overrides("seven", "", True)
