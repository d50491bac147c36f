"""X/Y/Z plot axes: A1111's value syntax, typed values, and what each value does to a GenerationParams.

Value syntax is A1111's (scripts/xyz_grid.py): a CSV line (quote values that contain commas), where a numeric
axis also takes ranges: `1-5` (inclusive), `1-5 (+2)` (step), `0.2-1.0 (+0.2)`, `0-1 [5]` (count, evenly
spaced). The four range regexes below are A1111's, verbatim. Two deliberate differences, both where A1111
crashes or is wrong: a bad value is an InvalidParameter naming the axis and the value (A1111: a traceback
mid-grid), and a float range never overshoots its end through rounding (A1111's `np.arange(0, 1.1, 0.1)`
yields 1.1 as well).

Torch-free: the UI and the CLI parse axes before anything is loaded.
"""
from __future__ import annotations

import csv
import io
import math
import re
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any, Callable

from ..errors import InvalidParameter
from ..lora.tags import format_weight, set_lora_weight
from ..params import SAMPLERS, SCHEDULES, GenerationParams, split_sampler_name

# Verbatim from A1111 scripts/xyz_grid.py.
re_range = re.compile(r"\s*([+-]?\s*\d+)\s*-\s*([+-]?\s*\d+)(?:\s*\(([+-]\d+)\s*\))?\s*")
re_range_float = re.compile(r"\s*([+-]?\s*\d+(?:.\d*)?)\s*-\s*([+-]?\s*\d+(?:.\d*)?)(?:\s*\(([+-]\d+(?:.\d*)?)\s*\))?\s*")  # noqa: E501
re_range_count = re.compile(r"\s*([+-]?\s*\d+)\s*-\s*([+-]?\s*\d+)(?:\s*\[(\d+)\s*])?\s*")
re_range_count_float = re.compile(r"\s*([+-]?\s*\d+(?:.\d*)?)\s*-\s*([+-]?\s*\d+(?:.\d*)?)(?:\s*\[(\d+(?:.\d*)?)\s*])?\s*")  # noqa: E501

# Floats are rounded to this many decimals (A1111 rounds labels to 8): 0.1*3 is 0.3 on the grid and in the file.
FLOAT_DECIMALS = 8
# One axis longer than this is almost certainly a typo such as `1-100000`; the job's cell limit is in plot.py.
MAX_AXIS_VALUES = 10_000
NO_LORA = "none"
BASE_MODEL_LABEL = "base model"
_LORA_TAG = re.compile(r"<(lora|lyco):([^>]+)>", re.IGNORECASE)
_BOOL = {"on": True, "true": True, "yes": True, "1": True, "off": False, "false": False, "no": False, "0": False}


def csv_values(text: str) -> list[str]:
    """A1111's csv_string_to_list_strip: one CSV line, quoted values may hold commas, each value stripped."""
    text = text or ""
    if "\n" in text.strip():
        text = ",".join(line for line in text.splitlines() if line.strip())
    try:
        rows = list(csv.reader(io.StringIO(text), skipinitialspace=True))
    except csv.Error as e:
        raise InvalidParameter(f"malformed value list {text!r}: {e}") from None
    return [v.strip() for row in rows for v in row]


def _num(text: str) -> str:
    return re.sub(r"\s+", "", text)  # the regexes allow `- 5`; int()/float() do not


def _round(x: float) -> float:
    r = round(float(x), FLOAT_DECIMALS)
    return 0.0 if r == 0 else r


def format_value(v: Any) -> str:
    if isinstance(v, bool):
        return "on" if v else "off"
    if isinstance(v, float):
        return str(int(v)) if v.is_integer() else repr(v)
    return str(v)


def expand_int(values: list[str], where: str) -> list[int]:
    out: list[int] = []
    for val in values:
        if val.strip() == "":
            continue
        m, mc = re_range.fullmatch(val), re_range_count.fullmatch(val)
        try:
            if m is not None:
                start, end = int(_num(m.group(1))), int(_num(m.group(2)))
                step = int(m.group(3)) if m.group(3) is not None else 1
                if step == 0:
                    raise InvalidParameter(f"{where}: range {val!r} has a step of 0")
                # A1111: range(start, end + 1, step); the end is included for a negative step as well.
                got = list(range(start, end + (1 if step > 0 else -1), step))
            elif mc is not None:
                start, end = int(_num(mc.group(1))), int(_num(mc.group(2)))
                num = int(mc.group(3)) if mc.group(3) is not None else 1
                got = _int_linspace(start, end, num)
            else:
                got = [int(_num(val))]
        except InvalidParameter:
            raise
        except ValueError:
            raise InvalidParameter(f"{where}: {val!r} is not a whole number or a range like 1-5, 1-9 (+2), "
                                   f"0-100 [5]") from None
        if not got:
            raise InvalidParameter(f"{where}: range {val!r} gives no values")
        out += got
        _check_len(out, where)
    return out


def _int_linspace(start: int, end: int, num: int) -> list[int]:
    # int(np.linspace(...)) as A1111 does: truncation toward zero, not rounding.
    if num == 1:
        return [start]
    return [int(start + (end - start) * i / (num - 1)) for i in range(num)]


def expand_float(values: list[str], where: str) -> list[float]:
    out: list[float] = []
    for val in values:
        if val.strip() == "":
            continue
        m, mc = re_range_float.fullmatch(val), re_range_count_float.fullmatch(val)
        try:
            if m is not None:
                start, end = float(_num(m.group(1))), float(_num(m.group(2)))
                step = float(m.group(3)) if m.group(3) is not None else 1.0
                got = _float_range(start, end, step, val, where)
            elif mc is not None:
                start, end = float(_num(mc.group(1))), float(_num(mc.group(2)))
                num = int(float(mc.group(3))) if mc.group(3) is not None else 1
                got = [start] if num == 1 else [start + (end - start) * i / (num - 1) for i in range(num)]
            else:
                got = [float(_num(val))]
        except InvalidParameter:
            raise
        except ValueError:
            raise InvalidParameter(f"{where}: {val!r} is not a number or a range like 0.2-1.0 (+0.2), "
                                   f"0-1 [5]") from None
        if not got:
            raise InvalidParameter(f"{where}: range {val!r} gives no values")
        if not all(math.isfinite(x) for x in got):
            raise InvalidParameter(f"{where}: {val!r} is not a finite number")
        out += [_round(x) for x in got]
        _check_len(out, where)
    return out


def _float_range(start: float, end: float, step: float, val: str, where: str) -> list[float]:
    if step == 0 or not math.isfinite(step):
        raise InvalidParameter(f"{where}: range {val!r} has a step of 0")
    span = (end - start) / step
    if span < -1e-9:
        return []
    n = int(math.floor(span + 1e-9)) + 1
    if n > MAX_AXIS_VALUES:
        raise InvalidParameter(f"{where}: range {val!r} gives {n} values (at most {MAX_AXIS_VALUES})")
    return [start + i * step for i in range(n)]


def _check_len(values: list, where: str) -> None:
    if len(values) > MAX_AXIS_VALUES:
        raise InvalidParameter(f"{where}: more than {MAX_AXIS_VALUES} values")


def _to_bool(values: list[str], where: str) -> list[bool]:
    out = []
    for v in values:
        if v.strip() == "":
            continue
        b = _BOOL.get(v.strip().lower())
        if b is None:
            raise InvalidParameter(f"{where}: {v!r} is not on/off (allowed: {', '.join(_BOOL)})")
        out.append(b)
    return out


# -- LoRA tags in prompt text -----------------------------------------------------------------------------------
def lora_names_in(prompt: str) -> list[str]:
    """Names of the LoRA tags in a prompt, in order, each once."""
    out: list[str] = []
    for m in _LORA_TAG.finditer(prompt or ""):
        name = m.group(2).split(":", 1)[0].strip()
        if name and name not in out:
            out.append(name)
    return out


def swap_lora(prompt: str, old: str | None, new: str | None, weight: float = 1.0) -> str:
    """Put LoRA `new` where `old` is (keeping old's weights); append `<lora:new:weight>` when `old` is absent;
    `new=None` removes `old`'s tag (exactly as A1111 strips a tag, so the text encoder sees the same text)."""
    found = False

    def repl(m: re.Match) -> str:
        nonlocal found
        name, sep, rest = m.group(2).partition(":")
        if old is None or name.strip() != old or found:
            return m.group(0)
        found = True
        if new is None:
            return ""
        return f"<{m.group(1)}:{new}{sep}{rest}>"

    out = _LORA_TAG.sub(repl, prompt or "")
    if found or new is None:
        return out
    return set_lora_weight(out, new, weight)


# -- axis kinds ---------------------------------------------------------------------------------------------------
@dataclass
class CellState:
    """What applying axes builds for one cell: the params so far and the LoRA the LoRA axis put in its slot."""

    params: GenerationParams
    slot_lora: str | None = None  # the LoRA a `LoRA` axis chose for this cell (None: `none`)
    has_lora_axis: bool = False


@dataclass(frozen=True)
class AxisKind:
    label: str  # A1111's label where A1111 has the axis
    value_type: str  # int | float | str | bool
    aliases: tuple[str, ...]
    apply: Callable[["Axis", Any, CellState], None]
    label_format: str = "label"  # "label": `Seed: 1`; "value": just the value (samplers, names, S/R)
    infotext_field: str | None = None  # the GenerationParams field a cell's infotext shows the value in
    order: int = 50  # apply order within a cell (LoRA strength after LoRA)


def _set(field: str, **also) -> Callable:
    def apply(axis, value, st: CellState) -> None:
        st.params = st.params.replace(**{field: value}, **also)
    return apply


def _apply_sampler(axis, value: str, st: CellState) -> None:
    name, sched = split_sampler_name(value)
    has_suffix = value.strip() != name
    st.params = st.params.replace(sampler=name, schedule=sched if has_suffix else st.params.schedule)


def _apply_checkpoint(axis, value: str, st: CellState) -> None:
    st.params = st.params.replace(checkpoint=value)


def _apply_sr(axis, value: str, st: CellState) -> None:
    search = axis.values[0]
    p = st.params
    if search not in p.prompt and search not in p.negative_prompt:
        raise InvalidParameter(f"{axis.where}: Prompt S/R did not find {search!r} in the prompt or negative prompt")
    st.params = p.replace(prompt=p.prompt.replace(search, value),
                          negative_prompt=p.negative_prompt.replace(search, value),
                          hires_prompt=p.hires_prompt.replace(search, value),
                          hires_negative_prompt=p.hires_negative_prompt.replace(search, value))


def _apply_lora(axis, value: str, st: CellState) -> None:
    p = st.params
    new = None if value.lower() == NO_LORA else value
    present = lora_names_in(p.prompt)
    old = axis.target if axis.target else (present[0] if present else None)
    st.params = p.replace(prompt=swap_lora(p.prompt, old, new))
    st.slot_lora, st.has_lora_axis = new, True


def _apply_lora_strength(axis, value: float, st: CellState) -> None:
    p = st.params
    if st.has_lora_axis and not axis.target:
        name = st.slot_lora
        if name is None:  # this cell has no LoRA: its strength does not apply
            return
    else:
        name = axis.target or _only_lora(p.prompt, axis)
    # Strength 0 is the base model: the tag goes (the LoRA manager makes weight 0 and no tag bit-identical,
    # and without a tag the LoRA need not even be loaded).
    st.params = p.replace(prompt=set_lora_weight(p.prompt, name, value if value != 0 else None))


def _only_lora(prompt: str, axis) -> str:
    names = lora_names_in(prompt)
    if len(names) != 1:
        have = f"the prompt has {len(names)} LoRA tags ({', '.join(names)})" if names else "the prompt has no LoRA tag"
        raise InvalidParameter(f"{axis.where}: say which LoRA the strengths are for ({have})")
    return names[0]


AXIS_KINDS: tuple[AxisKind, ...] = (
    AxisKind("Seed", "int", ("seed", "seeds"), _set("seed"), infotext_field="seed"),
    AxisKind("Steps", "int", ("steps", "step"), _set("steps"), infotext_field="steps"),
    AxisKind("CFG Scale", "float", ("cfg", "cfg scale", "cfgscale", "guidance"), _set("cfg_scale"),
             infotext_field="cfg_scale"),
    AxisKind("Sampler", "str", ("sampler", "samplers"), _apply_sampler, "value", infotext_field="sampler"),
    AxisKind("Checkpoint name", "str", ("checkpoint", "checkpoint name", "model", "ckpt"), _apply_checkpoint,
             "value", infotext_field="checkpoint"),
    AxisKind("Denoising", "float", ("denoising", "denoising strength", "denoise"), _set("denoising_strength"),
             infotext_field="denoising_strength"),
    AxisKind("Hires upscale", "float", ("hires upscale", "hires scale", "upscale by"),
             _set("hires_scale", enable_hires=True), infotext_field="hires_scale"),
    AxisKind("Hires fix", "bool", ("hires", "hires fix", "hires on/off", "hires on off", "enable hires"),
             _set("enable_hires"), infotext_field="enable_hires"),
    AxisKind("Clip skip", "int", ("clip skip", "clipskip", "clip"), _set("clip_skip"), infotext_field="clip_skip"),
    AxisKind("Var. seed", "int", ("var seed", "variation seed", "subseed"), _set("subseed"),
             infotext_field="subseed"),
    AxisKind("Var. strength", "float", ("var strength", "variation strength", "variation seed strength",
                                        "subseed strength"), _set("subseed_strength"),
             infotext_field="subseed_strength"),
    AxisKind("Prompt S/R", "str", ("prompt s/r", "prompt sr", "s/r", "sr", "search replace"), _apply_sr, "value",
             order=10),
    AxisKind("LoRA", "str", ("lora", "loras"), _apply_lora, "value", order=20),
    AxisKind("LoRA strength", "float", ("lora strength", "lora weight", "strength", "weight"),
             _apply_lora_strength, order=30),
)


def _norm(name: str) -> str:
    return re.sub(r"[\s_\-.]+", " ", name.strip().lower())


_BY_NAME: dict[str, AxisKind] = {}
for _k in AXIS_KINDS:
    for _n in (_k.label, *_k.aliases):
        _BY_NAME[_norm(_n)] = _k


def axis_kind(name: str) -> AxisKind:
    kind = _BY_NAME.get(_norm(name or ""))
    if kind is None:
        raise InvalidParameter(f"unknown axis type {name!r}; valid: {', '.join(k.label for k in AXIS_KINDS)}")
    return kind


@dataclass(frozen=True)
class Axis:
    """One parsed axis: its kind, typed values (in order, duplicates kept as A1111 does) and their labels."""

    kind: AxisKind
    values: tuple
    text: str  # the values as typed (the grid's infotext records it)
    target: str | None = None  # LoRA strength: which LoRA; LoRA: which tag of the prompt to swap
    name: str = "X"
    zero_label: str | None = None  # label for LoRA strength 0 (the strength sweep says "base model")
    short_labels: bool = False  # labels without the axis name (the strength sweep's columns)

    def __len__(self) -> int:
        return len(self.cells)

    @property
    def where(self) -> str:
        return f"{self.name} axis ({self.kind.label})"

    @property
    def cells(self) -> tuple:
        """The values that make grid columns/rows (Prompt S/R's first value is both search text and a cell)."""
        return self.values

    def label(self, value: Any) -> str:
        k = self.kind
        if k.label == "LoRA strength" and value == 0 and self.zero_label:
            return self.zero_label
        if k.label == "LoRA":
            return "no LoRA" if value.lower() == NO_LORA else value
        if k.label == "Checkpoint name":
            return PurePosixPath(value.replace("\\", "/")).stem
        if k.label == "Prompt S/R":
            return value if value.strip() else '""'
        text = format_value(value)
        if k.label_format == "value" or self.short_labels:
            return text
        return f"{k.label}: {text}"

    def labels(self) -> list[str]:
        return [self.label(v) for v in self.values]

    def apply(self, value: Any, st: CellState) -> None:
        try:
            self.kind.apply(self, value, st)
        except InvalidParameter as e:
            msg = str(e)
            if msg.startswith(self.where):
                raise
            raise InvalidParameter(f"{self.where}: value {format_value(value)!r}: {msg}") from None


def parse_axis(kind_name: str, text: str, *, name: str = "X", target: str | None = None) -> Axis:
    """Parse one axis's values. Raises InvalidParameter naming the axis and the bad value."""
    kind = axis_kind(kind_name)
    where = f"{name} axis ({kind.label})"
    raw = csv_values(text if isinstance(text, str) else ", ".join(str(v) for v in text))
    if kind.value_type == "int":
        values: list = expand_int(raw, where)
    elif kind.value_type == "float":
        values = expand_float(raw, where)
    elif kind.value_type == "bool":
        values = _to_bool(raw, where)
    elif kind.label == "Prompt S/R":
        values = raw  # an empty replacement is meaningful: it deletes the searched text
        if values and values[0] == "":
            raise InvalidParameter(f"{where}: the first value is the text to search for and must not be empty")
    else:
        values = [v for v in raw if v != ""]
    if not values:
        raise InvalidParameter(f"{where}: no values given")
    if target is not None and kind.label not in ("LoRA", "LoRA strength"):
        raise InvalidParameter(f"{where}: only LoRA and LoRA strength axes take a target LoRA")
    axis = Axis(kind=kind, values=tuple(values), text=text if isinstance(text, str) else ", ".join(raw),
                target=(target.strip() or None) if target else None, name=name)
    _check_values(axis)
    return axis


def _check_values(axis: Axis) -> None:
    """Checks that need no model: ranges of numbers, sampler names, LoRA/checkpoint names' shape."""
    where, k = axis.where, axis.kind.label
    for v in axis.values:
        bad = None
        if k in ("Seed", "Var. seed") and not -1 <= v <= 4294967294:
            bad = "a seed must be -1 (random) or between 0 and 4294967294"
        elif k == "Var. strength" and not 0 <= v <= 1:
            bad = "a variation strength must be between 0 and 1"
        elif k == "Steps" and not 1 <= v <= 150:
            bad = "steps must be between 1 and 150"
        elif k == "CFG Scale" and not 1 <= v <= 30:
            bad = "CFG scale must be between 1 and 30"
        elif k == "Denoising" and not 0 < v <= 1:
            bad = "denoising strength must be in (0, 1]"
        elif k == "Hires upscale" and not 1 <= v <= 4:
            bad = "hires upscale must be between 1 and 4"
        elif k == "Clip skip" and not 1 <= v <= 12:
            bad = "clip skip must be between 1 and 12"
        elif k == "LoRA strength" and not -10 <= v <= 10:
            bad = "a LoRA strength must be between -10 and 10"
        elif k == "Sampler":
            try:
                split_sampler_name(v)
            except InvalidParameter:
                bad = (f"unknown sampler; valid: {', '.join(SAMPLERS)} "
                       f"(optionally followed by {', '.join(SCHEDULES[1:])})")
        elif k in ("LoRA", "Checkpoint name") and any(c in v for c in "<>:\n"):
            bad = "a name must not contain < > : or newlines"
        if bad:
            raise InvalidParameter(f"{where}: bad value {format_value(v)!r}: {bad}")


__all__ = ["Axis", "AxisKind", "AXIS_KINDS", "CellState", "parse_axis", "axis_kind", "csv_values", "expand_int",
           "expand_float", "lora_names_in", "swap_lora", "format_weight", "BASE_MODEL_LABEL", "NO_LORA"]
