"""A1111's prompt language: emphasis, prompt editing / alternation / AND, chunked CLIP encoding with clip skip
and emphasis modes, textual-inversion embeddings, and the optional compel syntax.

Torch is imported lazily: `parse_prompt_attention` and the schedule functions are usable without it.
"""
from __future__ import annotations

from .attention import parse_prompt_attention
from .schedule import get_learned_conditioning_prompt_schedules, get_multicond_prompt_list, split_and

_LAZY = {
    "PromptEncoder": ".encoder",
    "count_tokens": ".encoder",
    "EmbeddingLibrary": ".embeddings",
    "Embedding": ".embeddings",
    "build_conditioning": ".conditioning",
    "PromptConditioning": ".conditioning",
    "prompt_token_count": ".conditioning",
}


def __getattr__(name):
    if name in _LAZY:
        import importlib
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["parse_prompt_attention", "get_learned_conditioning_prompt_schedules", "get_multicond_prompt_list",
           "split_and", *_LAZY]
