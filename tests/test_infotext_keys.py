"""The one key table: every infotext key is applied, kept as source info, or named as ignored, and an output
infotext carries only what was applied (plus recomputed source keys)."""
from __future__ import annotations

import argparse

import pytest

from creationmix import cli
from creationmix.errors import InfotextError
from creationmix.infotext import format_infotext, old_hires_fix_first_pass_dimensions, parse_infotext
from creationmix.infotext_keys import APPLIED, IGNORED, KEYS, SOURCE, lookup
from creationmix.params import MAX_SEED_VALUE, GenerationParams
from creationmix.pnginfo import write_png
from creationmix.ui import handlers as h

BASE = "a cat\nNegative prompt: blurry\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 5, Size: 512x512"


def test_every_row_is_complete():
    seen = set()
    for row in KEYS:
        assert row.name not in seen, row.name
        seen.add(row.name)
        assert row.kind in (APPLIED, SOURCE, IGNORED)
        if row.kind == APPLIED:
            assert row.read is not None, row.name
        else:
            assert row.read is None and row.write is None, row.name
        if row.kind == IGNORED:
            assert row.why, row.name
    assert lookup("ADetailer model").kind == IGNORED and "ADetailer" in lookup("ADetailer model").why
    assert lookup("Never heard of it").why == "unknown key"


def test_ignored_keys_are_named_in_one_warning_and_never_written():
    parsed = parse_infotext(BASE + ", ADetailer model: face_yolov8n.pt, ControlNet 0: \"Module: canny, Model: x\","
                                   " Mask blur: 4, Hypernet: anime, Face restoration: CodeFormer")
    assert parsed.warnings == ("ignored (not supported): ADetailer model, ControlNet 0, Mask blur, Hypernet, "
                               "Face restoration",)
    out = format_infotext(parsed.params, {"Model": "m", **parsed.ignored})
    for key in parsed.ignored:
        assert key not in out
    assert out == ("a cat\nNegative prompt: blurry\nSteps: 20, Sampler: Euler a, Schedule type: Uniform, CFG scale: 7, "
                   "Seed: 5, Size: 512x512, Model: m")


def test_source_keys_are_kept_not_applied_not_warned():
    text = (BASE + ', Model hash: 1065c5d2e0, Model: someone_elses_model, VAE hash: 735e4c3a44, VAE: x.pt, '
            'Lora hashes: "a: 0123456789ab", TI hashes: "EasyNegative: c74b4e810b03", Version: v1.10.1, '
            'Hashes: {"model": "1065c5d2e0", "embed:EasyNegative": "c74b4e810b"}, '
            'Civitai resources: [{"type":"checkpoint","modelVersionId":1}]')
    parsed = parse_infotext(text)
    assert parsed.warnings == () and parsed.ignored == {}
    assert parsed.meta["Hashes"] == '{"model": "1065c5d2e0", "embed:EasyNegative": "c74b4e810b"}'
    assert parsed.meta["Civitai resources"] == '[{"type":"checkpoint","modelVersionId":1}]'
    assert parsed.params.checkpoint is None and parsed.params.vae == "Automatic"
    # Written only from the meta the caller gives (the engine gives what it used), never from the source.
    assert "Model hash" not in format_infotext(parsed.params) and "Hashes" not in format_infotext(parsed.params)


def test_a_re_paste_of_our_output_is_a_fixed_point():
    p = GenerationParams(prompt="1girl, <lora:style:0.8>", negative_prompt="EasyNegative", steps=30,
                         sampler="DPM++ 2M", schedule="Karras", cfg_scale=9.5, seed=7854848731, width=672,
                         height=1056, clip_skip=2, enable_hires=True, hires_scale=1.6, hires_steps=20,
                         denoising_strength=0.6)
    meta = {"Model hash": "1065c5d2e0", "Model": "creationmix", "Lora hashes": "style: 0123456789ab",
            "TI hashes": "EasyNegative: c74b4e810b03",
            "Hashes": '{"model": "1065c5d2e0", "lora:style": "0123456789ab", "embed:EasyNegative": "c74b4e810b"}',
            "Version": "CreationMix 0.1"}
    text = format_infotext(p, meta)
    parsed = parse_infotext(text)
    assert parsed.params == p and parsed.meta == meta and parsed.ignored == {}
    assert format_infotext(*parsed) == text


def test_old_hires_fix_first_pass_size_is_converted_as_a1111_does():
    # A1111 1.10 restore_old_hires_fix_params: Size -> Hires resize, First pass size -> Size; 0x0 -> the old
    # automatic first pass, old_hires_fix_first_pass_dimensions(768, 1152) == (448, 640) (~512x512 pixels).
    assert old_hires_fix_first_pass_dimensions(768, 1152) == (448, 640)
    assert old_hires_fix_first_pass_dimensions(512, 512) == (512, 512)
    p = parse_infotext(BASE.replace("512x512", "768x1152") + ", Denoising strength: 0.6, First pass size: 0x0").params
    assert (p.width, p.height, p.hires_resize_x, p.hires_resize_y) == (448, 640, 768, 1152)
    assert p.enable_hires and p.hires_size == (768, 1152) and p.hires_upscaler == "Latent"
    p = parse_infotext(BASE.replace("512x512", "1024x1024") + ", Denoising strength: 0.5, "
                       "First pass size: 512x512, Hires resize: 2048x2048").params
    assert (p.width, p.height, p.hires_size) == (512, 512, (1024, 1024))
    # Written back in today's form, which reads back the same.
    text = format_infotext(p)
    assert "First pass size" not in text and "Size: 512x512" in text and "Hires resize: 1024x1024" in text
    assert parse_infotext(text).params == p.replace(schedule="Uniform")


def test_batch_size_is_read_as_a1111_pastes_it():
    p = parse_infotext(BASE + ", Batch size: 4, Batch pos: 2").params
    assert p.batch_size == 4
    assert "Batch" not in format_infotext(p)  # A1111 1.10 no longer writes these


def test_seeds_above_2_32_are_accepted_as_a1111_does():
    # A1111 seeds each image with torch.Generator(device).manual_seed(int(seed)): any 64-bit value.
    assert parse_infotext(BASE.replace("Seed: 5", "Seed: 7854848731")).params.seed == 7854848731
    assert GenerationParams(seed=MAX_SEED_VALUE).seed == 2**64 - 1
    with pytest.raises(InfotextError, match="Seed"):
        parse_infotext(BASE.replace("Seed: 5", f"Seed: {2**64}"))
    with pytest.raises(Exception, match="largest seed"):
        GenerationParams(seed=MAX_SEED_VALUE, batch_size=2)


def test_noise_for_a_seed_above_2_32_is_torchs_64_bit_seeding():
    import torch
    from creationmix.sampling.rng import BatchedBrownianTree, ImageRNG
    seed = 7854848731
    noise = ImageRNG((4, 8, 8), [seed, seed + 1], source="CPU").first()
    assert torch.equal(noise[0], torch.randn((4, 8, 8), generator=torch.Generator().manual_seed(seed)))
    assert torch.equal(noise[1], torch.randn((4, 8, 8), generator=torch.Generator().manual_seed(seed + 1)))
    x = torch.zeros(1, 4, 8, 8)
    tree = BatchedBrownianTree(x, torch.tensor(0.1), torch.tensor(10.0), [seed])
    assert tree(torch.tensor(0.5), torch.tensor(1.0)).shape == x.shape


def test_clip_skip_fraction_is_refused_clearly():
    with pytest.raises(InfotextError, match=r"Clip skip: '1.75' is not a whole number.*extension"):
        parse_infotext(BASE + ", Clip skip: 1.75, Clip skip lerp after norm: True")


def test_report_lists_applied_source_and_ignored():
    report = parse_infotext(BASE + ", Model hash: abc, Hypernet: anime, ADetailer model: x").report()
    assert report.splitlines() == [
        "Applied: Steps, Sampler, CFG scale, Seed, Size",
        "Source (not applied; recomputed on output): Model hash",
        "Ignored: Hypernet (hypernetworks are not supported)",
        "Ignored: ADetailer model (ADetailer extension)",
    ]


# -- edges ------------------------------------------------------------------------------------------------------
class _RealParse:
    def read_infotext(self, text):
        return parse_infotext(text)

    def list_checkpoints(self):
        return []

    def list_vaes(self):
        return []


def test_ui_paste_warns_about_ignored_keys():
    values, warnings = h.infotext_fields(_RealParse(), BASE + ", Face restoration: CodeFormer, ADetailer model: x")
    assert warnings == ["ignored (not supported): Face restoration, ADetailer model"]
    assert values["seed"] == 5
    keys = h.infotext_keys(_RealParse(), BASE + ", Face restoration: CodeFormer")
    assert "- Applied: Steps, Sampler, CFG scale, Seed, Size" in keys and "- Ignored: Face restoration" in keys
    assert h.infotext_keys(_RealParse(), h.NO_PARAMETERS) == ""
    assert "Cannot be used" in h.infotext_keys(_RealParse(), BASE + ", Sampler: Nope")


def test_cli_params_warns_on_stderr(tmp_path, capsys):
    recipe = tmp_path / "recipe.txt"
    recipe.write_text(BASE + ", ADetailer model: face_yolov8n.pt, ControlNet 0: x", encoding="utf-8")
    args = cli.build_parser().parse_args(["txt2img", "--params", str(recipe), "--steps", "3"])
    params = cli.params_from_args(args)
    assert params.steps == 3 and params.seed == 5
    assert capsys.readouterr().err == "warning: ignored (not supported): ADetailer model, ControlNet 0\n"


def test_cli_pnginfo_shows_applied_and_ignored(tmp_path, capsys):
    from PIL import Image
    text = BASE + ", Face restoration: CodeFormer, Version: v1.10.1"
    path = write_png(Image.new("RGB", (8, 8)), tmp_path / "x.png", text)
    assert cli.main(["pnginfo", str(path)]) == 0
    out, err = capsys.readouterr()
    assert out == text + "\n"  # the raw text, unchanged, for scripts
    assert err == "warning: ignored (not supported): Face restoration\n"
    assert cli.main(["pnginfo", "--keys", str(path)]) == 0
    out, err = capsys.readouterr()
    assert out.startswith(text + "\n\nApplied: Steps, Sampler, CFG scale, Seed, Size\n")
    assert "Ignored: Face restoration" in out and "Source (not applied; recomputed on output): Version" in out


def test_parse_namespace_without_params_is_untouched():
    assert cli.params_from_args(argparse.Namespace(preset=None, params=None)) == GenerationParams()
