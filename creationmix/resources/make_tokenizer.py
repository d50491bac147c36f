"""Dev-time tool: regenerate the shipped CLIP tokenizer files (vocab.json, merges.txt) for SD 1.5.

Not used at run time. The files are derived exactly as OpenAI CLIP's SimpleTokenizer derives its vocabulary
from `bpe_simple_vocab_16e6.txt.gz` (the file bundled with openai/CLIP and open_clip), so the result equals
the `openai/clip-vit-large-patch14` tokenizer that SD 1.5 uses, without downloading anything.

Usage:
    python -m creationmix.resources.make_tokenizer /path/to/bpe_simple_vocab_16e6.txt.gz [out_dir]

out_dir defaults to creationmix/resources/sd15/tokenizer.
"""
from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

N_MERGES = 49152 - 256 - 2  # CLIP: lines[1:49152-256-2+1]

TOKENIZER_CONFIG = {
    "add_prefix_space": False,
    "bos_token": "<|startoftext|>",
    "clean_up_tokenization_spaces": True,
    "do_lower_case": True,
    "eos_token": "<|endoftext|>",
    "errors": "replace",
    "model_max_length": 77,
    "pad_token": "<|endoftext|>",
    "tokenizer_class": "CLIPTokenizer",
    "unk_token": "<|endoftext|>",
}
SPECIAL_TOKENS_MAP = {
    "bos_token": "<|startoftext|>",
    "eos_token": "<|endoftext|>",
    "pad_token": "<|endoftext|>",
    "unk_token": "<|endoftext|>",
}


def bytes_to_unicode() -> dict[int, str]:
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


def build(bpe_gz: Path) -> tuple[dict[str, int], list[tuple[str, str]]]:
    lines = gzip.open(bpe_gz).read().decode("utf-8").split("\n")
    merges = [tuple(line.split()) for line in lines[1:N_MERGES + 1]]
    vocab = list(bytes_to_unicode().values())
    vocab = vocab + [v + "</w>" for v in vocab]
    vocab.extend("".join(m) for m in merges)
    vocab.extend(["<|startoftext|>", "<|endoftext|>"])
    assert len(vocab) == 49408 and len(set(vocab)) == 49408, len(vocab)
    return {tok: i for i, tok in enumerate(vocab)}, merges


def write(bpe_gz: Path, out_dir: Path) -> None:
    from creationmix.fsio import write_atomic
    vocab, merges = build(bpe_gz)
    write_atomic(out_dir / "vocab.json", json.dumps(vocab, ensure_ascii=False), what="tokenizer")
    write_atomic(out_dir / "merges.txt", "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges),
                 what="tokenizer")
    write_atomic(out_dir / "tokenizer_config.json", json.dumps(TOKENIZER_CONFIG, indent=2) + "\n", what="tokenizer")
    write_atomic(out_dir / "special_tokens_map.json", json.dumps(SPECIAL_TOKENS_MAP, indent=2) + "\n",
                 what="tokenizer")


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    default_out = Path(__file__).resolve().parent / "sd15" / "tokenizer"
    write(Path(sys.argv[1]), Path(sys.argv[2]) if len(sys.argv) == 3 else default_out)
