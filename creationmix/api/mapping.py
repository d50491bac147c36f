"""A1111 txt2img request -> GenerationParams, through one table.

Each request field has one row: the GenerationParams field it sets (and how), or, for a field CreationMix
does not implement, the values that mean "A1111's default behaviour" (accepted: nothing changes) — any other
value is refused with a 422 naming the field, never silently ignored. A row whose GenerationParams field does
not exist yet (`pending`) switches itself on when the field lands in params.py.

Precedence, as A1111 1.10: explicit request field > the request's `infotext` > the server's options.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from ..errors import InfotextError, InvalidParameter
from ..params import SCHEDULES, GenerationParams
from ..sampler_options import CHURN_SAMPLERS, ETA_DDIM_SAMPLERS, ETA_SAMPLERS, S_NOISE_SAMPLERS
from .errors import ApiError

GP_FIELDS = frozenset(GenerationParams.field_names())

# Which samplers read eta / churn / s_noise: sampler_options, the sampling code's own table.

SAME_SAMPLER = ("", "Use same sampler")
SAME_SCHEDULER = ("", "Use same scheduler")


@dataclass(frozen=True)
class Row:
    request: str
    target: str | None = None  # GenerationParams field
    convert: Callable[[Any, "Ctx"], Any] | None = None  # request value -> GenerationParams value (None: skip)
    neutral: Callable[[Any, "Ctx"], bool] | None = None  # for unimplemented fields: does this value change nothing?
    allowed: str = ""  # what to say when a value is refused

    @property
    def applies(self) -> bool:
        return self.target is not None and self.target in GP_FIELDS


@dataclass
class Ctx:
    """What the rows may look at besides their own value: the whole request and the samplers it runs."""
    values: dict[str, Any]
    samplers: tuple[str, ...]  # first pass (and hires) sampler, canonical names

    def __getitem__(self, k):
        return self.values.get(k)


def _is_none_or(*values):
    return lambda v, c: v is None or v in values


def _eta_neutral(v, c: Ctx) -> bool:
    return v is None or all((s not in ETA_SAMPLERS or v == 1.0) and (s not in ETA_DDIM_SAMPLERS or v == 0)
                            for s in c.samplers)


def eta_fields(v, samplers) -> dict[str, float]:
    """A1111's request `eta` is the eta of whichever sampler runs: eta_ancestral for k-diffusion's ancestral/SDE
    samplers, eta_ddim for DDIM; samplers without eta ignore it (as in A1111)."""
    if v is None:
        return {}
    out = {}
    if any(s in ETA_SAMPLERS for s in samplers):
        out["eta"] = v
    if any(s in ETA_DDIM_SAMPLERS for s in samplers):
        out["eta_ddim"] = v
    return out


def _churn(c: Ctx) -> float:
    return c["s_churn"] or 0.0


def _seed_resize_active(c: Ctx) -> bool:
    w, h = c["seed_resize_from_w"] or 0, c["seed_resize_from_h"] or 0
    return w > 0 and h > 0 and (w, h) != (c["width"], c["height"])


def _same_checkpoint(v, c: Ctx) -> bool:
    return not v or v in ("Use same checkpoint",) or v == c["_checkpoint"]


def _hires_sampler(v, c):
    return None if v in (None, *SAME_SAMPLER) else v


def _hires_upscaler(v, c):
    return "Latent" if v in (None, "") else v


def _denoise(v, c):
    return 0.75 if v is None else v


def _keep(v, c):
    return v


ROWS: tuple[Row, ...] = (
    Row("prompt", "prompt", _keep),
    Row("negative_prompt", "negative_prompt", _keep),
    Row("seed", "seed", _keep),
    Row("steps", "steps", _keep),
    Row("cfg_scale", "cfg_scale", _keep),
    Row("width", "width", _keep),
    Row("height", "height", _keep),
    Row("batch_size", "batch_size", _keep),
    Row("n_iter", "batch_count", _keep),
    Row("enable_hr", "enable_hires", _keep),
    Row("hr_scale", "hires_scale", _keep),
    Row("hr_second_pass_steps", "hires_steps", _keep),
    Row("hr_resize_x", "hires_resize_x", _keep),
    Row("hr_resize_y", "hires_resize_y", _keep),
    Row("hr_upscaler", "hires_upscaler", _hires_upscaler),
    Row("hr_sampler_name", "hires_sampler", _hires_sampler),
    Row("hr_prompt", "hires_prompt", _keep),
    Row("hr_negative_prompt", "hires_negative_prompt", _keep),
    Row("denoising_strength", "denoising_strength", _denoise),
    # Fields other helpers are adding to GenerationParams: applied once the field exists, refused until then.
    Row("subseed_strength", "subseed_strength", _keep, neutral=_is_none_or(0, 0.0), allowed="0 (no variation seed)"),
    Row("subseed", "subseed", _keep, neutral=lambda v, c: not c["subseed_strength"],
        allowed="any value while subseed_strength is 0"),
    Row("seed_resize_from_w", "seed_resize_from_w", _keep, neutral=lambda v, c: not _seed_resize_active(c),
        allowed="0 or -1 (off) or the image width"),
    Row("seed_resize_from_h", "seed_resize_from_h", _keep, neutral=lambda v, c: not _seed_resize_active(c),
        allowed="0 or -1 (off) or the image height"),
    Row("eta", "eta", _keep, neutral=_eta_neutral,
        allowed="null, or each sampler's A1111 default (1.0 for ancestral/SDE samplers, 0 for DDIM)"),
    Row("s_churn", "s_churn", _keep, neutral=lambda v, c: not v or not (set(c.samplers) & CHURN_SAMPLERS),
        allowed="0 or null"),
    Row("s_tmin", "s_tmin", _keep, neutral=lambda v, c: not v or not _churn(c), allowed="0 or null"),
    Row("s_tmax", "s_tmax", _keep, neutral=lambda v, c: not v or not _churn(c), allowed="0 or null"),
    Row("s_noise", "s_noise", _keep,
        neutral=lambda v, c: v in (None, 1, 1.0) or not (set(c.samplers) & (S_NOISE_SAMPLERS - CHURN_SAMPLERS))
        and not _churn(c), allowed="1 or null"),
    Row("hr_scheduler", "hires_schedule", lambda v, c: None if v in (None, *SAME_SCHEDULER)
        else resolve_scheduler(v, "hr_scheduler")),
    Row("s_min_uncond", "s_min_uncond", _keep, neutral=_is_none_or(0, 0.0), allowed="0 or null"),
    # A1111 features CreationMix does not have: only their "off" values are accepted.
    Row("restore_faces", neutral=_is_none_or(False), allowed="false (face restoration is not supported)"),
    Row("tiling", neutral=_is_none_or(False), allowed="false (tiling is not supported)"),
    Row("styles", neutral=lambda v, c: not v, allowed="[] (prompt styles are not supported)"),
    Row("refiner_checkpoint", neutral=lambda v, c: not v or v == "None", allowed="null (no refiner)"),
    Row("hr_checkpoint_name", neutral=_same_checkpoint, allowed="null or the first pass checkpoint"),
    Row("hr_additional_modules", neutral=lambda v, c: not v or list(v) == ["Use same choices"],
        allowed='[] or ["Use same choices"]'),
    Row("disable_extra_networks", neutral=_is_none_or(False), allowed="false"),
    Row("firstpass_image", neutral=_is_none_or(""), allowed="null"),
    Row("script_name", neutral=_is_none_or(""), allowed="null (no scripts are installed; see /sdapi/v1/scripts)"),
    Row("alwayson_scripts", neutral=lambda v, c: not v,
        allowed="{} (no always-on scripts are installed; see /sdapi/v1/scripts)"),
)
ROW_BY_REQUEST = {r.request: r for r in ROWS}
REQUEST_BY_TARGET = {r.target: r.request for r in ROWS if r.target}
# Fields with no effect on pixels: accepted as A1111 does and not interpreted (save_images/send_images,
# override_settings, sampler_*/scheduler and infotext are handled by `to_params` itself).
IGNORED = ("do_not_save_samples", "do_not_save_grid", "comments", "force_task_id", "script_args",
           "refiner_switch_at", "override_settings_restore_afterwards")

# Infotext keys A1111 writes for features above: they fill the request field (which then goes through its row).
INFOTEXT_EXTRA_TO_REQUEST: dict[str, str] = {
    "Variation seed": "subseed", "Variation seed strength": "subseed_strength", "Eta": "eta", "Eta DDIM": "eta",
    "Sigma churn": "s_churn", "Sigma tmin": "s_tmin", "Sigma tmax": "s_tmax", "Sigma noise": "s_noise",
    "NGMS": "s_min_uncond", "Face restoration": "restore_faces", "Tiling": "tiling",
    "Hires checkpoint": "hr_checkpoint_name", "Refiner": "refiner_checkpoint",
}
INFOTEXT_EXTRA_TO_OPTION = {"ENSD": "eta_noise_seed_delta"}


def resolve_scheduler(name: str | None, field: str = "scheduler") -> str:
    """A1111 accepts a scheduler's name (`karras`, `sgm_uniform`) or its label (`Karras`, `SGM Uniform`)."""
    if name in (None, ""):
        return "Automatic"
    key = name.strip().lower().replace("_", " ")
    for label in SCHEDULES:
        if label.lower() == key:
            return label
    raise ApiError(422, f"unknown scheduler {name!r}; valid: {', '.join(scheduler_name(s) for s in SCHEDULES)} "
                        f"(or their labels: {', '.join(SCHEDULES)})", field=field)


def scheduler_name(label: str) -> str:
    return label.lower().replace(" ", "_")


def _float_or_text(v: str):
    try:
        f = float(v)
    except ValueError:
        return v
    return int(f) if f.is_integer() and "." not in v else f


def _infotext_base(text: str, values: dict, set_fields: set[str], settings: dict) -> GenerationParams:
    """A1111 1.10's `infotext` field: its values fill every request field the request did not set."""
    from ..infotext import NOT_USED, parse_infotext

    try:
        result = parse_infotext(text)
    except InfotextError as e:
        raise ApiError(422, f"infotext: {e}", field="infotext") from e
    # Keys the infotext table applies are in the params already; of the rest, those A1111 maps to request
    # fields or settings go there (so a value we cannot apply is refused like the request field would be).
    for k, v in result.ignored.items():
        if result.reasons.get(k) == NOT_USED:  # e.g. Eta with a sampler that takes none: changes nothing
            continue
        if k in INFOTEXT_EXTRA_TO_REQUEST:
            field = INFOTEXT_EXTRA_TO_REQUEST[k]
            if field not in set_fields:
                values[field] = {"True": True, "False": False}.get(v, _float_or_text(v))
        elif k in INFOTEXT_EXTRA_TO_OPTION:
            settings[INFOTEXT_EXTRA_TO_OPTION[k]] = _float_or_text(v)
    return result.params


# Options (server settings, GET/POST /sdapi/v1/options, override_settings) that are GenerationParams fields.
OPTION_TARGETS = {"sd_model_checkpoint": "checkpoint", "sd_vae": "vae", "CLIP_stop_at_last_layers": "clip_skip",
                  "randn_source": "rng", "emphasis": "emphasis", "eta_noise_seed_delta": "eta_noise_seed_delta"}
OPTION_NEUTRAL = {"eta_noise_seed_delta": (0,)}  # pending GenerationParams fields: the values that change nothing


def to_params(req, options: dict[str, Any], resolve: Callable[[str, Any], Any]) -> tuple[GenerationParams, dict]:
    """(GenerationParams, the options this request ran with). `resolve(option, value)` turns HTTP names of
    checkpoints/VAEs into names inside the configured folders (ApiError 404 otherwise)."""
    values = req.model_dump()
    given = set(req.model_fields_set)  # what the client sent; with an infotext, only these beat it
    overrides = dict(req.override_settings or {})
    base = GenerationParams()
    from_infotext: dict[str, Any] = {}
    if req.infotext:
        base = _infotext_base(req.infotext, values, given, from_infotext)
        given |= {f for f in INFOTEXT_EXTRA_TO_REQUEST.values() if f in values and values[f] is not None
                  and f not in req.model_fields_set and values[f] != type(req).model_fields[f].default}
        # Infotext keys that are options in A1111 (Clip skip, RNG, Emphasis) beat the server's options.
        for opt in ("CLIP_stop_at_last_layers", "randn_source", "emphasis"):
            target = OPTION_TARGETS[opt]
            if getattr(base, target) != getattr(GenerationParams(), target):
                from_infotext[opt] = getattr(base, target)
    use = (lambda name: name in given) if req.infotext else (lambda name: True)
    fields: dict[str, Any] = {}

    # Settings: override_settings > infotext > the server's options.
    unknown = sorted(set(overrides) - set(OPTION_TARGETS) - set(options))
    if unknown:
        raise ApiError(422, f"override_settings: unsupported setting(s) {', '.join(unknown)}; supported: "
                            f"{', '.join(OPTION_TARGETS)}", field="override_settings")
    for key, value in overrides.items():
        if key not in OPTION_TARGETS and value != options.get(key):
            raise ApiError(422, f"override_settings.{key}: this setting is read-only here (it is "
                                f"{options.get(key)!r})", field=f"override_settings.{key}")
    effective = {**options, **from_infotext, **overrides}
    for opt, target in OPTION_TARGETS.items():
        value = effective.get(opt)
        where = f"override_settings.{opt}" if opt in overrides else ("infotext" if opt in from_infotext else opt)
        if target in GP_FIELDS:
            if value is not None:
                fields[target] = resolve(opt, value)
        elif value not in (None, *OPTION_NEUTRAL.get(opt, ())):
            label = f"infotext: {opt}" if where == "infotext" else where
            raise ApiError(422, f"{label} {value!r} is not supported yet; allowed: "
                                f"{', '.join(map(repr, OPTION_NEUTRAL.get(opt, ())))}", field=where)

    # Sampler and schedule: sampler_name, else sampler_index (A1111), accepting the old combined names.
    sampler, schedule = base.sampler, base.schedule
    if use("sampler_name") or use("sampler_index"):
        sampler = values["sampler_name"] or values["sampler_index"] or sampler
        if use("scheduler") or not req.infotext:
            schedule = "Automatic"
    if use("scheduler") and values["scheduler"]:
        schedule = resolve_scheduler(values["scheduler"])
    from ..params import split_sampler_name
    try:
        fields["sampler"], fields["schedule"] = split_sampler_name(sampler, schedule)
    except InvalidParameter as e:
        raise ApiError(422, str(e), field="sampler_name" if values["sampler_name"] else "sampler_index") from e

    hsampler = _hires_sampler(values.get("hr_sampler_name"), None) if use("hr_sampler_name") else base.hires_sampler
    for row in ROWS:
        if not use(row.request):
            continue
        value = values.get(row.request)
        if row.request == "eta" and row.applies:
            fields.update(eta_fields(value, [fields["sampler"], hsampler or fields["sampler"]]))
        elif row.applies and value is not None:
            converted = row.convert(value, None)
            if converted is not None:
                fields[row.target] = converted
    ctx = Ctx({**values, "_checkpoint": fields.get("checkpoint", base.checkpoint)},
              tuple(s for s in (fields["sampler"], hsampler) if s))
    for row in ROWS:
        if row.applies or row.neutral is None or not use(row.request):
            continue
        value = values.get(row.request)
        if not row.neutral(value, ctx):
            what = "is not supported" if row.target is None else "is not supported yet"
            raise ApiError(422, f"{row.request} {value!r} {what}; allowed: {row.allowed}", field=row.request)

    # A1111 < 1.6's firstphase_*: the first pass at that size, the hires pass to width x height.
    fw, fh = values.get("firstphase_width") or 0, values.get("firstphase_height") or 0
    if use("firstphase_width") and (fw or fh):
        if not fields.get("enable_hires", base.enable_hires):
            raise ApiError(422, "firstphase_width/height need enable_hr: true", field="firstphase_width")
        w, h = fields.get("width", base.width), fields.get("height", base.height)
        fields.update(hires_resize_x=w, hires_resize_y=h, width=fw or w, height=fh or h)

    try:
        params = base.replace(**fields)
    except InvalidParameter as e:
        name = _blame(fields)
        raise ApiError(422, f"{name}: {e}" if name else str(e), field=name) from e
    return params, effective


def _blame(fields: dict) -> str | None:
    """The request field of the first value that is invalid on its own (None when only the combination is)."""
    for target, value in fields.items():
        try:
            GenerationParams(**{target: value})
        except InvalidParameter:
            name = REQUEST_BY_TARGET.get(target) or next((o for o, t in OPTION_TARGETS.items() if t == target),
                                                         target)
            return name
        except TypeError:
            continue
    return None
