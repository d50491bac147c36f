"""Preset cards: TOML files in presets/, each a documented recipe (or a user's saved settings).

A card is strict (pydantic, extra="forbid"): a typo in a key is an error naming the key, never a silently
ignored setting. `params` holds GenerationParams field names; the prompts sit at the top level.

LoRA slot: a card whose prompt contains `<lora:{lora}:{weight}>` works for any LoRA; `fill_lora(name, weight)`
puts one in (the preview card uses this). `lora_slot` names the LoRA a card exercises; on a slot card it is
the default fill. Checkpoint: the card names the file and sha256 its images were made with;
`verify_checkpoint` turns a mismatch into the warning the UI shows.
"""
from __future__ import annotations

import math
import os
import re
import tomllib
import unicodedata
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, PrivateAttr, ValidationError, field_validator, model_validator

from .errors import InvalidParameter, PresetError
from .fsio import write_new
from .params import GenerationParams

CREATIONMIX_V1_FILE = "creationmixV12DStyle_v1.safetensors"
CREATIONMIX_V1_SHA256 = "1065c5d2e06464103fe1c85e2ac6fb5aa7d216d4ac1b8811cf91775e29ae318e"
NOT_CREATIONMIX_WARNING = "this is not CreationMix V1 — results will differ from the documented images"

LORA_SLOT = "<lora:{lora}:{weight}>"
_PLACEHOLDERS = ("{lora}", "{weight}")
_ID_RE = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
_SHA_RE = re.compile(r"^[0-9a-f]{64}$")
_PROMPT_FIELDS = ("prompt", "negative_prompt")
_PARAM_DEFAULTS = GenerationParams().to_dict()


def _check_lora_name(name: str) -> str:
    if not isinstance(name, str) or not name.strip() or any(c in name for c in "<>:\n\r{}"):
        raise ValueError(f"LoRA name must be a non-empty name without < > : {{ }} or newlines, got {name!r}")
    return name.strip()


def _check_weight(weight: float) -> float:
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight):
        raise ValueError(f"LoRA weight must be a finite number, got {weight!r}")
    return float(weight)


def format_weight(weight: float) -> str:
    """`1` for 1.0, `1.2` for 1.2: what A1111's extra-networks UI inserts."""
    w = float(weight)
    return str(int(w)) if w.is_integer() else repr(w)


class CheckpointRef(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    file: str
    sha256: str | None = None

    @field_validator("file")
    @classmethod
    def _plain_file_name(cls, v: str) -> str:
        if not v.strip() or "/" in v or "\\" in v or v in (".", ".."):
            raise ValueError(f"checkpoint file must be a plain file name, got {v!r}")
        return v

    @field_validator("sha256")
    @classmethod
    def _hex_hash(cls, v: str | None) -> str | None:
        if v is None:
            return v
        if not _SHA_RE.match(v.lower()):
            raise ValueError(f"sha256 must be 64 hex digits, got {v!r}")
        return v.lower()


class LoraSlot(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    weight: float = 1.0

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return _check_lora_name(v)

    @field_validator("weight", mode="before")
    @classmethod
    def _weight(cls, v: Any) -> float:
        return _check_weight(v)


def _check_param_value(key: str, value: Any) -> None:
    """TOML gives typed values; refuse the wrong type here so GenerationParams never sees e.g. a string CFG."""
    default = _PARAM_DEFAULTS[key]
    if key == "extra":
        ok = isinstance(value, list) and all(
            isinstance(kv, list) and len(kv) == 2 and all(isinstance(x, str) for x in kv) for kv in value)
        want = "a list of [key, value] string pairs"
    elif isinstance(default, bool):
        ok, want = isinstance(value, bool), "true or false"
    elif isinstance(default, int):
        ok, want = isinstance(value, int) and not isinstance(value, bool), "a whole number"
    elif isinstance(default, float):
        ok, want = isinstance(value, (int, float)) and not isinstance(value, bool), "a number"
    else:  # str, or None meaning "a name"
        ok, want = isinstance(value, str), "a string"
    if not ok:
        raise ValueError(f"params.{key} must be {want}, got {value!r}")


class Preset(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    title: str
    description: str = ""
    checkpoint: CheckpointRef | None = None
    prompt: str = ""
    negative_prompt: str = ""
    params: dict[str, Any] = {}
    lora_slot: LoraSlot | None = None
    example_image: str | None = None

    _source: Path | None = PrivateAttr(default=None)

    @field_validator("id")
    @classmethod
    def _id(cls, v: str) -> str:
        if not _ID_RE.match(v):
            raise ValueError(f"id must be lowercase letters, digits and single dashes, got {v!r}")
        return v

    @field_validator("title")
    @classmethod
    def _title(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("title must not be empty")
        return v

    @field_validator("params")
    @classmethod
    def _param_keys(cls, v: dict[str, Any]) -> dict[str, Any]:
        names = GenerationParams.field_names()
        for key, value in v.items():
            if key in _PROMPT_FIELDS:
                raise ValueError(f"params.{key}: put {key} at the top level of the card, not in [params]")
            if key not in names:
                valid = ", ".join(n for n in names if n not in _PROMPT_FIELDS)
                raise ValueError(f"unknown parameter params.{key} = {value!r}; valid: {valid}")
            _check_param_value(key, value)
        return v

    @field_validator("example_image")
    @classmethod
    def _example(cls, v: str | None) -> str | None:
        if v is None:
            return v
        parts = v.replace("\\", "/").split("/")
        if not v.strip() or v.startswith(("/", "\\")) or ":" in v or ".." in parts:
            raise ValueError(f"example_image must be a path inside the presets folder, got {v!r}")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> "Preset":
        for text in (self.prompt, str(self.params.get("hires_prompt", ""))):
            stray = text.replace(LORA_SLOT, "")
            if any(p in stray for p in _PLACEHOLDERS):
                raise ValueError(f"a LoRA slot must be written exactly {LORA_SLOT}")
        if self.lora_slot and not self.has_lora_slot and f"<lora:{self.lora_slot.name}:" not in self.prompt:
            raise ValueError(f"lora_slot names {self.lora_slot.name!r} but the prompt has no "
                             f"<lora:{self.lora_slot.name}:...> tag")
        try:  # the values must make a valid GenerationParams (checked with a stand-in LoRA on slot cards)
            self._build("lora", 1.0) if self.has_lora_slot else self._build(None, None)
        except InvalidParameter as e:
            raise ValueError(f"params: {e}") from None
        return self

    # -- use ---------------------------------------------------------------------------------------------------
    @property
    def has_lora_slot(self) -> bool:
        return LORA_SLOT in self.prompt or LORA_SLOT in str(self.params.get("hires_prompt", ""))

    @property
    def source(self) -> Path | None:
        """The file the card was loaded from (None for cards built in code)."""
        return self._source

    @property
    def example_path(self) -> Path | None:
        if self.example_image is None or self._source is None:
            return None
        return self._source.parent / self.example_image

    def to_params(self) -> GenerationParams:
        """The card's GenerationParams. A slot card is filled with its lora_slot (PresetError if it has none)."""
        if self.has_lora_slot:
            if self.lora_slot is None:
                raise PresetError(f"preset {self.id!r} has a LoRA slot: choose a LoRA (fill_lora)")
            return self.fill_lora(self.lora_slot.name, self.lora_slot.weight)
        return self._build(None, None)

    def fill_lora(self, name: str, weight: float = 1.0) -> GenerationParams:
        """The card's params with `<lora:{lora}:{weight}>` replaced by `<lora:NAME:WEIGHT>`."""
        if not self.has_lora_slot:
            raise PresetError(f"preset {self.id!r} has no LoRA slot ({LORA_SLOT}) to fill")
        try:
            name, weight = _check_lora_name(name), _check_weight(weight)
        except ValueError as e:
            raise PresetError(str(e)) from None
        return self._build(name, weight)

    def _build(self, lora: str | None, weight: float | None) -> GenerationParams:
        data = dict(self.params)
        data["prompt"], data["negative_prompt"] = self.prompt, self.negative_prompt
        if lora is not None:
            tag = f"<lora:{lora}:{format_weight(weight)}>"
            for key in ("prompt", "hires_prompt"):
                if key in data:
                    data[key] = data[key].replace(LORA_SLOT, tag)
        return GenerationParams.from_dict(data)


# -- loading ----------------------------------------------------------------------------------------------------
def _describe(error: ValidationError) -> str:
    parts = []
    for err in error.errors():
        loc = ".".join(str(x) for x in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = f"unknown key {loc!r} = {err['input']!r}"
        elif err["type"] == "missing":
            msg = f"missing key {loc!r}"
        elif loc and loc not in msg:
            msg = f"{loc}: {msg}"
        parts.append(msg)
    return "; ".join(parts)


def load_preset(path: str | os.PathLike) -> Preset:
    """One card; PresetError naming the file and what is wrong with it."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except tomllib.TOMLDecodeError as e:
        raise PresetError(f"{path.name}: malformed TOML: {e}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise PresetError(f"{path.name}: cannot read: {e}") from None
    try:
        preset = Preset.model_validate(data)
    except ValidationError as e:
        raise PresetError(f"{path.name}: {_describe(e)}") from None
    if preset.id != path.stem:
        raise PresetError(f"{path.name}: id {preset.id!r} must match the file name ({path.stem!r})")
    preset._source = path
    return preset


def load_presets(folder: str | os.PathLike) -> tuple[list[Preset], list[str]]:
    """All cards in `folder` (sorted by file name) and one error message per card that failed to load."""
    folder = Path(folder)
    if not folder.is_dir():
        return [], [f"{folder}: presets folder not found"]
    presets, errors = [], []
    for path in sorted(folder.glob("*.toml")):
        try:
            presets.append(load_preset(path))
        except PresetError as e:
            errors.append(str(e))
    return presets, errors


def _shipped_presets_dir() -> Path:
    """The cards shipped with the app. The repository's presets/ folder is the one source: a wheel carries it
    as creationmix/_presets (pyproject.toml maps it there), a checkout or editable install reads it in place."""
    here = Path(__file__).resolve().parent
    packaged = here / "_presets"
    return packaged if packaged.is_dir() else here.parent / "presets"


PRESETS_DIR = _shipped_presets_dir()


def find_preset(folder: str | os.PathLike, preset_id: str) -> Preset:
    """The card with this id; PresetError listing the ids there are when it is missing (or malformed)."""
    folder = Path(folder)
    if not isinstance(preset_id, str) or not _ID_RE.match(preset_id):  # ids are file names: nothing else reaches disk
        raise PresetError(f"unknown preset {preset_id!r}: ids are lowercase letters, digits and dashes")
    path = folder / f"{preset_id}.toml"
    if not path.is_file():
        ids = sorted(p.stem for p in folder.glob("*.toml")) if folder.is_dir() else []
        raise PresetError(f"unknown preset {preset_id!r}; available: {', '.join(ids) or 'none'}")
    return load_preset(path)


# -- checkpoint check -------------------------------------------------------------------------------------------
def verify_checkpoint(preset: Preset, sha256: str | None) -> str | None:
    """Warning text when a CreationMix card runs on another model (or its file is missing); None when it matches.

    `sha256` is the loaded checkpoint's hash (full, or A1111's 10-digit short hash); None: the file is missing."""
    ref = preset.checkpoint
    if ref is None or not ("creationmix" in ref.file.lower() or ref.sha256 == CREATIONMIX_V1_SHA256):
        return None
    expected = ref.sha256 or CREATIONMIX_V1_SHA256
    if sha256 is None:
        return f"{NOT_CREATIONMIX_WARNING} ({ref.file} not found; expected sha256 {expected})"
    actual = sha256.strip().lower()
    if actual == expected or (len(actual) >= 10 and expected.startswith(actual)):
        return None
    return f"{NOT_CREATIONMIX_WARNING} (expected sha256 {expected}, got {actual})"


# -- saving -------------------------------------------------------------------------------------------------------
def preset_id(title: str) -> str:
    """A safe id from a title: lowercase ASCII letters, digits and single dashes (accents dropped)."""
    ascii_title = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode("ascii")
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_title.lower()).strip("-")[:64].strip("-")
    return slug or "preset"


def _toml_str(s: str) -> str:
    out = ['"']
    for ch in s:
        o = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif o < 0x20 or o == 0x7F:
            out.append(f"\\u{o:04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, str):
        return _toml_str(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {v!r} to TOML")


def preset_toml(preset: Preset) -> str:
    """The card as TOML (what save_preset writes; load_preset reads it back to an equal Preset)."""
    lines = [f"{k} = {_toml_value(getattr(preset, k))}" for k in ("id", "title", "description")]
    if preset.example_image is not None:
        lines.append(f"example_image = {_toml_value(preset.example_image)}")
    lines += [f"prompt = {_toml_value(preset.prompt)}", f"negative_prompt = {_toml_value(preset.negative_prompt)}"]
    if preset.checkpoint is not None:
        lines += ["", "[checkpoint]", f"file = {_toml_value(preset.checkpoint.file)}"]
        if preset.checkpoint.sha256:
            lines.append(f"sha256 = {_toml_value(preset.checkpoint.sha256)}")
    if preset.lora_slot is not None:
        lines += ["", "[lora_slot]", f"name = {_toml_value(preset.lora_slot.name)}",
                  f"weight = {_toml_value(preset.lora_slot.weight)}"]
    lines += ["", "[params]"] + [f"{k} = {_toml_value(v)}" for k, v in preset.params.items()]
    return "\n".join(lines) + "\n"


def save_preset(folder: str | os.PathLike, params: GenerationParams, title: str, *, description: str = "",
                checkpoint: CheckpointRef | None = None) -> Path:
    """Write `params` as a new card named after `title`; returns its path.

    Never overwrites: when `<id>.toml` exists the id gets `-2`, `-3`, ... The file appears whole or not at all."""
    folder = Path(folder)
    if not title or not title.strip():
        raise PresetError("a preset needs a title")
    folder.mkdir(parents=True, exist_ok=True)
    values = {k: v for k, v in params.to_dict().items() if v is not None and k not in _PROMPT_FIELDS}
    if not values.get("extra"):
        values.pop("extra", None)
    if checkpoint is None and params.checkpoint:
        checkpoint = CheckpointRef(file=params.checkpoint)
    base = preset_id(title)
    for n in range(1, 10_000):
        pid = base if n == 1 else f"{base[:60]}-{n}"
        target = folder / f"{pid}.toml"
        if target.exists():
            continue
        try:
            preset = Preset(id=pid, title=title.strip(), description=description, checkpoint=checkpoint,
                            prompt=params.prompt, negative_prompt=params.negative_prompt, params=values)
        except ValidationError as e:
            raise PresetError(f"cannot save preset {title!r}: {_describe(e)}") from None
        if _create_new(target, preset_toml(preset)):
            return target
    raise PresetError(f"cannot save preset {title!r}: too many presets named {base!r}")


def _create_new(target: Path, text: str) -> bool:
    """Write a complete file at `target` unless it exists (False then): atomic, no clobber."""
    return write_new(target, text, what="preset")
