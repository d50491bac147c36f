"""Textual-inversion embeddings: file formats, multi-vector names with capitals, chunk boundaries, width
checks, unreadable files, TI hashes, in both prompts."""
from __future__ import annotations

import hashlib
import logging

import pytest
import torch
from safetensors.torch import save_file

from creationmix.prompt.conditioning import build_conditioning
from creationmix.prompt.embeddings import EmbeddingLibrary, load_embedding_file
from creationmix.prompt.encoder import PromptEncoder, count_tokens

EIGHT = "one two three four five six seven eight"


@pytest.fixture(scope="module")
def comps():
    from creationmix.models.tiny import tiny_components
    return tiny_components(seed=0)


def rows_of(comps, text: str) -> torch.Tensor:
    """The token-embedding rows of `text`: an embedding made of them must encode exactly like the text."""
    ids = comps["tokenizer"](text, add_special_tokens=False)["input_ids"]
    return comps["text_encoder"].embeddings.token_embedding.weight[ids].detach().clone()


def save_a1111_pt(path, vec):
    torch.save({"string_to_token": {"*": 265}, "string_to_param": {"*": vec}, "name": path.stem, "step": 100,
                "sd_checkpoint": "abc", "sd_checkpoint_name": "x"}, path)


@pytest.fixture
def emb_dir(tmp_path, comps):
    d = tmp_path / "embeddings"
    (d / "sub").mkdir(parents=True)
    save_a1111_pt(d / "EasyNegative.pt", rows_of(comps, EIGHT))  # 8 vectors, capitalised name
    save_file({"emb_params": rows_of(comps, "red cat")}, str(d / "sub" / "redcat.safetensors"))
    torch.save({"<blue>": rows_of(comps, "blue")[0]}, d / "bluish.bin")  # diffusers concept, one (D,) vector
    return d


@pytest.fixture
def enc(comps, emb_dir):
    return PromptEncoder(comps["text_encoder"], comps["tokenizer"], EmbeddingLibrary([emb_dir]))


def test_formats_load(emb_dir):
    lib = EmbeddingLibrary([emb_dir])
    assert lib.names == ["EasyNegative", "bluish", "redcat"]
    assert lib.get("EasyNegative").num_vectors == 8
    assert lib.get("redcat").num_vectors == 2
    assert lib.get("bluish").vectors.shape == (1, 32)
    assert not lib.skipped
    assert load_embedding_file(emb_dir / "EasyNegative.pt").shape == (8, 32)


def test_multi_vector_with_capitals_uses_all_vectors(enc):
    z = enc.encode("EasyNegative, a house")
    assert set(enc.used_embeddings) == {"EasyNegative"}
    assert torch.allclose(z, enc.encode(f"{EIGHT}, a house"), atol=1e-6)
    assert enc.used_embeddings == {}
    # the tokenizer lower-cases: any spelling matches, as in A1111
    assert torch.allclose(enc.encode("easynegative, a house"), z, atol=1e-6)
    chunks, count = enc.tokenize_line("EasyNegative, a house")
    assert count == 8 + 3 and chunks[0].fixes[0][0] == 0 and chunks[0].fixes[0][1].num_vectors == 8


def test_other_formats_encode_like_their_words(enc):
    z = enc.encode("a redcat on a bluish mat")
    assert set(enc.used_embeddings) == {"redcat", "bluish"}
    assert torch.allclose(z, enc.encode("a red cat on a blue mat"), atol=1e-6)


def test_embedding_takes_the_group_weight(enc):
    z = enc.encode("(EasyNegative:1.3), a", emphasis="No norm")
    assert torch.allclose(z, enc.encode(f"({EIGHT}:1.3), a", emphasis="No norm"), atol=1e-6)


def test_embedding_never_straddles_chunks(enc):
    text = "a " * 70 + "EasyNegative"
    chunks, count = enc.tokenize_line(text)
    assert len(chunks) == 2
    assert chunks[0].tokens[1:71] == [320] * 70 and set(chunks[0].tokens[71:]) == {49407}
    assert chunks[1].fixes and chunks[1].fixes[0][0] == 0
    assert count == 75 + 8
    assert torch.allclose(enc.encode(text), enc.encode("a " * 70 + "BREAK " + EIGHT), atol=1e-6)


def test_embedding_moved_by_comma_backtrack_leaves_its_vectors_behind(enc):
    # A1111's tokenize_line moves tokens and multipliers after the comma, not chunk.fixes: the vectors stay in
    # the first chunk at offset 67 (over its end padding) and the next chunk starts with placeholder ids 0.
    text = "a " * 66 + ", redcat " + "b " * 10  # the chunk fills inside "b b ...": "redcat b..." moves on
    chunks, _ = enc.tokenize_line(text)
    assert [f[0] for f in chunks[0].fixes] == [67] and chunks[1].fixes == []
    assert chunks[0].tokens[68:70] == [49407, 49407] and chunks[1].tokens[1:3] == [0, 0]
    z = enc.encode(text, emphasis="No norm")
    first = enc.encode("a " * 66 + ", red cat", emphasis="No norm")  # same vectors at the same positions
    assert torch.allclose(z[:, :77], first[:, :77], atol=1e-6)


def test_both_prompts_and_ti_hashes(enc, emb_dir):
    cond = build_conditioning(enc, "a redcat", "EasyNegative, bad", 10, clip_skip=1, emphasis="Original")
    parts, uncond = cond.at(0)
    assert torch.allclose(uncond, enc.encode(f"{EIGHT}, bad"), atol=1e-6)
    assert torch.allclose(parts[0][0], enc.encode("a red cat"), atol=1e-6)
    sha = lambda p: hashlib.sha256(p.read_bytes()).hexdigest()[:12]  # noqa: E731
    assert cond.ti_hashes == {"EasyNegative": sha(emb_dir / "EasyNegative.pt"),
                              "redcat": sha(emb_dir / "sub" / "redcat.safetensors")}
    assert cond.embeddings_used == {"EasyNegative", "redcat"}


def test_width_mismatch_is_skipped_with_a_warning(comps, emb_dir, caplog):
    torch.save({"string_to_param": {"*": torch.randn(4, 768)}}, emb_dir / "WideOne.pt")
    enc = PromptEncoder(comps["text_encoder"], comps["tokenizer"], EmbeddingLibrary([emb_dir]))
    with caplog.at_level(logging.WARNING):
        z = enc.encode("WideOne cat")
    assert "WideOne" in caplog.text
    assert "WideOne" not in enc.used_embeddings
    plain = PromptEncoder(comps["text_encoder"], comps["tokenizer"])
    assert torch.allclose(z, plain.encode("WideOne cat"), atol=1e-6)


def test_unreadable_file_is_skipped_with_a_warning(emb_dir, caplog):
    (emb_dir / "broken.pt").write_bytes(b"not a torch file")
    torch.save({"a": torch.zeros(3), "b": torch.zeros(3)}, emb_dir / "twoterms.bin")
    with caplog.at_level(logging.WARNING):
        lib = EmbeddingLibrary([emb_dir])
    assert "broken.pt" in caplog.text and "twoterms.bin" in caplog.text
    assert set(lib.skipped) == {"broken.pt", "twoterms.bin"}
    assert "EasyNegative" in lib


def test_library_picks_up_new_files(comps, emb_dir, enc):
    assert "newone" not in enc.embeddings
    enc.encode("newone")
    torch.save({"string_to_param": {"*": rows_of(comps, "dog")}}, emb_dir / "newone.pt")
    z = enc.encode("newone")
    assert "newone" in enc.used_embeddings
    assert torch.allclose(z, enc.encode("dog"), atol=1e-6)


def test_token_counter_counts_vectors(comps, emb_dir):
    lib = EmbeddingLibrary([emb_dir])
    assert count_tokens("EasyNegative, a", embeddings=lib, tokenizer=comps["tokenizer"]) == (10, 75)
