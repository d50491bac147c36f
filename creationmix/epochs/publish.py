"""Publish the winning epoch: its preview image and A1111's user-metadata sidecar, as A1111 reads them.

A1111 (extensions-builtin/Lora/ui_edit_user_metadata.py, ui_extra_networks_user_metadata.py) keeps a LoRA's
user metadata in `<stem>.json` (json.dump indent=4, ensure_ascii=False) with the keys "description",
"sd version", "activation text", "preferred weight" (0 = not set), "negative text", "notes"; the card
inserts `<lora:alias:preferred weight>` plus " activation text". Its preview is the first of `<stem>.png`,
`<stem>.preview.png` (then other image kinds): `<stem>.preview.png` is our default so a user's own `<stem>.png`
keeps winning; `preview_name="png"` writes `<stem>.png`, A1111's own "replace preview" name.

A value the user already set is kept (reported as kept) unless `force`; keys we do not write (notes, negative
text, anything else) are always kept. An existing preview is kept unless `force`. Writes are whole or nothing.
Civitai-Helper's `<stem>.civitai.info` is read for trigger words, never written.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InvalidParameter, LoraError
from ..lora.tags import extract_lora_tags, format_weight

PREVIEW_SUFFIXES = {"preview": ".preview.png", "png": ".png"}
TOP_TAGS = 3
SD_VERSION = "SD1"


@dataclass
class PublishResult:
    lora_file: Path
    epoch_label: str
    strength: float
    preview: Path | None = None
    preview_written: bool = False
    sidecar: Path | None = None
    written: dict[str, Any] = field(default_factory=dict)  # sidecar keys set now
    kept: dict[str, Any] = field(default_factory=dict)  # the user's values left alone (use force to replace)
    notes: list[str] = field(default_factory=list)

    @property
    def files(self) -> list[Path]:
        out = [self.preview] if self.preview_written and self.preview else []
        return out + ([self.sidecar] if self.written and self.sidecar else [])

    def summary(self) -> str:
        lines = [f"published {self.lora_file.name} ({self.epoch_label}) at strength {format_weight(self.strength)}"]
        lines += [f"  {n}" for n in self.notes]
        return "\n".join(lines)


def preview_target(lora_file: Path, preview_name: str = "preview") -> Path:
    if preview_name not in PREVIEW_SUFFIXES:
        raise InvalidParameter(f"preview name {preview_name!r}: use one of {', '.join(PREVIEW_SUFFIXES)} "
                               f"(<stem>.preview.png or <stem>.png)")
    return lora_file.with_name(lora_file.stem + PREVIEW_SUFFIXES[preview_name])


def _escape(tag: str) -> str:
    for ch in "({[]})":  # as A1111's tag-to-prompt does: a tag like `smile_(expression)` is no attention syntax
        tag = tag.replace(ch, "\\" + ch)
    return tag


def activation_text(info, sample_prompt: str | None = None, top: int = TOP_TAGS) -> str:
    """Civitai-Helper's trigger words, else the most frequent training tags, else the sample prompt."""
    if getattr(info, "civitai_words", ()):
        return ", ".join(info.civitai_words)
    tags = list(getattr(info, "trigger_tags", []))[:top]
    if tags:
        return ", ".join(_escape(t) for t in tags)
    if sample_prompt:
        return extract_lora_tags(sample_prompt)[0].strip().rstrip(",").strip()
    return ""


def _is_set(key: str, value: Any) -> bool:
    if value is None:
        return False
    if key == "preferred weight":
        try:
            return float(value) != 0  # A1111: 0 means "not set"
        except (TypeError, ValueError):
            return bool(value)
    if key == "sd version":
        return str(value) not in ("", "Unknown")
    return str(value).strip() != ""


def read_user_metadata(sidecar: Path) -> dict[str, Any]:
    if not sidecar.is_file():
        return {}
    try:
        data = json.loads(sidecar.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise LoraError(f"{sidecar.name} exists but is not readable JSON ({e}); fix or remove it, or use force "
                        f"to replace it") from None
    if not isinstance(data, dict):
        raise LoraError(f"{sidecar.name} is not a JSON object; fix or remove it, or use force to replace it")
    return data


def write_user_metadata(lora_file: Path, values: dict[str, Any], *, force: bool = False) -> tuple[Path, dict, dict]:
    """Merge `values` into `<stem>.json`; returns (path, written, kept). Nothing is written when nothing changes."""
    from ..fsio import write_atomic

    sidecar = lora_file.with_suffix(".json")
    try:
        current = read_user_metadata(sidecar)
    except LoraError:
        if not force:
            raise
        current = {}
    merged = dict(current)
    written, kept = {}, {}
    for key, value in values.items():
        if not force and _is_set(key, current.get(key)):
            if current.get(key) != value:
                kept[key] = current[key]
            continue
        if current.get(key) != value:
            written[key] = value
        merged[key] = value
    for key in ("negative text", "notes"):  # what A1111's editor always has
        merged.setdefault(key, "")
    if written or not sidecar.exists():
        write_atomic(sidecar, json.dumps(merged, indent=4, ensure_ascii=False), what="LoRA sidecar")
        written = written or dict(values)
    return sidecar, written, kept


def publish(cell, series, *, force: bool = False, preview_name: str = "preview", sample_prompt: str | None = None,
            checkpoint: str | None = None) -> PublishResult:
    """Write the cell (an epochs.job.EpochCell that has an image) as its epoch's preview, and the sidecar."""
    from ..previews.job import write_png_no_clobber

    entry = cell.entry
    if cell.image is None:
        raise InvalidParameter(f"the cell {entry.label} at strength {format_weight(cell.strength)} was not made "
                               f"(interrupted or failed), nothing to publish")
    if cell.strength == 0:
        raise InvalidParameter("strength 0 is the base model without the LoRA; publish a strength above 0")
    info = entry.info
    result = PublishResult(lora_file=entry.path, epoch_label=entry.label, strength=cell.strength)
    target = preview_target(entry.path, preview_name)
    result.preview = target
    result.preview_written = write_png_no_clobber(cell.image, target, cell.infotext, overwrite=force)
    result.notes.append(f"preview {target.name}: " + ("written" if result.preview_written
                                                      else "kept (it exists; force replaces it)"))
    on = f" on {Path(checkpoint).stem}" if checkpoint else ""
    steps = f", {entry.steps} steps" if entry.steps is not None else ""
    values = {
        "description": f"{series.name}: {entry.label.split(' (')[0]}{steps}, chosen at strength "
                       f"{format_weight(cell.strength)}{on} (CreationMix epoch grid)",
        "sd version": SD_VERSION,
        "activation text": activation_text(info, sample_prompt),
        "preferred weight": float(cell.strength),
    }
    result.sidecar, result.written, result.kept = write_user_metadata(entry.path, values, force=force)
    for key, value in result.kept.items():
        result.notes.append(f"{result.sidecar.name}: kept your {key!r} = {value!r} (force replaces it)")
    if result.written:
        result.notes.append(f"{result.sidecar.name}: set {', '.join(result.written)}")
    return result
