"""A1111 infotext: the text block under every image ("parameters" in a PNG), written and read here.

The writer follows A1111 >= 1.9 (`create_infotext`): key order, which keys are left out at their defaults,
the split sampler/schedule form and A1111's quoting. The reader follows `parse_generation_parameters`
(same regex, same line rules) so anything A1111 can paste, we can paste, plus two tolerances: the old
combined sampler names (`DPM++ 2M Karras`) and trailing `Key: value` lines after the parameter line (old
A1111 "Used embeddings: ..." lines, as in the documented CreationMix recipe).

Keys we do not interpret go to `GenerationParams.extra` (order kept) so that writer(parser(x)) keeps them;
keys describing the loaded files (model/VAE hashes, LoRA/TI hashes, version) go to `meta`, which the writer
takes back in and puts at A1111's positions.
"""
from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import NamedTuple

from .errors import InfotextError, InvalidParameter
from .params import SAMPLERS_USING_ENSD, TIMESTEP_SAMPLERS, GenerationParams, resolve_schedule
from .sampler_options import OPTION_KEYS, applied_options

# Verbatim from A1111 modules/infotext_utils.py.
RE_PARAM = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')
RE_IMAGESIZE = re.compile(r"^(\d+)x(\d+)$")
# A whole line of `Key: value` pairs and nothing else (for trailing lines after the parameter line).
_RE_PAIRS_LINE = re.compile(r'^(?:\s*\w[\w \-/]+:\s*(?:"(?:\\.|[^\\"])+"|[^,]*)(?:,|$))+$')

NEGATIVE_PREFIX = "Negative prompt:"

# Keys about the files used (not parameters of a generation); they live in `meta`.
META_BEFORE_DENOISE = ("Model hash", "Model", "VAE hash", "VAE")
META_AFTER_HIRES = ("Lora hashes", "TI hashes")
# "Used embeddings" is old A1111's trailing line; we write it inline, just before Version.
META_LAST = ("Used embeddings", "Version")
META_KEYS = frozenset(META_BEFORE_DENOISE + META_AFTER_HIRES + META_LAST)

# Keys this module maps to GenerationParams fields.
PARAM_KEYS = frozenset({
    "Steps", "Sampler", "Schedule type", "CFG scale", "Seed", "Size", "Denoising strength", "Clip skip", "RNG",
    "Hires upscale", "Hires resize", "Hires steps", "Hires upscaler", "Hires sampler", "Hires prompt",
    "Hires negative prompt", "Emphasis", "Prompt syntax", "Hires schedule type",
    "Variation seed", "Variation seed strength", "Seed resize from", "ENSD",
}) | frozenset(key for key, _ in OPTION_KEYS.values())
_HIRES_MARKERS = ("Hires upscale", "Hires resize", "Hires steps", "Hires upscaler")


class ParsedInfotext(NamedTuple):
    params: GenerationParams
    meta: dict[str, str]


# -- writing --------------------------------------------------------------------------------------------------
def quote(value: str) -> str:
    """A1111's quote(): JSON-quote a value the parameter regex would otherwise cut or mangle.

    A1111 quotes on `,`, `:` and newline. We also quote values containing `"` (an unquoted `"x"` would be
    unquoted on reading), empty values and values with surrounding whitespace (the regex and A1111's
    `strip()` would eat it). A1111 reads all of these back correctly."""
    text = str(value)
    if (any(c in text for c in ',:\n"') or text == "" or text != text.strip()):
        return json.dumps(text, ensure_ascii=False)
    return text


def unquote(text: str) -> str:
    """A1111's unquote(): JSON-decode a quoted value; anything that is not valid JSON stays as it is."""
    if len(text) < 2 or text[0] != '"' or text[-1] != '"':
        return text
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return value if isinstance(value, str) else text


def format_number(value: float) -> str:
    """`7` for 7.0 (as A1111's sliders give it), else the shortest repr that reads back exactly."""
    value = float(value)
    if value.is_integer():
        return str(int(value))
    return repr(value)


def format_infotext(params: GenerationParams, meta: Mapping[str, str] | None = None) -> str:
    """The A1111 infotext for `params`; `meta` adds file keys (Model hash, Model, VAE, Lora hashes, ...).

    Meta keys that are parameter keys are ignored (the params win); other meta keys not in META_KEYS are
    written after the extra keys (before Version) and so read back as extra keys."""
    meta = {k: str(v) for k, v in (meta or {}).items() if v is not None and str(v) != "" and k not in PARAM_KEYS}
    p = params
    pairs: list[tuple[str, str]] = [
        ("Steps", str(p.steps)),
        ("Sampler", p.sampler),
        ("Schedule type", p.sampler_schedule),
        ("CFG scale", format_number(p.cfg_scale)),
        ("Seed", str(p.seed)),
        ("Size", f"{p.width}x{p.height}"),
    ]
    pairs += [(k, meta[k]) for k in META_BEFORE_DENOISE if k in meta]
    pairs += _seed_extra_pairs(p)
    if p.enable_hires:
        pairs.append(("Denoising strength", format_number(p.denoising_strength)))
    if p.clip_skip > 1:
        pairs.append(("Clip skip", str(p.clip_skip)))
    if _uses_ensd(p):
        pairs.append(("ENSD", str(p.eta_noise_seed_delta)))
    if p.rng != "GPU":
        pairs.append(("RNG", p.rng))
    if p.enable_hires:
        if p.hires_resize_x or p.hires_resize_y:
            pairs.append(("Hires resize", f"{p.hires_resize_x}x{p.hires_resize_y}"))
        else:
            pairs.append(("Hires upscale", format_number(p.hires_scale)))
        if p.hires_steps:
            pairs.append(("Hires steps", str(p.hires_steps)))
        pairs.append(("Hires upscaler", p.hires_upscaler))
        if p.hires_sampler is not None and p.hires_sampler != p.sampler:
            pairs.append(("Hires sampler", p.hires_sampler))
        hires_sampler = p.hires_sampler or p.sampler
        hires_schedule = resolve_schedule(hires_sampler, p.hires_schedule or p.schedule)
        # Timestep samplers (DDIM...) run on the model's timesteps: A1111 writes no schedule for their pass.
        if hires_schedule != p.sampler_schedule and hires_sampler not in TIMESTEP_SAMPLERS:
            pairs.append(("Hires schedule type", hires_schedule))
        if p.hires_prompt and p.hires_prompt != p.prompt:
            pairs.append(("Hires prompt", p.hires_prompt))
        if p.hires_negative_prompt and p.hires_negative_prompt != p.negative_prompt:
            pairs.append(("Hires negative prompt", p.hires_negative_prompt))
    pairs += [(k, meta[k]) for k in META_AFTER_HIRES if k in meta]
    if p.emphasis != "Original":
        pairs.append(("Emphasis", p.emphasis))
    if p.prompt_syntax != "A1111":
        pairs.append(("Prompt syntax", p.prompt_syntax))
    applied = applied_options(p)  # sampler options: written only when they changed what ran
    pairs += [(key, format_option(applied[name])) for name, (key, _) in OPTION_KEYS.items() if name in applied]
    written = {k for k, _ in pairs} | PARAM_KEYS | META_KEYS
    for k, v in p.extra:
        if k not in written:
            pairs.append((k, v))
            written.add(k)
    pairs += [(k, v) for k, v in meta.items() if k not in written]
    pairs += [(k, meta[k]) for k in META_LAST if k in meta]

    params_line = ", ".join(f"{k}: {quote(v)}" for k, v in pairs)
    negative = f"\n{NEGATIVE_PREFIX} {p.negative_prompt}" if p.negative_prompt else ""
    return f"{p.prompt}{negative}\n{params_line}".strip()


def format_option(value) -> str:
    return str(value) if isinstance(value, bool) else format_number(value)


def _seed_extra_pairs(p: GenerationParams) -> list[tuple[str, str]]:
    pairs = []
    if p.uses_variation:
        pairs += [("Variation seed", str(p.subseed)), ("Variation seed strength", format_number(p.subseed_strength))]
    if p.uses_seed_resize:
        pairs.append(("Seed resize from", f"{p.seed_resize_from_w}x{p.seed_resize_from_h}"))
    return pairs


def _uses_ensd(p: GenerationParams) -> bool:
    """A1111 writes ENSD only for samplers it changes (uses_ensd). It looks at the first-pass sampler only; a
    hires sampler that draws ancestral noise is changed by ENSD too, so we write it then as well."""
    if not p.eta_noise_seed_delta:
        return False
    samplers = {p.sampler} | ({p.hires_sampler or p.sampler} if p.enable_hires else set())
    return bool(samplers & SAMPLERS_USING_ENSD)


# -- reading --------------------------------------------------------------------------------------------------
def _split_lines(text: str) -> tuple[list[str], str, list[str]]:
    """(prompt+negative lines, parameter line, trailing `Key: value` lines).

    A1111 takes the last line as the parameter line when it has >= 3 pairs. We also step over trailing lines
    that consist only of `Key: value` pairs (fewer than 3) to find it, e.g. `Used embeddings: EasyNegative`."""
    lines = text.strip().split("\n")
    for i in range(len(lines) - 1, -1, -1):
        line = lines[i]
        if len(RE_PARAM.findall(line)) >= 3:
            return lines[:i], line, lines[i + 1:]
        if not _RE_PAIRS_LINE.match(line.strip()):
            break
    raise InfotextError("no generation parameters found")


def _prompts(lines: list[str]) -> tuple[str, str]:
    # A1111's loop, unchanged: lines stripped, the negative starts at the `Negative prompt:` line.
    prompt, negative, done_with_prompt = "", "", False
    for line in lines:
        line = line.strip()
        if line.startswith(NEGATIVE_PREFIX):
            done_with_prompt = True
            line = line[len(NEGATIVE_PREFIX):].strip()
        if done_with_prompt:
            negative += ("" if negative == "" else "\n") + line
        else:
            prompt += ("" if prompt == "" else "\n") + line
    return prompt, negative


def _pairs(line: str) -> list[tuple[str, str]]:
    return [(k, unquote(v)) for k, v in RE_PARAM.findall(line)]


def _int(key: str, value: str) -> int:
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


def _float(key: str, value: str) -> float:
    try:
        f = float(value.strip())
    except ValueError:
        raise InfotextError(f"{key}: {value!r} is not a number") from None
    if not math.isfinite(f):
        raise InfotextError(f"{key}: {value!r} is not a finite number")
    return f


def _bool(key: str, value: str) -> bool:
    v = value.strip().lower()
    if v in ("true", "false"):
        return v == "true"
    raise InfotextError(f"{key}: {value!r} is not True or False")


def _size(key: str, value: str) -> tuple[int, int]:
    m = RE_IMAGESIZE.match(value.strip())
    if not m:
        raise InfotextError(f"{key}: {value!r} is not a size like 512x768")
    return int(m.group(1)), int(m.group(2))


# infotext key -> (GenerationParams field, converter); Sampler/Schedule type/Size/Hires resize are done apart
_CONVERT = {
    "Steps": ("steps", _int),
    "CFG scale": ("cfg_scale", _float),
    "Seed": ("seed", _int),
    "Denoising strength": ("denoising_strength", _float),
    "Clip skip": ("clip_skip", _int),
    "RNG": ("rng", lambda k, v: v.strip()),
    "Variation seed": ("subseed", _int),
    "Variation seed strength": ("subseed_strength", _float),
    "ENSD": ("eta_noise_seed_delta", _int),
    "Hires upscale": ("hires_scale", _float),
    "Hires steps": ("hires_steps", _int),
    "Hires upscaler": ("hires_upscaler", lambda k, v: v.strip()),
    "Hires sampler": ("hires_sampler", lambda k, v: v.strip()),
    "Hires prompt": ("hires_prompt", lambda k, v: v),
    "Hires negative prompt": ("hires_negative_prompt", lambda k, v: v),
    "Emphasis": ("emphasis", lambda k, v: v.strip()),
    "Prompt syntax": ("prompt_syntax", lambda k, v: v.strip()),
    "Hires schedule type": ("hires_schedule", lambda k, v: v.strip()),
}
# Sampler option keys (sampler_options.OPTION_KEYS): numbers, or True/False for the switches.
_CONVERT.update({key: (name, _bool if isinstance(default, bool) else _float)
                 for name, (key, default) in OPTION_KEYS.items()})


def parse_infotext(text: str) -> ParsedInfotext:
    """Read an A1111 infotext into GenerationParams (missing keys: A1111's defaults) and meta.

    Raises InfotextError naming the key and value when a value is unknown or out of range, and
    InfotextError("no generation parameters found") when there is no parameter line."""
    if not isinstance(text, str) or not text.strip():
        raise InfotextError("no generation parameters found")
    head, params_line, trailing = _split_lines(text)
    prompt, negative = _prompts(head)

    meta: dict[str, str] = {}
    extra: dict[str, str] = {}
    raw: dict[str, str] = {}
    for key, value in _pairs(params_line):
        if key in META_KEYS:
            meta[key] = value
        elif key in PARAM_KEYS:
            raw[key] = value
        else:
            extra[key] = value
    for line in trailing:
        for key, value in _pairs(line):
            meta[key] = value
    if not raw:  # three `a: b` pairs in a line of prose are not parameters
        raise InfotextError("no generation parameters found")

    # One group of fields per infotext key, so an invalid value can be blamed on the key it came from.
    groups: dict[str, dict[str, object]] = {}
    if "Sampler" in raw or "Schedule type" in raw:
        groups["Sampler"] = {"sampler": raw.get("Sampler", "DPM++ 2M").strip(),
                             "schedule": raw.get("Schedule type", "Automatic").strip()}
    if "Size" in raw:
        w, h = _size("Size", raw["Size"])
        groups["Size"] = {"width": w, "height": h}
    if "Hires resize" in raw:
        rx, ry = _size("Hires resize", raw["Hires resize"])
        groups["Hires resize"] = {"hires_resize_x": rx, "hires_resize_y": ry}
    if "Seed resize from" in raw:
        rw, rh = _size("Seed resize from", raw["Seed resize from"])
        groups["Seed resize from"] = {"seed_resize_from_w": rw, "seed_resize_from_h": rh}
    for key, (name, conv) in _CONVERT.items():
        if key in raw:
            groups[key] = {name: conv(key, raw[key])}
    # A1111 infotext_versions.backcompat: what old versions did implicitly.
    if "Downcast alphas_cumprod" not in raw and _version_before(meta.get("Version"), "v1.7.0-225"):
        groups["Version"] = {"downcast_alphas_cumprod": True}
    if ("Pad conds v0" not in raw and _version_before(meta.get("Version"), "1.6.0")
            and raw.get("Sampler", "").strip() in ("DDIM", "PLMS")):
        groups.setdefault("Version", {})["pad_conds_v0"] = True

    fields: dict[str, object] = {"prompt": prompt, "negative_prompt": negative,
                                 "enable_hires": any(k in raw for k in _HIRES_MARKERS),
                                 "extra": tuple(extra.items())}
    for group in groups.values():
        fields.update(group)
    try:
        params = GenerationParams(**fields)
    except InvalidParameter as e:
        raise InfotextError(_blame(e, groups, raw)) from e
    return ParsedInfotext(params, meta)


_RE_VERSION = re.compile(r"([^-]+-[^-]+)-.*")


def _version_before(text: str | None, than: str) -> bool:
    """A1111 parse_version: an infotext `Version` older than `than` (unparseable or missing: False)."""
    if not text:
        return False
    from packaging import version
    m = _RE_VERSION.match(text)
    try:
        return version.parse(m.group(1) if m else text) < version.parse(than)
    except version.InvalidVersion:
        return False


def _before_v170_tsnr(text: str | None) -> bool:
    """Images made before v1.7.0-225 used fp16 alphas_cumprod, so their infotexts mean it."""
    return _version_before(text, "v1.7.0-225")


def _blame(error: InvalidParameter, groups: Mapping[str, Mapping[str, object]], raw: Mapping[str, str]) -> str:
    """`Key: 'value': why` for the first key whose value is invalid on its own; else the combination."""
    for key, group in groups.items():
        try:
            GenerationParams(**group)
        except InvalidParameter as own:
            keys = [k for k in ("Sampler", "Schedule type") if k in raw] if key == "Sampler" else [key]
            shown, value = "/".join(keys), ", ".join(repr(raw[k]) for k in keys)
            return f"{shown}: {value}: {own}"
    involved = [k for k in groups if k in ("Size", "Hires upscale", "Hires resize")]
    shown = ", ".join(f"{k}: {raw[k]!r}" for k in involved)
    return f"{shown}: {error}" if shown else str(error)
