"""A1111 infotext: the text block under every image ("parameters" in a PNG), written and read here.

The writer follows A1111 >= 1.9 (`create_infotext`): key order, which keys are left out at their defaults,
the split sampler/schedule form and A1111's quoting. The reader follows `parse_generation_parameters` and the
txt2img paste rules of A1111 1.10 (same regex, same line rules; hires fix on only with `Denoising strength`;
`First pass size` converted by `restore_old_hires_fix_params`), plus tolerances: the old combined sampler names
(`DPM++ 2M Karras`), trailing `Key: value` lines after the parameter line (old "Used embeddings: ..." lines,
Dynamic Prompts' `Template:`) and bare JSON values (civitai's `Hashes: {...}`, `Civitai resources: [...]`).

What each key does is decided in one table, `infotext_keys.KEYS`: applied keys become GenerationParams fields,
source keys (hashes, model names, version) go to `meta`, and every other key is reported in `ignored` and is
never written back: an output infotext names only what made the picture.
"""
from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from .errors import InfotextError, InvalidParameter
from .infotext_keys import (uses_ensd, APPLIED, HIRES_KEYS, IGNORED, KEYS, SOURCE, UNKNOWN_KEY, format_number, lookup,
                            names)
from .params import GenerationParams
from .sampler_options import OPTION_KEYS, applied_options

# Verbatim from A1111 modules/infotext_utils.py.
RE_PARAM = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')
# A whole line of `Key: value` pairs and nothing else (for trailing lines after the parameter line).
_RE_PAIRS_LINE = re.compile(r'^(?:\s*\w[\w \-/]+:\s*(?:"(?:\\.|[^\\"])+"|[^,]*)(?:,|$))+$')
_RE_AFTER_JSON = re.compile(r"\s*(?:,|$)")
_JSON = json.JSONDecoder()

NEGATIVE_PREFIX = "Negative prompt:"
# Dynamic Prompts writes its templates as lines after the parameter line (free text, commas and all).
TEMPLATE_PREFIXES = ("Template: ", "Negative Template: ")

PARAM_KEYS = names(APPLIED)
META_KEYS = names(SOURCE)
# Keys our own features add to what they write (X/Y/Z grid keys) go just before these source keys.
_FEATURE_KEYS_BEFORE = "Hashes"
NOT_SUPPORTED = "not supported"
HIRES_OFF = "hires fix is off: no Denoising strength"
NOT_USED = "not used by this recipe's sampler and schedule"


@dataclass(frozen=True)
class ParsedInfotext:
    """What an infotext means here. Unpacks as `params, meta` for callers that need only those."""
    params: GenerationParams
    meta: dict[str, str]  # source keys as read: kept, never applied (the engine writes its own)
    ignored: dict[str, str] = field(default_factory=dict)  # keys not applied -> their raw values, in order
    # How the text said it (not part of equality: two texts with the same meaning parse equal).
    applied: tuple[str, ...] = field(default=(), compare=False)  # keys that set parameters
    reasons: dict[str, str] = field(default_factory=dict, compare=False)  # ignored key -> why
    notes: tuple[str, ...] = field(default=(), compare=False)  # conversions made (e.g. the old hires fix)

    def __iter__(self) -> Iterator:
        return iter((self.params, self.meta))

    @property
    def warnings(self) -> tuple[str, ...]:
        """One warning per reason, naming the keys: `ignored (not supported): ADetailer model, ENSD`."""
        by_reason: dict[str, list[str]] = {}
        for key in self.ignored:
            reason = self.reasons.get(key, "")
            reason = reason if reason in (HIRES_OFF, NOT_USED) else NOT_SUPPORTED
            by_reason.setdefault(reason, []).append(key)
        return tuple(f"ignored ({reason}): {', '.join(keys)}" for reason, keys in by_reason.items())

    def report(self) -> str:
        """Which keys will be applied, which are kept as source information, which are ignored and why."""
        lines = [f"Applied: {', '.join(self.applied) or '(none)'}"]
        if self.meta:
            lines.append(f"Source (not applied; recomputed on output): {', '.join(self.meta)}")
        for key in self.ignored:
            lines.append(f"Ignored: {key} ({self.reasons.get(key, NOT_SUPPORTED)})")
        lines += list(self.notes)
        return "\n".join(lines)


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


def _bare_json(text: str) -> bool:
    """A JSON object/list written as is, as A1111's quote() writes a dict (civitai's regex needs it bare)."""
    if text[:1] not in "{[" or "\n" in text:
        return False
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def unquote(text: str) -> str:
    """A1111's unquote(): JSON-decode a quoted value; anything that is not valid JSON stays as it is."""
    if len(text) < 2 or text[0] != '"' or text[-1] != '"':
        return text
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return value if isinstance(value, str) else text


def format_infotext(params: GenerationParams, meta: Mapping[str, str] | None = None) -> str:
    """The A1111 infotext for `params`; `meta` adds what describes the output (Model hash, Model, VAE, Lora
    hashes, Hashes, Version, ...) at A1111's positions, plus keys our own features write (X/Y/Z grid keys).

    Meta keys that are parameter keys are dropped (the params win), and so are keys the table marks as not
    applied: an output never claims what did not happen."""
    meta = {k: str(v) for k, v in (meta or {}).items() if v is not None and str(v) != "" and _writable(k)}
    features = {k: v for k, v in meta.items() if k not in _KNOWN}
    pairs: list[tuple[str, str]] = []
    for row in KEYS:
        if row.name == _FEATURE_KEYS_BEFORE:
            pairs += features.items()
        if row.kind == APPLIED and row.write is not None:
            value = row.write(params)
            if value is not None:
                pairs.append((row.name, value))
        elif row.kind == SOURCE and row.name in meta:
            pairs.append((row.name, meta[row.name]))
    p = params
    params_line = ", ".join(f"{k}: {v if _bare_json(v) and k in META_KEYS else quote(v)}" for k, v in pairs)
    negative = f"\n{NEGATIVE_PREFIX} {p.negative_prompt}" if p.negative_prompt else ""
    return f"{p.prompt}{negative}\n{params_line}".strip()


_KNOWN = frozenset(row.name for row in KEYS)


def _writable(key: str) -> bool:
    """Source keys, and keys no table row knows (what our own features add, e.g. `X Type`); never a parameter
    key (the params decide those) nor a key the table marks as not applied."""
    row = lookup(key)
    return row.kind == SOURCE or (row.kind == IGNORED and row.why == UNKNOWN_KEY)


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
        if not (_RE_PAIRS_LINE.match(line.strip()) or line.startswith(TEMPLATE_PREFIXES)):
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
    """A1111's regex pairs, except that a bare JSON object/list value is taken whole (A1111 would cut it at
    its first comma and read its insides as more keys), and a Dynamic Prompts template line is one value."""
    if line.startswith(TEMPLATE_PREFIXES):
        key, _, value = line.partition(": ")
        return [(key, value)]
    out: list[tuple[str, str]] = []
    pos = 0
    while (m := RE_PARAM.search(line, pos)) is not None:
        key, value = m.group(1), m.group(2)
        if value[:1] in "{[":
            try:
                _, end = _JSON.raw_decode(line, m.start(2))
            except ValueError:
                end = None
            after = _RE_AFTER_JSON.match(line, end) if end is not None else None
            if after is not None:
                out.append((key, line[m.start(2):end]))
                pos = after.end()
                continue
        out.append((key, unquote(value)))
        pos = m.end()
    return out


def old_hires_fix_first_pass_dimensions(width: int, height: int) -> tuple[int, int]:
    """A1111's processing.old_hires_fix_first_pass_dimensions: about 512x512 pixels, sides rounded up to 64."""
    scale = math.sqrt(512 * 512 / (width * height))
    return math.ceil(scale * width / 64) * 64, math.ceil(scale * height / 64) * 64


def parse_infotext(text: str) -> ParsedInfotext:
    """Read an A1111 infotext into GenerationParams (missing keys: A1111's defaults), meta and ignored keys.

    Raises InfotextError naming the key and value when a value is unknown or out of range, and
    InfotextError("no generation parameters found") when there is no parameter line."""
    if not isinstance(text, str) or not text.strip():
        raise InfotextError("no generation parameters found")
    head, params_line, trailing = _split_lines(text)
    prompt, negative = _prompts(head)

    meta: dict[str, str] = {}
    raw: dict[str, str] = {}
    ignored: dict[str, str] = {}
    reasons: dict[str, str] = {}
    pairs = _pairs(params_line) + [kv for line in trailing for kv in _pairs(line)]
    for key, value in pairs:  # a repeated key: the last one wins, as in A1111's dict
        row = lookup(key)
        target = {APPLIED: raw, SOURCE: meta}.get(row.kind, ignored)
        target.pop(key, None)
        target[key] = value
        if row.kind == IGNORED:
            reasons[key] = row.why
    if not raw:  # three `a: b` pairs in a line of prose are not parameters
        raise InfotextError("no generation parameters found")

    # A1111 1.10's txt2img paste: `enable_hr` is `"Denoising strength" in d` (its parser always adds
    # "Hires resize-1", which makes the rest of that condition true). Hires keys alone change nothing.
    enable_hires = "Denoising strength" in raw
    if not enable_hires:
        for key in HIRES_KEYS:
            if key in raw:
                ignored[key] = raw.pop(key)
                reasons[key] = HIRES_OFF

    # One group of fields per infotext key, so an invalid value can be blamed on the key it came from.
    groups: dict[str, dict[str, object]] = {}
    for row in KEYS:
        if row.kind == APPLIED and row.name in raw:
            groups[row.name] = row.read(row.name, raw[row.name])
    # A1111 infotext_versions.backcompat: what old versions did implicitly.
    if "Downcast alphas_cumprod" not in raw and _version_before(meta.get("Version"), "v1.7.0-225"):
        groups["Version"] = {"downcast_alphas_cumprod": True}
    if ("Pad conds v0" not in raw and _version_before(meta.get("Version"), "1.6.0")
            and raw.get("Sampler", "").strip() in ("DDIM", "PLMS")):
        groups.setdefault("Version", {})["pad_conds_v0"] = True
    notes = _restore_old_hires_fix(groups)

    fields: dict[str, object] = {"prompt": prompt, "negative_prompt": negative, "enable_hires": enable_hires}
    for group in groups.values():
        fields.update(group)
    try:
        params = GenerationParams(**fields)
    except InvalidParameter as e:
        raise InfotextError(_blame(e, groups, raw)) from e
    # A sampler option the recipe's samplers do not take changes nothing (A1111 keeps it in its settings and
    # does not write it back): it is named as not used, never claimed as applied.
    used = applied_options(params)
    unused = [name for name, (key, _) in OPTION_KEYS.items() if key in raw and name not in used]
    unused = {name: OPTION_KEYS[name] for name in unused}
    if "ENSD" in raw and not uses_ensd(params):  # ENSD re-seeds only the noise ancestral samplers draw
        unused["eta_noise_seed_delta"] = ("ENSD", 0)
    if unused:
        params = params.replace(**{name: default for name, (_, default) in unused.items()})
        for key, _ in unused.values():
            ignored[key] = raw.pop(key)
            reasons[key] = NOT_USED
    applied = tuple(k for k in raw)
    return ParsedInfotext(params, meta, ignored, applied, reasons, notes)


def _restore_old_hires_fix(groups: dict[str, dict[str, object]]) -> tuple[str, ...]:
    """A1111 1.10's restore_old_hires_fix_params: before 2023 `Size` was the final size and `First pass size`
    the first pass (0x0: A1111's automatic ~512x512). Now: Size = first pass, Hires resize = the old Size."""
    first = groups.pop("First pass size", None)
    if first is None:
        return ()
    fw, fh = first["_first_pass"]
    size = groups.pop("Size", {"width": 512, "height": 512})
    width, height = size["width"], size["height"]
    if fw == 0 or fh == 0:
        fw, fh = old_hires_fix_first_pass_dimensions(width, height)
    groups.pop("Hires resize", None)
    groups["First pass size"] = {"width": fw, "height": fh, "hires_resize_x": width, "hires_resize_y": height}
    return (f"First pass size: read as A1111 1.10 does: Size {fw}x{fh}, Hires resize {width}x{height}",)


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
            keys = [k for k in ("First pass size", "Size") if k in raw] if key == "First pass size" else [key]
            shown, value = "/".join(keys), ", ".join(repr(raw[k]) for k in keys)
            return f"{shown}: {value}: {own}"
    involved = [k for k in groups if k in ("Sampler", "Schedule type", "Size", "First pass size", "Hires upscale",
                                           "Hires resize", "Seed", "Batch size")]
    shown = ", ".join(f"{k}: {raw[k]!r}" for k in involved)
    return f"{shown}: {error}" if shown else str(error)


__all__ = ["ParsedInfotext", "parse_infotext", "format_infotext", "quote", "unquote", "format_number",
           "old_hires_fix_first_pass_dimensions", "RE_PARAM", "PARAM_KEYS", "META_KEYS"]
