"""build_conditioning: prompt editing switches at A1111's step, alternation, AND weights, hires schedules."""
from __future__ import annotations

import pytest
import torch

from creationmix.errors import InvalidParameter
from creationmix.prompt.conditioning import build_conditioning, prompt_token_count
from creationmix.prompt.encoder import PromptEncoder


@pytest.fixture(scope="module")
def enc():
    from creationmix.models.tiny import tiny_components
    c = tiny_components(seed=0)
    return PromptEncoder(c["text_encoder"], c["tokenizer"])


def same(a, b):
    return a.shape == b.shape and torch.allclose(a, b, atol=1e-6)


def test_prompt_editing_switches_after_step_10(enc):
    cond = build_conditioning(enc, "a [cat:dog:10]", "ugly", 20)
    cat, dog = enc.encode("a cat"), enc.encode("a dog")
    assert not same(cat, dog)
    for step in (0, 9, 10):
        assert same(cond.at(step)[0][0][0], cat), step
    for step in (11, 19):
        assert same(cond.at(step)[0][0][0], dog), step
    assert same(cond.at(5)[1], enc.encode("ugly"))
    assert cond.switch_steps == [10, 20]


def test_fraction_and_negative_schedule(enc):
    cond = build_conditioning(enc, "[cat:dog:0.25]", "[blurry::0.5]", 20)
    assert same(cond.at(5)[0][0][0], enc.encode("cat")) and same(cond.at(6)[0][0][0], enc.encode("dog"))
    assert same(cond.at(10)[1], enc.encode("blurry")) and same(cond.at(11)[1], enc.encode(""))


def test_alternation(enc):
    cond = build_conditioning(enc, "a [cat|dog]", "", 6)
    cat, dog = enc.encode("a cat"), enc.encode("a dog")
    got = ["cat" if same(cond.at(s)[0][0][0], cat) else "dog" if same(cond.at(s)[0][0][0], dog) else "?"
           for s in range(6)]
    assert got == ["cat", "cat", "dog", "cat", "dog", "cat"]  # call index 0 uses step 1's text, as in A1111


def test_and_weights(enc):
    cond = build_conditioning(enc, "a cat AND a dog :0.4 AND (sun:1.2)", "neg AND more", 10)
    parts, uncond = cond.at(0)
    assert [w for _, w in parts] == [1.0, 0.4, 1.0]
    assert same(parts[0][0], enc.encode("a cat")) and same(parts[1][0], enc.encode(" a dog"))
    assert same(parts[2][0], enc.encode(" (sun:1.2)"))
    assert same(uncond, enc.encode("neg AND more"))  # the negative prompt is not split


def test_parts_keep_their_own_length(enc):
    cond = build_conditioning(enc, "a AND " + "b " * 80, "", 10)
    parts, _ = cond.at(0)
    assert [p.shape[1] for p, _ in parts] == [77, 154]


def test_schedule_texts_share_a_length(enc):
    cond = build_conditioning(enc, "[" + "a " * 80 + ":b:5]", "", 10)
    assert cond.at(0)[0][0][0].shape == cond.at(9)[0][0][0].shape == (1, 154, 32)


def test_emphasis_mean_is_over_the_schedule_batch(enc):
    cond = build_conditioning(enc, "[(cat):dog:5]", "", 10)
    batch = enc.encode_batch(["(cat)", "dog"])
    assert same(cond.at(0)[0][0][0], batch[0:1]) and same(cond.at(6)[0][0][0], batch[1:2])


def test_hires_schedule(enc):
    cond = build_conditioning(enc, "[cat:dog:25]", "", 20, hires_steps=10)
    assert same(cond.at(5)[0][0][0], enc.encode("cat")) and same(cond.at(6)[0][0][0], enc.encode("dog"))


def test_clip_skip_reaches_every_part(enc):
    cond = build_conditioning(enc, "a [cat:dog:3]", "bad", 10, clip_skip=2)
    assert same(cond.at(0)[0][0][0], enc.encode("a cat", clip_skip=2))
    assert same(cond.at(0)[1], enc.encode("bad", clip_skip=2))


def test_bad_arguments(enc):
    with pytest.raises(InvalidParameter, match="prompt syntax"):
        build_conditioning(enc, "a", "", 10, syntax="NovelAI")
    with pytest.raises(InvalidParameter, match="emphasis"):
        build_conditioning(enc, "a", "", 10, emphasis="Loud")


def test_prompt_token_count(enc):
    assert prompt_token_count(enc, "a b c AND " + "d " * 80) == (80, 150)
