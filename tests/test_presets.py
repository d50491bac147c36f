"""Preset cards: every shipped card validates, the recipe cards equal the documented recipes, strict loading,
the LoRA slot, checkpoint verification and saving."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from creationmix.errors import PresetError
from creationmix.infotext import parse_infotext
from creationmix.params import GenerationParams
from creationmix.presets import (CREATIONMIX_V1_FILE, CREATIONMIX_V1_SHA256, LORA_SLOT, NOT_CREATIONMIX_WARNING,
                                 CheckpointRef, Preset, find_preset, load_preset, load_presets, preset_id, preset_toml,
                                 save_preset, verify_checkpoint)

REPO = Path(__file__).resolve().parents[1]
PRESETS = REPO / "presets"
RECIPES = Path(__file__).resolve().parent / "data" / "recipes"  # a copy of ../shared/recipes (test_data_copies)
needs_recipes = pytest.mark.skipif(not RECIPES.is_dir(),
                                   reason=f"documented recipes not found at {RECIPES}")

RECIPE_CARDS = {
    "in-general": "preset-in-general.txt",
    "lora-well-trained": "preset-lora-well-trained.txt",
    "lora-less-trained": "preset-lora-less-trained.txt",
}


@pytest.fixture(scope="module")
def cards() -> dict[str, Preset]:
    presets, errors = load_presets(PRESETS)
    assert errors == []
    return {p.id: p for p in presets}


# -- shipped cards -------------------------------------------------------------------------------------------------
def test_every_shipped_card_validates():
    files = sorted(PRESETS.glob("*.toml"))
    assert files
    presets, errors = load_presets(PRESETS)
    assert errors == []
    assert [p.id for p in presets] == [f.stem for f in files]
    for p in presets:
        assert isinstance(p.to_params(), GenerationParams)
        assert p.source == PRESETS / f"{p.id}.toml"


def test_the_four_documented_cards_exist(cards):
    assert {"in-general", "lora-well-trained", "lora-less-trained", "lora-preview"} <= set(cards)
    for pid in ("in-general", "lora-well-trained", "lora-less-trained", "lora-preview"):
        assert cards[pid].checkpoint == CheckpointRef(file=CREATIONMIX_V1_FILE, sha256=CREATIONMIX_V1_SHA256)
        assert cards[pid].title and cards[pid].description


@needs_recipes
@pytest.mark.parametrize("pid", sorted(RECIPE_CARDS))
def test_recipe_cards_equal_the_recipe_files(cards, pid):
    params, _meta = parse_infotext((RECIPES / RECIPE_CARDS[pid]).read_text(encoding="utf-8"))
    assert cards[pid].to_params() == params


@needs_recipes
def test_preview_card_is_the_well_trained_recipe_with_a_slot(cards):
    preview, recipe = cards["lora-preview"], cards["lora-well-trained"]
    assert preview.has_lora_slot and not recipe.has_lora_slot
    assert preview.prompt == recipe.prompt.replace("<lora:style_HAPPOBIJIN:1>", LORA_SLOT)
    assert preview.to_params() == recipe.to_params()  # its default fill is the documented LoRA
    filled = preview.fill_lora("style_Rella", 1.2)
    assert filled.prompt.endswith("solo, <lora:style_Rella:1.2>")
    assert filled.replace(prompt=recipe.prompt) == recipe.to_params()
    assert preview.fill_lora("x", 1).prompt.endswith("<lora:x:1>")
    assert preview.fill_lora("x", 0.75).prompt.endswith("<lora:x:0.75>")


def test_lora_slot_cards_name_their_lora(cards):
    assert (cards["lora-well-trained"].lora_slot.name, cards["lora-well-trained"].lora_slot.weight) == \
        ("style_HAPPOBIJIN", 1.0)
    assert (cards["lora-less-trained"].lora_slot.name, cards["lora-less-trained"].lora_slot.weight) == \
        ("style_Rella", 1.2)
    assert cards["in-general"].lora_slot is None


# -- strict loading --------------------------------------------------------------------------------------------------
GOOD = '''id = "{id}"
title = "A card"
prompt = "a cat"
[params]
steps = 12
cfg_scale = 6.5
'''


def _write(folder: Path, name: str, text: str) -> Path:
    path = folder / f"{name}.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_good_card_loads(tmp_path):
    _write(tmp_path, "good", GOOD.format(id="good"))
    presets, errors = load_presets(tmp_path)
    assert errors == []
    assert presets[0].to_params() == GenerationParams(prompt="a cat", steps=12, cfg_scale=6.5)


@pytest.mark.parametrize("text, needles", [
    (GOOD.format(id="bad") + "stepz = 3\n", ["params.stepz", "unknown parameter"]),
    (GOOD.format(id="bad") + "prompt = 'x'\n", ["params.prompt", "top level"]),
    (GOOD.format(id="bad").replace("[params]", "colour = 'red'\n[params]"), ["colour", "unknown key"]),
    (GOOD.format(id="bad").replace("steps = 12", "steps = 999"), ["steps", "999"]),
    (GOOD.format(id="bad").replace("steps = 12", "steps = 12.5"), ["params.steps", "12.5"]),
    (GOOD.format(id="bad").replace("cfg_scale = 6.5", "cfg_scale = '7'"), ["params.cfg_scale", "'7'"]),
    (GOOD.format(id="bad") + "sampler = 'Euler Z'\n", ["sampler", "Euler Z"]),
    (GOOD.format(id="bad") + "enable_hires = 1\n", ["params.enable_hires", "true or false"]),
    (GOOD.format(id="bad").replace('title = "A card"', ""), ["title", "missing"]),
    (GOOD.format(id="Bad Id"), ["id", "Bad Id"]),
    (GOOD.format(id="other"), ["id 'other'", "file name"]),
    (GOOD.format(id="bad") + "[checkpoint]\nfile = 'a.safetensors'\nsha256 = 'xyz'\n", ["sha256", "xyz"]),
    (GOOD.format(id="bad") + "[checkpoint]\nfile = '../a.safetensors'\n", ["checkpoint.file", "../a"]),
    (GOOD.format(id="bad") + "[checkpoint]\nfile = 'a.safetensors'\nmd5 = 'x'\n", ["checkpoint.md5"]),
    (GOOD.format(id="bad") + "[lora_slot]\nname = 'style_X'\n", ["lora_slot", "style_X"]),
    (GOOD.format(id="bad").replace('"a cat"', '"a {lora} cat"'), ["LoRA slot", LORA_SLOT]),
    (GOOD.format(id="bad").replace('prompt = "a cat"', 'example_image = "../x.png"'), ["example_image"]),
    ("id = 'bad'\ntitle = [unclosed\n", ["malformed TOML"]),
    ("id = 'bad'\ntitle = 'x'\ntitle = 'y'\n", ["malformed TOML"]),
])
def test_malformed_card_is_named_and_others_still_load(tmp_path, text, needles):
    _write(tmp_path, "a-good", GOOD.format(id="a-good"))
    _write(tmp_path, "bad", text)
    _write(tmp_path, "z-good", GOOD.format(id="z-good"))
    presets, errors = load_presets(tmp_path)
    assert [p.id for p in presets] == ["a-good", "z-good"]
    assert len(errors) == 1 and errors[0].startswith("bad.toml: ")
    for needle in needles:
        assert needle in errors[0]
    with pytest.raises(PresetError):
        load_preset(tmp_path / "bad.toml")


def test_find_preset(tmp_path):
    assert find_preset(PRESETS, "in-general").id == "in-general"
    with pytest.raises(PresetError, match="available: in-general"):
        find_preset(PRESETS, "nope")
    for bad in ("../presets/in-general", "IN-GENERAL", ""):
        with pytest.raises(PresetError, match="unknown preset"):
            find_preset(PRESETS, bad)
    _write(tmp_path, "broken", "id = ")
    with pytest.raises(PresetError, match="broken.toml: malformed TOML"):
        find_preset(tmp_path, "broken")


def test_missing_folder_is_an_error_not_a_crash(tmp_path):
    presets, errors = load_presets(tmp_path / "nope")
    assert presets == [] and "not found" in errors[0]


def test_card_without_default_fill_needs_fill_lora(tmp_path):
    path = _write(tmp_path, "slot", GOOD.format(id="slot").replace('"a cat"', f'"a cat {LORA_SLOT}"'))
    card = load_preset(path)
    with pytest.raises(PresetError, match="fill_lora"):
        card.to_params()
    assert card.fill_lora("my_lora", 0.8).prompt == "a cat <lora:my_lora:0.8>"
    for bad in ("", "a:b", "x>y"):
        with pytest.raises(PresetError):
            card.fill_lora(bad, 1)
    with pytest.raises(PresetError):
        card.fill_lora("ok", float("nan"))


def test_fill_lora_on_a_card_without_slot(cards):
    with pytest.raises(PresetError, match="no LoRA slot"):
        cards["in-general"].fill_lora("x", 1)


# -- checkpoint verification ------------------------------------------------------------------------------------------
def test_verify_checkpoint(cards):
    card = cards["in-general"]
    assert verify_checkpoint(card, CREATIONMIX_V1_SHA256) is None
    assert verify_checkpoint(card, CREATIONMIX_V1_SHA256.upper()) is None
    assert verify_checkpoint(card, "1065c5d2e0") is None  # A1111's short model hash
    other = "ab" * 32
    warning = verify_checkpoint(card, other)
    assert warning.startswith(NOT_CREATIONMIX_WARNING)
    assert CREATIONMIX_V1_SHA256 in warning and other in warning
    missing = verify_checkpoint(card, None)
    assert missing.startswith(NOT_CREATIONMIX_WARNING) and "not found" in missing and CREATIONMIX_V1_FILE in missing
    assert verify_checkpoint(card, "1065c5") is not None  # too short to mean anything


def test_verify_checkpoint_ignores_cards_of_other_models(tmp_path):
    plain = Preset(id="x", title="x")
    assert verify_checkpoint(plain, None) is None
    other = Preset(id="y", title="y", checkpoint=CheckpointRef(file="other.safetensors", sha256="cd" * 32))
    assert verify_checkpoint(other, "ef" * 32) is None


# -- saving ---------------------------------------------------------------------------------------------------------
def test_preset_id_is_safe():
    assert preset_id("My Cool Preset!") == "my-cool-preset"
    assert preset_id("../../etc/passwd") == "etc-passwd"
    assert preset_id("Ünïcödé café") == "unicode-cafe"
    assert preset_id("猫") == "preset"
    assert preset_id("  --A--B--  ") == "a-b"
    assert len(preset_id("x" * 500)) <= 64


def test_save_preset_round_trips(tmp_path):
    params = GenerationParams(prompt='a "cat", \\ 猫\nline two\t\x7f', negative_prompt="blurry", steps=33,
                              sampler="Euler a", cfg_scale=7, seed=5, enable_hires=True, hires_scale=1.5,
                              hires_sampler="DPM++ SDE", checkpoint="model.safetensors",
                              extra=(("ENSD", "31337"), ("Odd", 'x, "y"')))
    path = save_preset(tmp_path, params, "My Preset")
    assert path == tmp_path / "my-preset.toml"
    card = load_preset(path)
    assert card.title == "My Preset" and card.id == "my-preset"
    assert card.checkpoint == CheckpointRef(file="model.safetensors")
    assert card.to_params() == params
    presets, errors = load_presets(tmp_path)
    assert errors == [] and presets == [card]


def test_save_preset_never_overwrites(tmp_path):
    first = save_preset(tmp_path, GenerationParams(seed=1), "Same")
    second = save_preset(tmp_path, GenerationParams(seed=2), "Same")
    third = save_preset(tmp_path, GenerationParams(seed=3), "same!")
    assert [first.name, second.name, third.name] == ["same.toml", "same-2.toml", "same-3.toml"]
    assert [load_preset(p).to_params().seed for p in (first, second, third)] == [1, 2, 3]
    assert sorted(os.listdir(tmp_path)) == ["same-2.toml", "same-3.toml", "same.toml"]  # no temp files left


def test_save_preset_needs_a_title(tmp_path):
    with pytest.raises(PresetError):
        save_preset(tmp_path, GenerationParams(), "   ")


@pytest.mark.parametrize("pid", ["in-general", "lora-preview"])
def test_preset_toml_round_trips_shipped_cards(tmp_path, cards, pid):
    path = tmp_path / f"{pid}.toml"
    path.write_text(preset_toml(cards[pid]), encoding="utf-8")
    assert load_preset(path).model_dump() == cards[pid].model_dump()
