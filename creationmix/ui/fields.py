"""Widget values <-> GenerationParams, by field name. Torch-free and gradio-free.

Every generation field on the Generate tab is registered under the GenerationParams field it fills, so handlers
never depend on widget order: they receive `{name: value}` and build ONE GenerationParams from it.
"""
from __future__ import annotations

import math
from typing import Any, Mapping

from ..errors import InvalidParameter
from ..params import GenerationParams

SAME_SAMPLER = "Use same sampler"
SAME_SCHEDULE = "Use same scheduler"

# GenerationParams fields that have a widget (`extra` does not: the UI writes fresh infotexts, as A1111 does).
FIELD_NAMES: tuple[str, ...] = tuple(n for n in GenerationParams.field_names() if n != "extra")

INT_FIELDS = frozenset({"steps", "seed", "width", "height", "batch_size", "batch_count", "clip_skip",
                        "hires_steps", "hires_resize_x", "hires_resize_y", "subseed", "seed_resize_from_w",
                        "seed_resize_from_h", "eta_noise_seed_delta"})
FLOAT_FIELDS = frozenset({"cfg_scale", "hires_scale", "denoising_strength", "subseed_strength", "eta", "eta_ddim",
                          "s_churn", "s_tmin", "s_tmax", "s_noise", "sigma_min", "sigma_max", "rho", "beta_alpha",
                          "beta_beta", "s_min_uncond", "token_merging_ratio", "token_merging_ratio_hr"})
BOOL_FIELDS = frozenset({"enable_hires", "pad_conds", "pad_conds_v0", "downcast_alphas_cumprod"})
_LABELS = {"cfg_scale": "CFG scale", "hires_resize_x": "hires resize width", "hires_resize_y": "hires resize height",
           "subseed": "variation seed", "subseed_strength": "variation strength",
           "seed_resize_from_w": "resize seed from width", "seed_resize_from_h": "resize seed from height",
           "eta_noise_seed_delta": "eta noise seed delta (ENSD)"}


def _label(name: str) -> str:
    return _LABELS.get(name, name.replace("_", " "))


def _to_int(name: str, v: Any) -> int:
    if v is None or v == "":
        raise InvalidParameter(f"{_label(name)} is empty; enter a whole number")
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise InvalidParameter(f"{_label(name)} must be a whole number, got {v!r}") from None
    if not math.isfinite(f) or f != int(f):
        raise InvalidParameter(f"{_label(name)} must be a whole number, got {v!r}")
    return int(f)


def _to_float(name: str, v: Any) -> float:
    if v is None or v == "":
        raise InvalidParameter(f"{_label(name)} is empty; enter a number")
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise InvalidParameter(f"{_label(name)} must be a number, got {v!r}") from None
    if not math.isfinite(f):
        raise InvalidParameter(f"{_label(name)} must be a finite number, got {v!r}")
    return f


def params_from_fields(values: Mapping[str, Any]) -> GenerationParams:
    """Build the one GenerationParams from `{field name: widget value}`. Missing names keep their defaults.

    Raises InvalidParameter (from here or from GenerationParams' own validation) for anything out of range."""
    unknown = sorted(set(values) - set(FIELD_NAMES))
    if unknown:
        raise InvalidParameter(f"unknown field(s) {', '.join(unknown)}")
    kw: dict[str, Any] = {}
    for name, v in values.items():
        if name in INT_FIELDS:
            kw[name] = _to_int(name, v)
        elif name in FLOAT_FIELDS:
            kw[name] = _to_float(name, v)
        elif name in BOOL_FIELDS:
            kw[name] = bool(v)
        elif name == "hires_schedule":
            kw[name] = None if v in (None, "", SAME_SCHEDULE) else str(v)
        elif name == "hires_sampler":
            kw[name] = None if v in (None, "", SAME_SAMPLER) else str(v)
        elif name == "checkpoint":
            kw[name] = str(v) if v else None
        elif name == "vae":
            kw[name] = str(v) if v else "Automatic"
        else:
            kw[name] = "" if v is None else str(v)
    return GenerationParams(**kw)


def fields_from_params(p: GenerationParams) -> dict[str, Any]:
    """Widget values for every field. `checkpoint` is left out when the params name none (keep the current)."""
    out: dict[str, Any] = {}
    for name in FIELD_NAMES:
        v = getattr(p, name)
        if name == "hires_sampler":
            v = v or SAME_SAMPLER
        elif name == "hires_schedule":
            v = v or SAME_SCHEDULE
        elif name == "checkpoint" and v is None:
            continue
        out[name] = v
    return out
