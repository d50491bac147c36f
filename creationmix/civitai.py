"""Civitai's `Hashes: {...}` infotext value, which civitai reads to link every resource of an image.

Civitai's parser takes `, Hashes:\\s*({[^}]+})` from the parameter line (A1111's quote() writes a dict as bare
JSON) and matches each hash against the file hashes it stores. What goes in, as civitai's own A1111 extension
writes it: "model" and "vae" AutoV2 (sha256[:10], = `Model hash` / `VAE hash`), "lora:<name>" the LoRA hash
A1111 writes in `Lora hashes` (AutoV3, sha256 of the safetensors body [:12], which civitai also stores), and
"embed:<name>" sha256[:10] of the embedding file (civitai keeps AutoV2 for embeddings; A1111's `TI hashes`
value, sha256[:12], matches none of its hash kinds).
"""
from __future__ import annotations

import json
from collections.abc import Mapping


def civitai_hashes(model_hash: str | None, vae_hash: str | None = None, loras: Mapping[str, str] | None = None,
                   embeddings: Mapping[str, str] | None = None) -> str:
    """The `Hashes` JSON; `embeddings` maps names to their file's sha256 (or any prefix of 10+ digits).

    Names containing `}` are left out: civitai's regex would stop at them and lose the whole value."""
    out: dict[str, str] = {}
    if model_hash:
        out["model"] = model_hash[:10]
    if vae_hash:
        out["vae"] = vae_hash[:10]
    for name, h in (loras or {}).items():
        out[f"lora:{name}"] = h
    for name, sha in (embeddings or {}).items():
        out[f"embed:{name}"] = sha[:10]
    out = {k: v for k, v in out.items() if "}" not in k and "}" not in v}
    return json.dumps(out, ensure_ascii=False) if out else ""


def read_hashes(value: str | None) -> dict[str, str]:
    """`Hashes` back into a dict ({} when absent or not a JSON object of strings)."""
    try:
        data = json.loads(value or "")
    except ValueError:
        return {}
    if not isinstance(data, dict):
        return {}
    return {str(k): str(v) for k, v in data.items()}


def read_resources(value: str | None) -> list[dict]:
    """`Civitai resources` back into a list of dicts ([] when absent or malformed)."""
    try:
        data = json.loads(value or "")
    except ValueError:
        return []
    return [r for r in data if isinstance(r, dict)] if isinstance(data, list) else []


__all__ = ["civitai_hashes", "read_hashes", "read_resources"]
