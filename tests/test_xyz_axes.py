"""X/Y/Z axis values: A1111's syntax (lists, quoted CSV, ranges, steps, counts) and errors that name the axis."""
from __future__ import annotations

import pytest

from creationmix.errors import InvalidParameter
from creationmix.params import GenerationParams
from creationmix.xyz.axes import CellState, axis_kind, csv_values, lora_names_in, parse_axis, swap_lora


@pytest.mark.parametrize("kind,text,expected", [
    ("Seed", "1, 2, 3", (1, 2, 3)),
    ("Seed", "1-5", (1, 2, 3, 4, 5)),
    ("Seed", "1-5 (+2)", (1, 3, 5)),
    ("Seed", " 1 - 3 ", (1, 2, 3)),
    ("Seed", "10-1 (-3)", (10, 7, 4, 1)),
    ("Seed", "-1, 7", None),  # -1: random, fixed at plan time
    ("Steps", "20-100 [5]", (20, 40, 60, 80, 100)),
    ("Steps", "10-20 [3]", (10, 15, 20)),
    ("Steps", "2, 4-6, 8", (2, 4, 5, 6, 8)),
    ("Steps", "1-10 [4]", (1, 4, 7, 10)),
    ("Steps", "1-2 [4]", (1, 1, 1, 2)),  # A1111 truncates np.linspace to int
    ("CFG Scale", "5, 7.5, 9", (5.0, 7.5, 9.0)),
    ("CFG Scale", "1-3", (1.0, 2.0, 3.0)),
    ("LoRA strength", "0.2-1.0 (+0.2)", (0.2, 0.4, 0.6, 0.8, 1.0)),
    ("LoRA strength", "0-1 (+0.1)", (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)),  # no 1.1 overshoot
    ("LoRA strength", "0-1 [5]", (0.0, 0.25, 0.5, 0.75, 1.0)),
    ("LoRA strength", "1-0 (-0.5)", (1.0, 0.5, 0.0)),
    ("LoRA strength", "-1, 0, 0.5", (-1.0, 0.0, 0.5)),
    ("Denoising", "0.3-0.7 [3]", (0.3, 0.5, 0.7)),
    ("Hires upscale", "1.5, 2", (1.5, 2.0)),
    ("Hires fix", "on, off, true, 0", (True, False, True, False)),
    ("Clip skip", "1-2", (1, 2)),
    ("Sampler", 'Euler a, "DPM++ 2M Karras", DDIM', ("Euler a", "DPM++ 2M Karras", "DDIM")),
    ("Checkpoint name", "a.safetensors, sub/b", ("a.safetensors", "sub/b")),
    ("LoRA", "style_a, none, sub/style_b", ("style_a", "none", "sub/style_b")),
    ("Prompt S/R", 'cat, dog, "red fox, tiny", ""', ("cat", "dog", "red fox, tiny", "")),
])
def test_axis_syntax(kind, text, expected):
    assert parse_axis(kind, text).values == (expected if expected is not None else (-1, 7))


def test_zero_steps_refused():
    with pytest.raises(InvalidParameter, match=r"X axis \(Steps\).*'0'"):
        parse_axis("Steps", "0-100 [5]")


@pytest.mark.parametrize("kind,text,bad", [
    ("Seed", "1, x, 3", "'x'"),
    ("Seed", "1.5", "'1.5'"),
    ("Steps", "5-1", "'5-1'"),
    ("Steps", "200", "'200'"),
    ("CFG Scale", "7, abc", "'abc'"),
    ("CFG Scale", "1-3 (+0)", "'1-3 (+0)'"),
    ("CFG Scale", "1-3 [0]", "'1-3 [0]'"),
    ("CFG Scale", "0.5", "'0.5'"),
    ("Seed", "1-5 (2)", "'1-5 (2)'"),  # A1111: a step needs its sign
    ("Sampler", "Euler a, Nope", "'Nope'"),
    ("Hires fix", "maybe", "'maybe'"),
    ("Denoising", "0, 0.5", "'0'"),
    ("LoRA", "a:b", "'a:b'"),
    ("Seed", "", "no values"),
])
def test_bad_values_name_axis_and_value(kind, text, bad):
    with pytest.raises(InvalidParameter) as e:
        parse_axis(kind, text, name="Y")
    msg = str(e.value)
    assert msg.startswith(f"Y axis ({axis_kind(kind).label})"), msg
    assert bad in msg


def test_unknown_axis_type_lists_valid():
    with pytest.raises(InvalidParameter, match="valid: Seed, Steps"):
        parse_axis("Colour", "1")


def test_aliases():
    assert axis_kind("cfg").label == "CFG Scale"
    assert axis_kind("lora_strength").label == "LoRA strength"
    assert axis_kind("Hires on/off").label == "Hires fix"
    assert axis_kind("prompt s/r").label == "Prompt S/R"
    assert axis_kind("checkpoint").label == "Checkpoint name"


def test_csv_quotes_and_strip():
    assert csv_values(' a ,  "b, c" ,d') == ["a", "b, c", "d"]


def test_labels():
    assert parse_axis("Seed", "1,2").labels() == ["Seed: 1", "Seed: 2"]
    assert parse_axis("CFG Scale", "7, 7.5").labels() == ["CFG Scale: 7", "CFG Scale: 7.5"]
    assert parse_axis("Sampler", "Euler a").labels() == ["Euler a"]
    assert parse_axis("Checkpoint name", "sub/model.safetensors").labels() == ["model"]
    assert parse_axis("LoRA", "a, none").labels() == ["a", "no LoRA"]
    assert parse_axis("Hires fix", "on,off").labels() == ["Hires fix: on", "Hires fix: off"]


# -- applying values -------------------------------------------------------------------------------------------------
def _apply(axis, value, params):
    st = CellState(params)
    axis.apply(value, st)
    return st.params


def test_prompt_sr_replaces_in_both_prompts_and_checks_presence():
    p = GenerationParams(prompt="a cat on a mat", negative_prompt="ugly cat")
    axis = parse_axis("Prompt S/R", "cat, dog")
    q = _apply(axis, "dog", p)
    assert q.prompt == "a dog on a mat" and q.negative_prompt == "ugly dog"
    with pytest.raises(InvalidParameter, match="did not find 'cat'"):
        _apply(axis, "dog", GenerationParams(prompt="a bird"))


def test_sampler_value_keeps_or_sets_schedule():
    p = GenerationParams(sampler="DPM++ 2M", schedule="Karras")
    axis = parse_axis("Sampler", "Euler a, DPM++ 2M Exponential")
    assert _apply(axis, "Euler a", p).sampler == "Euler a"
    q = _apply(axis, "DPM++ 2M Exponential", p)
    assert (q.sampler, q.schedule) == ("DPM++ 2M", "Exponential")


def test_hires_upscale_turns_hires_on():
    q = _apply(parse_axis("Hires upscale", "1.5"), 1.5, GenerationParams(width=64, height=64))
    assert q.enable_hires and q.hires_scale == 1.5


def test_lora_axis_swaps_appends_and_removes():
    axis = parse_axis("LoRA", "b, none")
    p = GenerationParams(prompt="girl, <lora:a:0.7>, smile")
    assert _apply(axis, "b", p).prompt == "girl, <lora:b:0.7>, smile"
    assert _apply(axis, "none", p).prompt == "girl, , smile"  # A1111 strips the tag, keeps the commas
    assert _apply(axis, "b", GenerationParams(prompt="girl")).prompt == "girl <lora:b:1>"


def test_lora_strength_axis():
    axis = parse_axis("LoRA strength", "0, 0.5", target="a")
    p = GenerationParams(prompt="girl, <lora:a:1>")
    assert _apply(axis, 0.5, p).prompt == "girl, <lora:a:0.5>"
    assert _apply(axis, 0.0, p).prompt == "girl, "  # strength 0 = no tag = the base model
    no_target = parse_axis("LoRA strength", "0.5")
    assert _apply(no_target, 0.5, p).prompt == "girl, <lora:a:0.5>"  # the prompt's only LoRA
    with pytest.raises(InvalidParameter, match="X axis \\(LoRA strength\\).*say which LoRA"):
        _apply(no_target, 0.5, GenerationParams(prompt="<lora:a:1> <lora:b:1>"))


def test_lora_helpers():
    assert lora_names_in("x <lora:a:1> <lyco:b:0.5:0.2> <lora:a:0.3>") == ["a", "b"]
    assert swap_lora("<lora:a:1:0.5>", "a", "c") == "<lora:c:1:0.5>"
    assert swap_lora("x", None, "c", 0.8) == "x <lora:c:0.8>"


def test_target_only_for_lora_axes():
    with pytest.raises(InvalidParameter, match="only LoRA"):
        parse_axis("Seed", "1", target="a")
