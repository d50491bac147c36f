"""Preset + infotext + explicit values -> one GenerationParams. Torch-free; the CLI, the service jobs and the
HTTP API share it, so "what does this request mean" has one answer.

Later sources override earlier ones: the preset card, then the infotext block, then the explicit fields.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from .params import GenerationParams
from .presets import PRESETS_DIR, Preset, find_preset


def load_preset_by_id(preset_id: str, folder: Path | None = None) -> Preset:
    """A preset card by id, from `folder` (default: the shipped presets)."""
    return find_preset(folder or PRESETS_DIR, preset_id)


def resolve_params(*, preset: str | Preset | None = None, infotext: str | None = None,
                   overrides: Mapping[str, Any] | None = None, lora: str | None = None,
                   presets_dir: Path | None = None) -> GenerationParams:
    """A preset with a LoRA slot gets `lora` in its slot when given (a sweep's LoRA), else its default LoRA.
    An infotext replaces the card's values wholesale (it is a complete recipe); `overrides` are
    GenerationParams fields given explicitly."""
    base = GenerationParams()
    if preset is not None:
        card = preset if isinstance(preset, Preset) else load_preset_by_id(preset, presets_dir)
        base = card.fill_lora(lora, 1.0) if lora and card.has_lora_slot else card.to_params()
    if infotext is not None:
        from .infotext import parse_infotext
        base = parse_infotext(infotext).params
    return base.replace(**dict(overrides or {}))
