"""GenerationParams: the one frozen object that carries a generation from UI/CLI/infotext to the engine and back.

Torch-free on purpose: the UI and the infotext parser import it. Names (samplers, schedules, upscalers) are
A1111's, so a pasted recipe means the same thing here. The sampling package maps these names to code through
one table and a test checks both lists agree.
"""
from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass

from .errors import InvalidParameter
from .upscalers.table import UPSCALER_NAMES, check_upscaler_name

# A1111 1.10 sampler names (the schedule is separate), in its UI order, with its `aliases` lists.
SAMPLER_ALIASES: dict[str, tuple[str, ...]] = {
    "DPM++ 2M": ("k_dpmpp_2m",),
    "DPM++ SDE": ("k_dpmpp_sde",),
    "DPM++ 2M SDE": ("k_dpmpp_2m_sde",),
    "DPM++ 2M SDE Heun": ("k_dpmpp_2m_sde_heun",),
    "DPM++ 2S a": ("k_dpmpp_2s_a",),
    "DPM++ 3M SDE": ("k_dpmpp_3m_sde",),
    "Euler a": ("k_euler_a", "k_euler_ancestral"),
    "Euler": ("k_euler",),
    "LMS": ("k_lms",),
    "Heun": ("k_heun",),
    "DPM2": ("k_dpm_2",),
    "DPM2 a": ("k_dpm_2_a",),
    "DPM fast": ("k_dpm_fast",),
    "DPM adaptive": ("k_dpm_ad",),
    "Restart": ("restart",),
    "DDIM": ("ddim",),
    "DDIM CFG++": ("ddim_cfgpp",),
    "PLMS": ("plms",),
    "UniPC": ("unipc",),
    "LCM": ("k_lcm",),
}
SAMPLERS: tuple[str, ...] = tuple(SAMPLER_ALIASES)
# A1111 < 1.9 aliases of combined names (`DPM++ 2M Karras` was the sampler `k_dpmpp_2m_ka`).
_OLD_COMBINED_ALIASES: dict[str, tuple[str, str]] = {
    "k_lms_ka": ("LMS", "Karras"), "k_dpm_2_ka": ("DPM2", "Karras"), "k_dpm_2_a_ka": ("DPM2 a", "Karras"),
    "k_dpmpp_2s_a_ka": ("DPM++ 2S a", "Karras"), "k_dpmpp_2m_ka": ("DPM++ 2M", "Karras"),
    "k_dpmpp_sde_ka": ("DPM++ SDE", "Karras"), "k_dpmpp_2m_sde_ka": ("DPM++ 2M SDE", "Karras"),
    "k_dpmpp_2m_sde_exp": ("DPM++ 2M SDE", "Exponential"),
    "k_dpmpp_2m_sde_heun_ka": ("DPM++ 2M SDE Heun", "Karras"),
    "k_dpmpp_2m_sde_heun_exp": ("DPM++ 2M SDE Heun", "Exponential"),
    "k_dpmpp_3m_sde_ka": ("DPM++ 3M SDE", "Karras"), "k_dpmpp_3m_sde_exp": ("DPM++ 3M SDE", "Exponential"),
}
# A1111's "timesteps" samplers: they run on the model's own integer timesteps, the schedule type has no effect.
TIMESTEP_SAMPLERS = frozenset({"DDIM", "DDIM CFG++", "PLMS", "UniPC"})

# A1111 1.10 sd_schedulers: label -> (internal name, aliases). Order is the UI's order.
SCHEDULE_ALIASES: dict[str, tuple[str, ...]] = {
    "Automatic": ("automatic",),
    "Uniform": ("uniform",),
    "Karras": ("karras",),
    "Exponential": ("exponential",),
    "Polyexponential": ("polyexponential",),
    "SGM Uniform": ("sgm_uniform", "SGMUniform"),
    "KL Optimal": ("kl_optimal",),
    "Align Your Steps": ("align_your_steps",),
    "Simple": ("simple",),
    "Normal": ("normal",),
    "DDIM": ("ddim",),
    "Beta": ("beta",),
}
SCHEDULES: tuple[str, ...] = tuple(SCHEDULE_ALIASES)
# What "Automatic" means per sampler (A1111's `scheduler` sampler option); the rest run k-diffusion's own
# discretization, which is "Uniform".
DEFAULT_SCHEDULE: dict[str, str] = {
    "DPM++ 2M": "Karras",
    "DPM++ SDE": "Karras",
    "DPM++ 2M SDE": "Exponential",
    "DPM++ 2M SDE Heun": "Exponential",
    "DPM++ 2S a": "Karras",
    "DPM++ 3M SDE": "Exponential",
    "DPM2": "Karras",
    "DPM2 a": "Karras",
    "Restart": "Karras",
}
LATENT_UPSCALERS: tuple[str, ...] = (
    "Latent",
    "Latent (antialiased)",
    "Latent (bicubic)",
    "Latent (bicubic antialiased)",
    "Latent (nearest)",
    "Latent (nearest-exact)",
)
# Names the upscaler table knows by itself; hires_upscaler also takes any model file's stem (`4x-UltraSharp`).
UPSCALERS = UPSCALER_NAMES
RNG_SOURCES: tuple[str, ...] = ("GPU", "CPU", "NV")
EMPHASIS_MODES: tuple[str, ...] = ("Original", "No norm", "None")
PROMPT_SYNTAXES: tuple[str, ...] = ("A1111", "Compel")

MAX_SEED = 4294967294  # the largest seed A1111 draws for -1
# The largest seed A1111 accepts: it seeds torch generators with int(seed), and torch takes any 64-bit value.
MAX_SEED_VALUE = 2**64 - 1
MAX_ENSD = 4294967295
# A1111's samplers whose infotext carries ENSD (sampler option `uses_ensd`: they draw ancestral noise after the
# first noise, which is where the generators are re-seeded with seed + ENSD).
SAMPLERS_USING_ENSD = frozenset({"Euler a", "DPM2 a", "DPM++ 2S a", "DPM fast", "DPM adaptive"})


def _lookup(table: dict[str, tuple[str, ...]], name: str) -> str | None:
    """Label for a label or alias (labels exact, aliases and labels case-insensitively, as A1111's API)."""
    if name in table:
        return name
    low = name.lower()
    for label, aliases in table.items():
        if low == label.lower() or low in (a.lower() for a in aliases):
            return label
    return None


def canonical_sampler(name: str) -> str | None:
    return _lookup(SAMPLER_ALIASES, (name or "").strip())


def canonical_schedule(name: str) -> str | None:
    return _lookup(SCHEDULE_ALIASES, (name or "").strip())


@dataclass(frozen=True)
class Limit:
    """The allowed range of one numeric field: `_validate` checks it and the UI builds its slider from it."""

    label: str  # as the error message names it
    lo: float
    hi: float
    step: float = 1
    lo_open: bool = False  # (lo, hi] instead of [lo, hi]
    zero_ok: bool = False  # 0 means "not set" (hires resize)


# One truth for every numeric bound (UI sliders, CLI, API, presets all end up here).
LIMITS: dict[str, Limit] = {
    "steps": Limit("steps", 1, 150),
    "cfg_scale": Limit("CFG scale", 1, 30, 0.5),
    "width": Limit("width", 64, 4096, 8),
    "height": Limit("height", 64, 4096, 8),
    "batch_size": Limit("batch size", 1, 64),
    "batch_count": Limit("batch count", 1, 1000),
    "clip_skip": Limit("clip skip", 1, 12),
    "seed": Limit("seed", -1, MAX_SEED_VALUE),
    "denoising_strength": Limit("denoising strength", 0, 1, 0.01, lo_open=True),
    "hires_scale": Limit("hires scale", 1, 4, 0.05),
    "hires_steps": Limit("hires steps", 0, 150),
    "hires_resize_x": Limit("hires resize x", 64, 4096, 8, zero_ok=True),
    "hires_resize_y": Limit("hires resize y", 64, 4096, 8, zero_ok=True),
}
_SIZE_FIELDS = ("width", "height", "hires_resize_x", "hires_resize_y")


def split_sampler_name(name: str, schedule: str | None = None) -> tuple[str, str]:
    """Accept `DPM++ 2M Karras` (A1111 < 1.9), `DPM++ 2M` + `Schedule type: Karras`, aliases (`k_dpmpp_2m`).

    Returns the canonical (sampler, schedule). Unknown names raise InvalidParameter listing the valid ones.
    """
    name = (name or "").strip()
    sched_in = (schedule or "Automatic").strip()
    sched = canonical_schedule(sched_in)
    if sched is None:
        raise InvalidParameter(f"unknown schedule type {sched_in!r}; valid: {', '.join(SCHEDULES)}")
    found = canonical_sampler(name)
    combined = None
    if found is None and name.lower() in _OLD_COMBINED_ALIASES:
        found, combined = _OLD_COMBINED_ALIASES[name.lower()]
    if found is None:
        # A1111 get_sampler_and_scheduler: a trailing schedule label, name or alias is the schedule.
        for label, aliases in SCHEDULE_ALIASES.items():
            for option in (label, *aliases):
                if label != "Automatic" and name.endswith(" " + option) and canonical_sampler(name[: -len(option) - 1]):
                    found, combined = canonical_sampler(name[: -len(option) - 1]), label
                    break
            if combined:
                break
    if found is None:
        raise InvalidParameter(f"unknown sampler {name!r}; valid samplers: {', '.join(SAMPLERS)} "
                               f"(optionally followed by a schedule: {', '.join(SCHEDULES[1:])})")
    if combined is not None:
        if schedule and sched not in ("Automatic", combined):
            raise InvalidParameter(f"sampler {name!r} conflicts with schedule type {sched_in!r}")
        sched = combined
    return found, sched


def resolve_schedule(sampler: str, schedule: str) -> str:
    """The concrete schedule a sampler runs on ("Automatic" resolved)."""
    if schedule != "Automatic":
        return schedule
    return DEFAULT_SCHEDULE.get(sampler, "Uniform")


def _check_range(name: str, value, lo, hi, *, lo_open: bool = False) -> None:
    ok = (value > lo if lo_open else value >= lo) and value <= hi
    if not ok:
        left = "(" if lo_open else "["
        raise InvalidParameter(f"{name} must be in {left}{lo}, {hi}], got {value!r}")


def _check_size(name: str, value: int) -> None:
    lim = LIMITS[name.replace(" ", "_")]
    if not isinstance(value, int) or value % lim.step or not lim.lo <= value <= lim.hi:
        raise InvalidParameter(f"{lim.label} must be a multiple of {lim.step} between {lim.lo} and {lim.hi}, "
                               f"got {value!r}")


def _check_choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise InvalidParameter(f"unknown {name} {value!r}; valid: {', '.join(allowed)}")


# Sampler option fields: (name, lowest, highest), A1111's setting ranges (beta: its slider's).
_OPTION_RANGES: tuple[tuple[str, float, float], ...] = (
    ("eta", 0, 1), ("eta_ddim", 0, 1), ("s_churn", 0, 100), ("s_tmin", 0, 10), ("s_tmax", 0, 999),
    ("s_noise", 0, 1.1), ("sigma_min", 0, 1000), ("sigma_max", 0, 1000), ("rho", 0, 100),
    ("beta_alpha", 0.01, 1), ("beta_beta", 0.01, 1), ("s_min_uncond", 0, 15),
    ("token_merging_ratio", 0, 0.9), ("token_merging_ratio_hr", 0, 0.9),
)


@dataclass(frozen=True)
class GenerationParams:
    prompt: str = ""
    negative_prompt: str = ""
    steps: int = 20
    sampler: str = "DPM++ 2M"
    schedule: str = "Automatic"
    cfg_scale: float = 7.0
    seed: int = -1
    # A1111's variation seed ("Extra"), seed resize and eta noise seed delta (ENSD); 0 strength / 0 sizes: off.
    subseed: int = -1
    subseed_strength: float = 0.0
    seed_resize_from_w: int = 0
    seed_resize_from_h: int = 0
    eta_noise_seed_delta: int = 0
    width: int = 512
    height: int = 512
    batch_size: int = 1
    batch_count: int = 1
    clip_skip: int = 1
    rng: str = "GPU"
    emphasis: str = "Original"
    prompt_syntax: str = "A1111"
    # Hires fix (A1111 txt2img). denoising_strength only matters when it is on.
    enable_hires: bool = False
    hires_scale: float = 2.0
    hires_resize_x: int = 0
    hires_resize_y: int = 0
    hires_steps: int = 0
    hires_upscaler: str = "Latent"
    hires_sampler: str | None = None  # None: same as the first pass
    hires_prompt: str = ""  # "": same as the first pass
    hires_negative_prompt: str = ""
    denoising_strength: float = 0.7
    # Model selection by name inside the configured folders (None: the current / first one).
    checkpoint: str | None = None
    vae: str = "Automatic"  # "Automatic" (A1111's sidecar rule), "None" (the checkpoint's own) or a file name
    hires_schedule: str | None = None  # None: the first pass's schedule type (A1111 "Use same scheduler")
    # Sampler options that A1111 keeps in its settings and infotexts carry; defaults are A1111's. Each one only
    # matters for the samplers/schedules that take it (sampling.options says which).
    eta: float = 1.0  # "Eta": ancestral/SDE samplers (A1111 eta_ancestral)
    eta_ddim: float = 0.0  # "Eta DDIM"
    s_churn: float = 0.0  # "Sigma churn" (Euler, Heun, DPM2)
    s_tmin: float = 0.0  # "Sigma tmin"
    s_tmax: float = 0.0  # "Sigma tmax"; 0 means infinity
    s_noise: float = 1.0  # "Sigma noise"
    sigma_min: float = 0.0  # "Schedule min sigma"; 0: the model's
    sigma_max: float = 0.0  # "Schedule max sigma"; 0: the model's
    rho: float = 0.0  # "Schedule rho"; 0: the schedule's own (Karras 7, Polyexponential 1)
    beta_alpha: float = 0.6  # "Beta schedule alpha"
    beta_beta: float = 0.6  # "Beta schedule beta"
    s_min_uncond: float = 0.0  # "NGMS": skip the negative prompt below this sigma on every other step
    pad_conds: bool = False  # "Pad conds": pad cond/uncond to one length with the empty prompt
    pad_conds_v0: bool = False  # "Pad conds v0": A1111 < 1.6 DDIM/PLMS: repeat/truncate the uncond to the cond
    downcast_alphas_cumprod: bool = False  # "Downcast alphas_cumprod": fp16 alphas, as A1111 < 1.7
    token_merging_ratio: float = 0.0  # "Token merging ratio" (ToMe)
    token_merging_ratio_hr: float = 0.0  # "Token merging ratio hr" (ToMe in the hires pass)

    def __post_init__(self) -> None:
        sampler, schedule = split_sampler_name(self.sampler, self.schedule)
        object.__setattr__(self, "sampler", sampler)
        object.__setattr__(self, "schedule", schedule)
        hires_schedule = self.hires_schedule
        if hires_schedule is not None:
            hires_schedule = canonical_schedule(hires_schedule)
            if hires_schedule is None:
                raise InvalidParameter(f"unknown hires schedule type {self.hires_schedule!r}; "
                                       f"valid: {', '.join(SCHEDULES)}")
        if self.hires_sampler is not None:
            hs, hsched = split_sampler_name(self.hires_sampler)
            if hsched != "Automatic" and hires_schedule is None:  # `Hires sampler: DPM++ 2M Karras`
                hires_schedule = hsched
            object.__setattr__(self, "hires_sampler", None if hs == sampler else hs)
        hs = self.hires_sampler or sampler
        if hires_schedule is not None and resolve_schedule(hs, hires_schedule) == resolve_schedule(hs, schedule):
            hires_schedule = None  # the same as "use the first pass's schedule type"
        object.__setattr__(self, "hires_schedule", hires_schedule)
        for name in ("seed_resize_from_w", "seed_resize_from_h"):
            if getattr(self, name) == -1:  # A1111's API default for "off"
                object.__setattr__(self, name, 0)
        self._validate()

    def _validate(self) -> None:
        _check_size("width", self.width)
        _check_size("height", self.height)
        for name in ("steps", "batch_size", "batch_count", "clip_skip", "seed", "hires_steps",
                     "hires_resize_x", "hires_resize_y", "subseed", "seed_resize_from_w", "seed_resize_from_h",
                     "eta_noise_seed_delta"):
            if not isinstance(getattr(self, name), int) or isinstance(getattr(self, name), bool):
                raise InvalidParameter(f"{name} must be a whole number, got {getattr(self, name)!r}")
        for name, lim in LIMITS.items():
            if name not in _SIZE_FIELDS:
                _check_range(lim.label, getattr(self, name), lim.lo, lim.hi, lo_open=lim.lo_open)
        if self.seed + self.batch_size * self.batch_count - 1 > MAX_SEED_VALUE:
            raise InvalidParameter(f"seed {self.seed} + {self.batch_size * self.batch_count - 1} (one seed per image) "
                                   f"passes the largest seed, {MAX_SEED_VALUE}")
        _check_choice("RNG source", self.rng, RNG_SOURCES)
        self._validate_seed_extras()
        _check_choice("emphasis mode", self.emphasis, EMPHASIS_MODES)
        _check_choice("prompt syntax", self.prompt_syntax, PROMPT_SYNTAXES)
        check_upscaler_name(self.hires_upscaler)
        for name in ("hires_resize_x", "hires_resize_y"):
            v = getattr(self, name)
            if v:
                _check_size(name.replace("_", " "), v)
        for name, lo, hi in _OPTION_RANGES:
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or v != v:
                raise InvalidParameter(f"{name.replace('_', ' ')} must be a number, got {v!r}")
            _check_range(name.replace("_", " "), v, lo, hi)
        if self.sigma_min and self.sigma_max and self.sigma_min >= self.sigma_max:
            raise InvalidParameter(f"schedule min sigma ({self.sigma_min}) must be below schedule max sigma "
                                   f"({self.sigma_max})")
        for name in ("pad_conds", "pad_conds_v0", "downcast_alphas_cumprod"):
            if not isinstance(getattr(self, name), bool):
                raise InvalidParameter(f"{name.replace('_', ' ')} must be true or false, got {getattr(self, name)!r}")
        if self.enable_hires:
            # The latent is size // 8, so a target like 1075 runs as 1072: check what will run.
            for name, v in zip(("hires width", "hires height"), self.hires_size):
                if not 64 <= v // 8 * 8 <= 4096:
                    raise InvalidParameter(f"{name} must end up between 64 and 4096, got {v}")

    def _validate_seed_extras(self) -> None:
        _check_range("variation seed", self.subseed, -1, MAX_SEED)
        _check_range("variation seed strength", self.subseed_strength, 0, 1)
        _check_range("eta noise seed delta (ENSD)", self.eta_noise_seed_delta, 0, MAX_ENSD)
        w, h = self.seed_resize_from_w, self.seed_resize_from_h
        for name, v in (("seed resize from width", w), ("seed resize from height", h)):
            if v and not 64 <= v <= 4096:
                raise InvalidParameter(f"{name} must be 0 (off) or between 64 and 4096, got {v!r}")
        if bool(w) != bool(h):
            raise InvalidParameter(f"seed resize from needs both a width and a height (or neither), got {w}x{h}")

    # -- derived values -------------------------------------------------------------------------------------
    @property
    def sampler_schedule(self) -> str:
        """The concrete schedule ("Automatic" resolved)."""
        return resolve_schedule(self.sampler, self.schedule)

    @property
    def hires_size(self) -> tuple[int, int]:
        """Target size of the hires pass, A1111's arithmetic: int(W*scale) x int(H*scale), or resize-to.

        With only one of resize x/y given, the other follows the aspect ratio (A1111 does the same)."""
        rx, ry = self.hires_resize_x, self.hires_resize_y
        if rx == 0 and ry == 0:
            return int(self.width * self.hires_scale), int(self.height * self.hires_scale)
        if ry == 0:
            ry = rx * self.height // self.width
        elif rx == 0:
            rx = ry * self.width // self.height
        return rx, ry

    @property
    def hires_steps_effective(self) -> int:
        return self.hires_steps or self.steps

    def replace(self, **changes) -> "GenerationParams":
        return dataclasses.replace(self, **changes)

    @property
    def uses_variation(self) -> bool:
        return self.subseed_strength != 0

    @property
    def uses_seed_resize(self) -> bool:
        return self.seed_resize_from_w > 0 and self.seed_resize_from_h > 0

    def image_seeds(self, index: int) -> tuple[int, int]:
        """(seed, variation seed) of image `index` of the job, as A1111 numbers them: seed + index, or with a
        variation strength the same seed for every image and variation seed + index."""
        if self.uses_variation:
            return self.seed, self.subseed + index
        return self.seed + index, self.subseed

    def with_seed_resolved(self, rand: random.Random | None = None) -> "GenerationParams":
        """-1 draws a random seed in [0, 4294967294] as A1111 does (the variation seed too, when it is used)."""
        changes = {}
        if self.seed == -1:
            changes["seed"] = (rand or random).randint(0, MAX_SEED)
        if self.subseed == -1 and self.uses_variation:
            changes["subseed"] = (rand or random).randint(0, MAX_SEED)
        return self.replace(**changes) if changes else self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "GenerationParams":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise InvalidParameter(f"unknown parameter(s) {', '.join(unknown)}; valid: {', '.join(sorted(names))}")
        return cls(**data)

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))
