"""The shipped CLIP tokenizer (resources/sd15/tokenizer) is OpenAI CLIP's, id for id."""
import json

import pytest

from creationmix.models.tiny import RESOURCES

TOK_DIR = RESOURCES / "tokenizer"


@pytest.fixture(scope="module")
def tok():
    from transformers import CLIPTokenizer
    return CLIPTokenizer.from_pretrained(TOK_DIR, local_files_only=True)


def test_files_shape():
    vocab = json.loads((TOK_DIR / "vocab.json").read_text(encoding="utf-8"))
    assert len(vocab) == 49408
    assert sorted(vocab.values()) == list(range(49408))
    lines = (TOK_DIR / "merges.txt").read_text(encoding="utf-8").split("\n")
    assert lines[0] == "#version: 0.2"
    assert len([ln for ln in lines[1:] if ln]) == 48894
    assert vocab["<|startoftext|>"] == 49406 and vocab["<|endoftext|>"] == 49407


def test_known_ids(tok):
    assert tok("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]
    assert len(tok) == 49408
    assert tok.bos_token_id == 49406 and tok.eos_token_id == 49407 and tok.pad_token_id == 49407
    assert tok.model_max_length == 77
    vocab = tok.get_vocab()
    assert vocab[",</w>"] == 267  # A1111 uses this id to split long prompts at commas
    assert vocab["!"] == 0 and vocab["a</w>"] == 320


def test_padding_and_case(tok):
    ids = tok("A PHOTO of a Cat", padding="max_length", max_length=77, truncation=True).input_ids
    assert ids[:7] == [49406, 320, 1125, 539, 320, 2368, 49407]
    assert len(ids) == 77 and set(ids[7:]) == {49407}
    assert tok.convert_ids_to_tokens([2368]) == ["cat</w>"]


def test_generator_is_reproducible(tmp_path):
    gz = "/tmp/ocx/open_clip/bpe_simple_vocab_16e6.txt.gz"
    import os
    if not os.path.isfile(gz):
        pytest.skip("open_clip's bpe_simple_vocab_16e6.txt.gz not available here")
    from creationmix.resources.make_tokenizer import write
    write(gz, tmp_path)
    for name in ("vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json"):
        assert (tmp_path / name).read_bytes() == (TOK_DIR / name).read_bytes(), name
