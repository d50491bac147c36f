"""Every infotext key we know, in one table: what it sets in GenerationParams and how it is written back, or
that it only describes the source, or that we do not apply it.

Three kinds:
- APPLIED: parsed into GenerationParams fields, used by the engine, written back (unless `write` is None:
  keys A1111 1.10 reads but no longer writes, e.g. `First pass size`, `Batch size`).
- SOURCE: describes the files/program that made the image (`Model hash`, `Lora hashes`, `Version`...). Read into
  the parse result's `meta`, never applied; on output the engine recomputes them for what it actually used.
- IGNORED: a key we know and do not apply (an extension's, a feature we lack). Never written back; named in
  the warning when a recipe is loaded. Keys not in the table are ignored the same way.

Adding a key is one row: `applied("Eta", "eta", to_float, fmt=format_number, when=lambda p: p.eta is not None)`
(read: raw value -> field value; when: written only if true; fmt: field value -> text). Row order is the
writing order (A1111's `create_infotext` order); SOURCE rows mark where the engine's meta values go.
"""
from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .errors import InfotextError
from .params import SAMPLERS_USING_ENSD, TIMESTEP_SAMPLERS, resolve_schedule
from .sampler_options import OPTION_KEYS, applied_options

APPLIED, SOURCE, IGNORED = "applied", "source", "ignored"

RE_IMAGESIZE = re.compile(r"^(\d+)x(\d+)$")

Reader = Callable[[str, str], dict[str, Any]]  # (key, raw value) -> GenerationParams fields
Writer = Callable[[Any], "str | None"]  # params -> value to write, None: left out


@dataclass(frozen=True)
class InfotextKey:
    name: str
    kind: str
    read: Reader | None = None
    write: Writer | None = None
    why: str = ""  # IGNORED: what it is / what applying it would need (shown by PNG Info)


# -- value converters (raise InfotextError naming the key and the value) ----------------------------------------
def format_number(value: float) -> str:
    """`7` for 7.0 (as A1111's sliders give it), else the shortest repr that reads back exactly."""
    value = float(value)
    if value.is_integer():
        return str(int(value))
    return repr(value)


def to_int(key: str, value: str) -> int:
    try:
        return int(value.strip())
    except ValueError:
        pass
    try:
        f = float(value)
    except ValueError:
        f = math.nan
    if math.isfinite(f) and f.is_integer():
        return int(f)
    raise InfotextError(f"{key}: {value!r} is not a whole number")


def to_float(key: str, value: str) -> float:
    try:
        f = float(value.strip())
    except ValueError:
        raise InfotextError(f"{key}: {value!r} is not a number") from None
    if not math.isfinite(f):
        raise InfotextError(f"{key}: {value!r} is not a finite number")
    return f


def to_text(key: str, value: str) -> str:
    return value.strip()


def to_raw(key: str, value: str) -> str:
    return value


def to_size(key: str, value: str) -> tuple[int, int]:
    m = RE_IMAGESIZE.match(value.strip())
    if not m:
        raise InfotextError(f"{key}: {value!r} is not a size like 512x768")
    return int(m.group(1)), int(m.group(2))


def to_clip_skip(key: str, value: str) -> int:
    try:
        return to_int(key, value)
    except InfotextError:
        # A1111 1.10 casts the setting with int() and fails on the paste; fractional values come from the
        # "clip skip lerp" extension, which interpolates between layers.
        raise InfotextError(f"{key}: {value!r} is not a whole number (a fractional clip skip is an extension's "
                            f"feature; A1111 1.10 itself cannot paste it either)") from None


# -- row constructors ------------------------------------------------------------------------------------------
def applied(name: str, field: str, read: Callable[[str, str], Any], *, fmt: Callable[[Any], str] = str,
            when: Callable[[Any], bool] | None = None, write: bool = True) -> InfotextKey:
    """A key that sets one GenerationParams field, written as `fmt(value)` when `when(params)` holds."""
    def writer(p) -> str | None:
        if when is not None and not when(p):
            return None
        return fmt(getattr(p, field))
    return InfotextKey(name, APPLIED, lambda k, v: {field: read(k, v)}, writer if write else None)


def source(name: str) -> InfotextKey:
    return InfotextKey(name, SOURCE)


def ignored(name: str, why: str) -> InfotextKey:
    return InfotextKey(name, IGNORED, why=why)


def _size_fields(wf: str, hf: str) -> Reader:
    def read(key: str, value: str) -> dict[str, Any]:
        w, h = to_size(key, value)
        return {wf: w, hf: h}
    return read


def _hires(p) -> bool:
    return p.enable_hires


def _hires_resized(p) -> bool:
    return p.enable_hires and bool(p.hires_resize_x or p.hires_resize_y)


def to_bool(key: str, value: str) -> bool:
    v = value.strip().lower()
    if v in ("true", "false"):
        return v == "true"
    raise InfotextError(f"{key}: {value!r} is not True or False")


def format_option(value) -> str:
    return str(value) if isinstance(value, bool) else format_number(value)


def uses_ensd(p) -> bool:
    """A1111 writes ENSD only for samplers it changes (uses_ensd). It looks at the first-pass sampler only; a
    hires sampler that draws ancestral noise is changed by ENSD too, so we write it then as well."""
    if not p.eta_noise_seed_delta:
        return False
    samplers = {p.sampler} | ({p.hires_sampler or p.sampler} if p.enable_hires else set())
    return bool(samplers & SAMPLERS_USING_ENSD)


def _hires_schedule(p) -> str | None:
    """A1111 writes the hires pass's schedule type when it differs from the first pass's (its "use same
    scheduler" resolves per sampler); timestep samplers (DDIM...) run on the model's timesteps: none."""
    if not p.enable_hires:
        return None
    sampler = p.hires_sampler or p.sampler
    schedule = resolve_schedule(sampler, p.hires_schedule or p.schedule)
    if schedule == p.sampler_schedule or sampler in TIMESTEP_SAMPLERS:
        return None
    return schedule


def _option(field: str, key: str, default) -> InfotextKey:
    """A sampler option (sampler_options.OPTION_KEYS): written only when it changed what ran."""
    read = to_bool if isinstance(default, bool) else to_float

    def write(p) -> str | None:
        opts = applied_options(p)
        return format_option(opts[field]) if field in opts else None
    return InfotextKey(key, APPLIED, lambda k, v: {field: read(k, v)}, write)


UNKNOWN_KEY = "unknown key"

KEYS: tuple[InfotextKey, ...] = (
    applied("Steps", "steps", to_int),
    applied("Sampler", "sampler", to_text),
    InfotextKey("Schedule type", APPLIED, lambda k, v: {"schedule": to_text(k, v)}, lambda p: p.sampler_schedule),
    applied("CFG scale", "cfg_scale", to_float, fmt=format_number),
    applied("Seed", "seed", to_int),
    InfotextKey("Size", APPLIED, _size_fields("width", "height"), lambda p: f"{p.width}x{p.height}"),
    source("Model hash"),
    source("Model"),
    source("VAE hash"),
    source("VAE"),
    applied("Variation seed", "subseed", to_int, when=lambda p: p.uses_variation),
    applied("Variation seed strength", "subseed_strength", to_float, fmt=format_number,
            when=lambda p: p.uses_variation),
    InfotextKey("Seed resize from", APPLIED, _size_fields("seed_resize_from_w", "seed_resize_from_h"),
                lambda p: f"{p.seed_resize_from_w}x{p.seed_resize_from_h}" if p.uses_seed_resize else None),
    applied("Denoising strength", "denoising_strength", to_float, fmt=format_number, when=_hires),
    applied("Clip skip", "clip_skip", to_clip_skip, when=lambda p: p.clip_skip > 1),
    applied("ENSD", "eta_noise_seed_delta", to_int, when=uses_ensd),
    applied("RNG", "rng", to_text, when=lambda p: p.rng != "GPU"),
    InfotextKey("Hires resize", APPLIED, _size_fields("hires_resize_x", "hires_resize_y"),
                lambda p: f"{p.hires_resize_x}x{p.hires_resize_y}" if _hires_resized(p) else None),
    applied("Hires upscale", "hires_scale", to_float, fmt=format_number,
            when=lambda p: p.enable_hires and not _hires_resized(p)),
    applied("Hires steps", "hires_steps", to_int, when=lambda p: p.enable_hires and p.hires_steps > 0),
    applied("Hires upscaler", "hires_upscaler", to_text, when=_hires),
    applied("Hires sampler", "hires_sampler", to_text,
            when=lambda p: p.enable_hires and p.hires_sampler not in (None, p.sampler)),
    InfotextKey("Hires schedule type", APPLIED, lambda k, v: {"hires_schedule": to_text(k, v)}, _hires_schedule),
    applied("Hires prompt", "hires_prompt", to_raw,
            when=lambda p: p.enable_hires and p.hires_prompt not in ("", p.prompt)),
    applied("Hires negative prompt", "hires_negative_prompt", to_raw,
            when=lambda p: p.enable_hires and p.hires_negative_prompt not in ("", p.negative_prompt)),
    source("Lora hashes"),
    source("TI hashes"),
    applied("Emphasis", "emphasis", to_text, when=lambda p: p.emphasis != "Original"),
    applied("Prompt syntax", "prompt_syntax", to_text, when=lambda p: p.prompt_syntax != "A1111"),
    *(_option(field, key, default) for field, (key, default) in OPTION_KEYS.items()),
    # Read only: A1111 1.10 pastes these and writes the modern form instead.
    InfotextKey("First pass size", APPLIED, lambda k, v: {"_first_pass": to_size(k, v)}),
    applied("Batch size", "batch_size", to_int, write=False),
    # Civitai's keys (A1111 writes a dict value as bare JSON); the engine writes `Hashes` for civitai to link
    # the checkpoint, VAE, LoRAs and embeddings.
    source("Hashes"),
    source("Civitai resources"),
    source("Civitai metadata"),
    source("Created Date"),
    source("Batch pos"),
    source("Template"),
    source("Negative Template"),
    source("Used embeddings"),
    source("Version"),
    # Known keys we do not apply (yet).
    ignored("Hypernet", "hypernetworks are not supported"),
    ignored("Hypernet strength", "hypernetworks are not supported"),
    ignored("Hypernet hash", "hypernetworks are not supported"),
    ignored("Face restoration", "face restoration is not supported"),
    ignored("Mask blur", "img2img/inpainting is not supported"),
    ignored("Conditional mask weight", "img2img/inpainting is not supported"),
    ignored("Tiling", "tiling is not supported"),
    ignored("Clip skip lerp after norm", "fractional clip skip extension"),
)

# Families of extension keys: prefix -> why.
IGNORED_PREFIXES: tuple[tuple[str, str], ...] = (
    ("ADetailer ", "ADetailer extension"),
    ("ControlNet", "ControlNet extension"),
    ("AddNet ", "Additional Networks extension (put LoRAs in the prompt as <lora:name:weight>)"),
    ("RP ", "Regional Prompter extension"),
    ("SD upscale ", "SD upscale script (img2img)"),
)

BY_NAME: dict[str, InfotextKey] = {k.name: k for k in KEYS}
# Hires keys set fields A1111 also sets, but only `Denoising strength` turns hires fix on.
HIRES_KEYS = ("Hires resize", "Hires upscale", "Hires steps", "Hires upscaler", "Hires sampler",
              "Hires schedule type", "Hires prompt", "Hires negative prompt")


def lookup(name: str) -> InfotextKey:
    """The row for `name`; a key not in the table is an IGNORED row saying so."""
    row = BY_NAME.get(name)
    if row is not None:
        return row
    for prefix, why in IGNORED_PREFIXES:
        if name.startswith(prefix):
            return ignored(name, why)
    return ignored(name, UNKNOWN_KEY)


def names(kind: str) -> frozenset[str]:
    return frozenset(k.name for k in KEYS if k.kind == kind)


__all__ = ["InfotextKey", "KEYS", "BY_NAME", "HIRES_KEYS", "APPLIED", "SOURCE", "IGNORED", "UNKNOWN_KEY", "lookup",
           "names", "applied", "source", "ignored", "format_number", "to_int", "to_float", "to_text", "to_size"]
