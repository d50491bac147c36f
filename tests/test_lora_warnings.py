"""A LoRA with layers this checkpoint lacks still works (A1111 skips them), and the user is told: a
`warning:` line from the CLI, GenerationResult.warnings on every generation (the UI shows them with
gr.Warning), and the previews summary."""
from __future__ import annotations

import torch

from creationmix.cli import main
from creationmix.compose import ServiceOptions, build_service
from creationmix.params import GenerationParams
from lora_fixtures import kohya_lora, write_lora

SMALL = ["--width", "64", "--height", "64", "--steps", "1", "--sampler", "Euler"]


def _odd_lora(folders, tiny_model):
    sd = kohya_lora(tiny_model.pipe.unet, tiny_model.pipe.text_encoder, seed=3, conv=False)
    sd["lora_unet_not_in_tiny_to_q.lora_down.weight"] = torch.zeros(4, 8)
    sd["lora_unet_not_in_tiny_to_q.lora_up.weight"] = torch.zeros(8, 4)
    write_lora(folders.lora_dirs[0] / "odd.safetensors", sd)


def test_skipped_layers_reach_cli_result_and_summary(folders, tiny_model, capfd):
    _odd_lora(folders, tiny_model)
    rc = main(["txt2img", "--data-dir", str(folders.data_dir), "--prompt", "a <lora:odd:1>", *SMALL])
    out, err = capfd.readouterr()
    assert rc == 0 and out.strip().endswith(".png")
    assert err.splitlines() == ["warning: LoRA odd: 1 layer(s) not in this checkpoint were skipped "
                                "(e.g. lora_unet_not_in_tiny_to_q)"]

    svc = build_service(ServiceOptions(data_dir=folders.data_dir, device="cpu"))
    p = GenerationParams(prompt="a <lora:odd:0.5>", steps=1, width=64, height=64, sampler="Euler")
    first, again = svc.generate(p), svc.generate(p.replace(seed=5))  # the second reuses the cached adapter
    assert any("LoRA odd" in w for w in first.warnings) and first.warnings == again.warnings
    plain = svc.generate(p.replace(prompt="a"))
    assert not plain.warnings

    report = svc.run_lora_previews("lora-preview", names=["odd"],
                                   overrides=dict(steps=1, width=64, height=64, enable_hires=False))
    assert report.done and "warning odd: LoRA odd: 1 layer(s)" in report.summary()
    assert "not_in_tiny" in report.summary_json.read_text()
