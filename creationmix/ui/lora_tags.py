"""LoRA tag editing for the UI (cards and sliders), on top of `creationmix.lora.tags` (torch-free).

The slider shows a tag's text-encoder weight; moving it rewrites that LoRA's tags to `<lora:name:w>`.
"""
from __future__ import annotations

from ..lora.tags import format_weight
from ..lora.tags import list_lora_weights as _weights
from ..lora.tags import set_lora_weight

__all__ = ["has_lora", "list_lora_weights", "remove_lora", "set_lora_weight", "toggle_lora"]


def list_lora_weights(prompt: str) -> list[tuple[str, float]]:
    """(name, weight) for each LoRA in the prompt, in order of first appearance."""
    return list(_weights(prompt).items())


def has_lora(prompt: str, name: str) -> bool:
    return name in _weights(prompt)


def remove_lora(prompt: str, name: str) -> str:
    return " ".join(set_lora_weight(prompt, name, None).split(" ")).strip()


def toggle_lora(prompt: str, name: str, weight: float) -> str:
    """A1111's card click: append `<lora:name:weight>`, or remove the tag when it is already there."""
    if has_lora(prompt, name):
        return remove_lora(prompt, name).rstrip()
    prompt = (prompt or "").rstrip()
    tag = f"<lora:{name}:{format_weight(weight)}>"
    return f"{prompt} {tag}" if prompt else tag
