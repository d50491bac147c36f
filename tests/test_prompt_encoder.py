"""Chunking, clip skip, emphasis modes and the cache of the A1111 prompt encoder, on the tiny CLIP."""
from __future__ import annotations

import pytest
import torch

from creationmix.errors import InvalidParameter
from creationmix.prompt.encoder import PromptEncoder, count_tokens

BOS, EOS, COMMA, A, B = 49406, 49407, 267, 320, 321  # "a</w>" and "b</w>" are single tokens


@pytest.fixture(scope="module")
def comps():
    from creationmix.models.tiny import tiny_components
    return tiny_components(seed=0)


@pytest.fixture
def enc(comps):
    return PromptEncoder(comps["text_encoder"], comps["tokenizer"])


def reference(comps, ids_rows, clip_skip=1):
    """Straight transformers: each row padded to 77 with EOS, hidden state -clip_skip + final LayerNorm."""
    te = comps["text_encoder"]
    ids = torch.tensor([[BOS] + r + [EOS] * (76 - len(r)) for r in ids_rows])
    with torch.no_grad():
        out = te(input_ids=ids, output_hidden_states=True)
        return te.final_layer_norm(out.hidden_states[-clip_skip])


def ids_of(comps, text):
    return comps["tokenizer"](text, add_special_tokens=False)["input_ids"]


def test_short_prompt_matches_plain_clip(comps, enc):
    z = enc.encode("a photo of a cat")
    assert z.shape == (1, 77, 32)
    te = comps["text_encoder"]
    ids = comps["tokenizer"](["a photo of a cat"], padding="max_length", max_length=77, return_tensors="pt").input_ids
    with torch.no_grad():
        assert torch.allclose(z, te(ids).last_hidden_state, atol=1e-6)


@pytest.mark.parametrize("n, chunks, count", [(74, 1, (74, 75)), (75, 1, (75, 75)), (76, 2, (76, 150)),
                                              (150, 2, (150, 150)), (151, 3, (151, 225))])
def test_chunk_boundaries(enc, n, chunks, count):
    built, _ = enc.tokenize_line("a " * n)
    assert len(built) == chunks
    for c in built:
        assert len(c.tokens) == 77 and c.tokens[0] == BOS and c.tokens[-1] == EOS
        assert len(c.multipliers) == 77
    flat = [t for c in built for t in c.tokens[1:-1]]
    assert flat.count(A) == n and set(flat) <= {A, EOS}
    assert enc.token_count("a " * n) == count
    assert enc.encode("a " * n).shape == (1, 77 * chunks, 32)


def test_chunks_encoded_separately(comps, enc):
    z = enc.encode("a " * 76)
    ref = reference(comps, [[A] * 75, [A]])
    assert torch.allclose(z[0, :77], ref[0], atol=1e-6)
    assert torch.allclose(z[0, 77:], ref[1], atol=1e-6)


def test_comma_backtrack_moves_the_last_phrase(enc):
    chunks, _ = enc.tokenize_line("a " * 70 + ", " + "b " * 10)
    body0, body1 = chunks[0].tokens[1:-1], chunks[1].tokens[1:-1]
    assert body0[:71] == [A] * 70 + [COMMA] and body0[71:] == [EOS] * 4
    assert body1[:10] == [B] * 10 and set(body1[10:]) == {EOS}


def test_comma_too_far_back_is_not_used(enc):
    chunks, _ = enc.tokenize_line("a " * 10 + ", " + "b " * 70)
    body0 = chunks[0].tokens[1:-1]
    assert body0 == [A] * 10 + [COMMA] + [B] * 64
    assert chunks[1].tokens[1:7] == [B] * 6


def test_break_pads_out_the_chunk(comps, enc):
    chunks, count = enc.tokenize_line("a BREAK b")
    assert len(chunks) == 2
    assert chunks[0].tokens[:3] == [BOS, A, EOS] and chunks[1].tokens[:3] == [BOS, B, EOS]
    assert count == 76 and enc.token_count("a BREAK b") == (76, 150)
    z = enc.encode("a BREAK b")
    assert torch.allclose(z[0], torch.cat(list(reference(comps, [[A], [B]]))), atol=1e-6)


def test_empty_prompt_is_one_chunk(comps, enc):
    z = enc.encode("")
    assert z.shape == (1, 77, 32)
    assert torch.allclose(z[0], reference(comps, [[]])[0], atol=1e-6)
    assert enc.token_count("") == (0, 75)


@pytest.mark.parametrize("clip_skip", [1, 2, 3])
def test_clip_skip(comps, enc, clip_skip):
    z = enc.encode("a red cat", clip_skip=clip_skip)
    ref = reference(comps, [ids_of(comps, "a red cat")], clip_skip)
    assert torch.allclose(z, ref, atol=1e-6)
    if clip_skip > 1:
        assert not torch.allclose(z, enc.encode("a red cat", clip_skip=1), atol=1e-3)


def test_clip_skip_beyond_the_layers_is_clamped(enc, caplog):
    # the tiny CLIP has 3 layers; SD 1.5 has 12, A1111's whole range
    with caplog.at_level("WARNING"):
        z = enc.encode("a b", clip_skip=9)
    assert torch.equal(z, enc.encode("a b", clip_skip=3))
    with pytest.raises(InvalidParameter, match="clip skip"):
        enc.encode("a", clip_skip=0)


def _weights(positions: dict[int, float]) -> torch.Tensor:
    w = torch.ones(1, 77)
    for i, v in positions.items():
        w[0, i] = v
    return w


def test_emphasis_original(comps, enc):
    z = enc.encode("a (red:1.5) [cat]", emphasis="Original")
    base = reference(comps, [ids_of(comps, "a red cat")])
    w = _weights({2: 1.5, 3: 1 / 1.1}).unsqueeze(-1)
    scaled = base * w
    expected = scaled * (base.mean() / scaled.mean())
    assert torch.allclose(z, expected, atol=1e-5)
    assert torch.allclose(z.mean(), base.mean(), atol=1e-6)


def test_emphasis_no_norm(comps, enc):
    z = enc.encode("a (red:1.5) [cat]", emphasis="No norm")
    base = reference(comps, [ids_of(comps, "a red cat")])
    assert torch.allclose(z, base * _weights({2: 1.5, 3: 1 / 1.1}).unsqueeze(-1), atol=1e-6)


def test_emphasis_none_keeps_brackets_as_text(comps, enc):
    text = "a (red:1.5) cat"
    z = enc.encode(text, emphasis="None")
    assert torch.allclose(z, reference(comps, [ids_of(comps, text)]), atol=1e-6)


def test_emphasis_original_normalises_over_the_whole_batch(comps, enc):
    z = enc.encode_batch(["(a)", "b"], emphasis="Original")
    base = reference(comps, [[A], [B]])
    scaled = base * torch.stack([_weights({1: 1.1})[0], _weights({})[0]]).unsqueeze(-1)
    assert torch.allclose(z, scaled * (base.mean() / scaled.mean()), atol=1e-5)


def test_unknown_emphasis(enc):
    with pytest.raises(InvalidParameter, match="emphasis"):
        enc.encode("a", emphasis="Ignore")


def test_cache_and_invalidate(enc):
    z1 = enc.encode("a cat", clip_skip=2)
    assert enc.encode("a cat", clip_skip=2) is z1
    assert enc.encode("a cat", clip_skip=1) is not z1
    state = enc.te_state
    enc.invalidate()
    assert enc.te_state == state + 1
    z2 = enc.encode("a cat", clip_skip=2)
    assert z2 is not z1 and torch.equal(z1, z2)


def test_count_tokens_without_a_model(comps):
    assert count_tokens("a " * 42, tokenizer=comps["tokenizer"]) == (42, 75)
    assert count_tokens("a " * 98, tokenizer=comps["tokenizer"]) == (98, 150)
    # the longest of the schedule variants / AND parts counts
    assert count_tokens("[a:a a a:3] AND b", tokenizer=comps["tokenizer"]) == (3, 75)
