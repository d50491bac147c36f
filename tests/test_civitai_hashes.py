"""Civitai's `Hashes: {json}`: written (bare, as civitai's regex `, Hashes:\\s*({[^}]+})` needs) beside A1111's
hash keys, and read back as source information (kept, not applied, not echoed as parameters)."""
from __future__ import annotations

import hashlib
import json
import re

import torch
from safetensors.torch import save_file

from creationmix.civitai import civitai_hashes, read_hashes, read_resources
from creationmix.engine import Engine
from creationmix.infotext import format_infotext, parse_infotext
from creationmix.params import GenerationParams

CIVITAI_HASHES = re.compile(r", Hashes:\s*({[^}]+})")  # civitai/civitai src/utils/metadata/automatic.metadata.ts


def test_hashes_json_layout():
    text = civitai_hashes("1065c5d2e0", "735e4c3a44", {"style_Rella": "0123456789ab"},
                          {"EasyNegative": "c74b4e810b03ffff"})
    assert json.loads(text) == {"model": "1065c5d2e0", "vae": "735e4c3a44", "lora:style_Rella": "0123456789ab",
                                "embed:EasyNegative": "c74b4e810b"}
    assert read_hashes(text) == json.loads(text)
    assert civitai_hashes("abc", loras={"we}ird": "1"}) == '{"model": "abc"}'  # a `}` would end civitai's match
    assert read_hashes("not json") == {} and read_hashes('["x"]') == {}
    assert read_resources('[{"type": "checkpoint", "modelVersionId": 1}, 3]') == [{"type": "checkpoint",
                                                                                   "modelVersionId": 1}]


def test_hashes_written_bare_and_read_back():
    hashes = civitai_hashes("1065c5d2e0", None, {"a": "0123456789ab"}, {"EasyNegative": "c74b4e810b03"})
    meta = {"Model hash": "1065c5d2e0", "Lora hashes": "a: 0123456789ab", "Hashes": hashes, "Version": "v"}
    text = format_infotext(GenerationParams(prompt="x <lora:a:1>", negative_prompt="EasyNegative", seed=1), meta)
    assert f", Hashes: {hashes}, Version: v" in text
    assert json.loads(CIVITAI_HASHES.search(text).group(1)) == json.loads(hashes)
    parsed = parse_infotext(text)
    assert parsed.meta == meta and parsed.ignored == {} and parsed.warnings == ()
    assert "Hashes" not in parsed.applied


def test_engine_writes_hashes_for_model_and_embeddings(folders):
    engine = Engine(folders, device="cpu", precision="fp32")
    width = engine.load().text_encoder.config.hidden_size
    emb = folders.embedding_dirs[0] / "myemb.safetensors"
    save_file({"emb_params": torch.randn(2, width, generator=torch.Generator().manual_seed(0))}, str(emb))
    sha = hashlib.sha256(emb.read_bytes()).hexdigest()
    res = engine.generate(GenerationParams(prompt="a cat", negative_prompt="myemb, blurry", steps=1, sampler="Euler",
                                           width=64, height=64, seed=3), save=False)
    [text] = res.infotexts
    model_hash = engine.model.model_hash
    assert f'TI hashes: "myemb: {sha[:12]}"' in text  # A1111's TI hashes: sha256[:12]
    found = json.loads(CIVITAI_HASHES.search(text).group(1))
    assert found == {"model": model_hash, "embed:myemb": sha[:10]}
    parsed = parse_infotext(text)
    assert read_hashes(parsed.meta["Hashes"]) == found and parsed.ignored == {}
    assert format_infotext(*parsed) == text
