"""Prompt syntax "Compel": compel 2.x over stand-ins of our text encoder (which stays untouched)."""
from __future__ import annotations

import pytest
import torch

from creationmix.prompt.conditioning import build_conditioning
from creationmix.prompt.embeddings import EmbeddingLibrary
from creationmix.prompt.encoder import PromptEncoder


@pytest.fixture(scope="module")
def comps():
    from creationmix.models.tiny import tiny_components
    return tiny_components(seed=0)


@pytest.fixture
def enc(comps):
    return PromptEncoder(comps["text_encoder"], comps["tokenizer"])


def compel_cond(enc, prompt, negative="", clip_skip=1):
    parts, uncond = build_conditioning(enc, prompt, negative, 10, clip_skip=clip_skip, syntax="Compel").at(0)
    assert len(parts) == 1 and parts[0][1] == 1.0
    return parts[0][0], uncond


def reference(comps, text, clip_skip):
    te, tok = comps["text_encoder"], comps["tokenizer"]
    ids = tok([text], padding="max_length", max_length=77, return_tensors="pt").input_ids
    with torch.no_grad():
        out = te(input_ids=ids, output_hidden_states=True)
        return te.final_layer_norm(out.hidden_states[-clip_skip])


def test_shape_and_plain_prompt(comps, enc):
    cond, uncond = compel_cond(enc, "a photo of a cat", "blurry")
    assert cond.shape == uncond.shape == (1, 77, 32)
    assert torch.allclose(cond, reference(comps, "a photo of a cat", 1), atol=1e-5)


def test_clip_skip_2_is_final_layer_norm_of_penultimate(comps, enc):
    cond, _ = compel_cond(enc, "a photo of a cat", clip_skip=2)
    assert torch.allclose(cond, reference(comps, "a photo of a cat", 2), atol=1e-5)
    assert not hasattr(comps["text_encoder"], "text_model")  # the real model was not patched


def test_long_prompt_not_truncated_and_padded(enc):
    cond, uncond = compel_cond(enc, "word " * 100, "short")
    assert cond.shape == uncond.shape == (1, 154, 32)
    cond, uncond = compel_cond(enc, "short", "bad " * 100)
    assert cond.shape == uncond.shape == (1, 154, 32)


def test_compel_weighting_syntax(enc):
    plain, _ = compel_cond(enc, "a red cat")
    up, _ = compel_cond(enc, "a (red)1.4 cat")
    plus, _ = compel_cond(enc, "a red++ cat")
    assert not torch.allclose(plain, up) and not torch.allclose(plain, plus)
    blend, _ = compel_cond(enc, '("a red cat", "a blue dog").blend(0.5, 0.5)')
    assert blend.shape == (1, 77, 32)
    conj, _ = compel_cond(enc, '("a red cat", "a blue dog").and()')
    assert conj.shape[1] in (77, 154)


def test_embeddings_in_compel(comps, tmp_path):
    d = tmp_path / "embeddings"
    d.mkdir()
    ids = comps["tokenizer"]("one two three four five six seven eight", add_special_tokens=False)["input_ids"]
    vec = comps["text_encoder"].embeddings.token_embedding.weight[ids].detach().clone()
    torch.save({"string_to_param": {"*": vec}}, d / "EasyNegative.pt")
    enc = PromptEncoder(comps["text_encoder"], comps["tokenizer"], EmbeddingLibrary([d]))
    c = build_conditioning(enc, "a cat", "EasyNegative, bad", 10, syntax="Compel")
    _, uncond = c.at(0)
    assert set(c.ti_hashes) == {"EasyNegative"}
    _, ref = compel_cond(PromptEncoder(comps["text_encoder"], comps["tokenizer"]), "a cat",
                         "one two three four five six seven eight, bad")
    assert torch.allclose(uncond, ref, atol=1e-5)


def test_compel_result_is_cached_until_invalidated(enc):
    a, _ = compel_cond(enc, "a cat")
    b, _ = compel_cond(enc, "a cat")
    assert a is b
    enc.invalidate()
    c, _ = compel_cond(enc, "a cat")
    assert c is not a and torch.allclose(a, c)
