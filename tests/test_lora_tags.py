import pytest

from creationmix.errors import LoraError
from creationmix.lora.tags import (LoraRequest, extract_lora_tags, extract_prompt_loras, format_weight,
                                   list_lora_weights, set_lora_weight)


def test_tags_removed_like_a1111():
    text, reqs = extract_lora_tags("a cat, <lora:style:0.8>, sitting <lora:detail>")
    assert text == "a cat, , sitting "
    assert reqs == [LoraRequest("style", 0.8, None), LoraRequest("detail", None, None)]


@pytest.mark.parametrize("tag, te, unet", [
    ("<lora:x>", None, None),
    ("<lora:x:0.5>", 0.5, None),
    ("<lora:x:0.5:0.25>", 0.5, 0.25),
    ("<lora:x:te=0.3:unet=0.9>", 0.3, 0.9),
    ("<lora:x:unet=0.9>", None, 0.9),
    ("<lora:x:1:unet=-1>", 1.0, -1.0),
    ("<lora:x:.5:dyn=16>", 0.5, None),
    ("<lyco:x:0.7>", 0.7, None),
    ("<LoRA:x:2>", 2.0, None),
])
def test_weights(tag, te, unet):
    _, reqs = extract_lora_tags(f"p {tag}")
    assert reqs == [LoraRequest("x", te, unet)]


def test_resolution_of_defaults():
    assert LoraRequest("x").resolved() == LoraRequest("x", 1.0, 1.0)
    assert LoraRequest("x").resolved(0.6) == LoraRequest("x", 0.6, 0.6)
    assert LoraRequest("x", 0.5).resolved(0.6) == LoraRequest("x", 0.5, 0.5)
    assert LoraRequest("x", None, 0.2).resolved(0.6) == LoraRequest("x", 0.6, 0.2)


def test_subfolder_names_and_other_extra_networks_kept():
    text, reqs = extract_lora_tags("a <hypernet:h:1> <lora:chars/alice_v2:0.6>")
    assert [r.name for r in reqs] == ["chars/alice_v2"]
    assert "<hypernet:h:1>" in text


def test_repeated_name_keeps_last_weight_first_position():
    _, reqs = extract_lora_tags("<lora:a:0.1> <lora:b:1> <lora:a:0.9>")
    assert reqs == [LoraRequest("a", 0.9, None), LoraRequest("b", 1.0, None)]


def test_negative_prompt_tags_merged():
    pos, neg, reqs = extract_prompt_loras("cat <lora:a:0.5>", "blurry <lora:neg_emb:1>, <lora:a:0.7>")
    assert pos == "cat " and neg == "blurry , "
    assert reqs == [LoraRequest("a", 0.7, None), LoraRequest("neg_emb", 1.0, None)]


@pytest.mark.parametrize("bad", ["<lora:x:abc>", "<lora::1>", "<lora:x:1:2:3>", "<lora:x:foo=1>", "<lora:x:nan>"])
def test_bad_tags(bad):
    with pytest.raises(LoraError):
        extract_lora_tags(bad)


def test_set_weight_replaces_adds_removes():
    p = "a cat, <lora:style:0.8> <lora:other:1>"
    assert set_lora_weight(p, "style", 0.35) == "a cat, <lora:style:0.35> <lora:other:1>"
    assert set_lora_weight(p, "new", 1) == p + " <lora:new:1>"
    assert set_lora_weight("", "new", 0.5) == "<lora:new:0.5>"
    assert set_lora_weight(p, "style", None) == "a cat,  <lora:other:1>"
    assert set_lora_weight("<lora:s:0.2:0.9>", "s", 0.5) == "<lora:s:0.5>"
    assert set_lora_weight("<lyco:s:0.2>", "s", 0.1 + 0.2) == "<lyco:s:0.3>"


def test_list_weights_roundtrip_with_slider():
    p = "x <lora:a:0.25> <lora:b> <lora:broken:zz> <lora:c:te=0.5:unet=1>"
    assert list_lora_weights(p) == {"a": 0.25, "b": 1.0, "c": 0.5}
    for name, w in {"a": 0.7, "b": 0.0, "d": -0.5}.items():
        p = set_lora_weight(p, name, w)
    assert list_lora_weights(p) == {"a": 0.7, "b": 0.0, "c": 0.5, "d": -0.5}


def test_format_weight():
    assert [format_weight(w) for w in (1, 1.0, 0.75, 0.1 + 0.2, -0.0, 10, 0.12345)] == \
        ["1", "1", "0.75", "0.3", "0", "10", "0.1235"]
