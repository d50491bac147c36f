"""GenerationParams: the one frozen object that carries a generation from UI/CLI/infotext to the engine and back.

Torch-free on purpose: the UI and the infotext parser import it. Names (samplers, schedules, upscalers) are
A1111's, so a pasted recipe means the same thing here. The sampling package maps these names to code through
one table and a test checks both lists agree.
"""
from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass, field

from .errors import InvalidParameter

# A1111 >= 1.9 sampler names (the schedule is separate). Order is the UI's order.
SAMPLERS: tuple[str, ...] = (
    "DPM++ 2M",
    "DPM++ SDE",
    "DPM++ 2M SDE",
    "Euler a",
    "Euler",
    "Heun",
    "DPM2",
    "DDIM",
)
SCHEDULES: tuple[str, ...] = ("Automatic", "Karras", "Exponential", "Uniform")
# What "Automatic" means per sampler, as A1111 >= 1.9 defines it.
DEFAULT_SCHEDULE: dict[str, str] = {
    "DPM++ 2M": "Karras",
    "DPM++ SDE": "Karras",
    "DPM++ 2M SDE": "Exponential",
    "DPM2": "Karras",
}
LATENT_UPSCALERS: tuple[str, ...] = (
    "Latent",
    "Latent (antialiased)",
    "Latent (bicubic)",
    "Latent (bicubic antialiased)",
    "Latent (nearest)",
    "Latent (nearest-exact)",
)
UPSCALERS = LATENT_UPSCALERS
RNG_SOURCES: tuple[str, ...] = ("GPU", "CPU")
EMPHASIS_MODES: tuple[str, ...] = ("Original", "No norm", "None")
PROMPT_SYNTAXES: tuple[str, ...] = ("A1111", "Compel")

MAX_SEED = 4294967294


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
    "seed": Limit("seed", -1, MAX_SEED),
    "denoising_strength": Limit("denoising strength", 0, 1, 0.01, lo_open=True),
    "hires_scale": Limit("hires scale", 1, 4, 0.05),
    "hires_steps": Limit("hires steps", 0, 150),
    "hires_resize_x": Limit("hires resize x", 64, 4096, 8, zero_ok=True),
    "hires_resize_y": Limit("hires resize y", 64, 4096, 8, zero_ok=True),
}
_SIZE_FIELDS = ("width", "height", "hires_resize_x", "hires_resize_y")


def split_sampler_name(name: str, schedule: str | None = None) -> tuple[str, str]:
    """Accept both `DPM++ 2M Karras` (A1111 < 1.9) and `DPM++ 2M` + `Schedule type: Karras`.

    Returns the canonical (sampler, schedule). Unknown names raise InvalidParameter listing the valid ones.
    """
    name = (name or "").strip()
    sched = (schedule or "Automatic").strip()
    for cand in SCHEDULES[1:]:
        suffix = " " + cand
        if name.endswith(suffix) and name[: -len(suffix)] in SAMPLERS:
            if schedule and sched not in ("Automatic", cand):
                raise InvalidParameter(f"sampler {name!r} conflicts with schedule type {sched!r}")
            name, sched = name[: -len(suffix)], cand
            break
    if name not in SAMPLERS:
        raise InvalidParameter(f"unknown sampler {name!r}; valid samplers: {', '.join(SAMPLERS)} "
                               f"(optionally followed by a schedule: {', '.join(SCHEDULES[1:])})")
    if sched not in SCHEDULES:
        raise InvalidParameter(f"unknown schedule type {sched!r}; valid: {', '.join(SCHEDULES)}")
    return name, sched


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


@dataclass(frozen=True)
class GenerationParams:
    prompt: str = ""
    negative_prompt: str = ""
    steps: int = 20
    sampler: str = "DPM++ 2M"
    schedule: str = "Automatic"
    cfg_scale: float = 7.0
    seed: int = -1
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
    # Infotext keys we do not interpret, kept so writer(parser(x)) keeps them.
    extra: tuple[tuple[str, str], ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        sampler, schedule = split_sampler_name(self.sampler, self.schedule)
        object.__setattr__(self, "sampler", sampler)
        object.__setattr__(self, "schedule", schedule)
        if self.hires_sampler is not None:
            hs, _ = split_sampler_name(self.hires_sampler)
            object.__setattr__(self, "hires_sampler", None if hs == sampler else hs)
        object.__setattr__(self, "extra", tuple((str(k), str(v)) for k, v in self.extra))
        self._validate()

    def _validate(self) -> None:
        _check_size("width", self.width)
        _check_size("height", self.height)
        for name in ("steps", "batch_size", "batch_count", "clip_skip", "seed", "hires_steps",
                     "hires_resize_x", "hires_resize_y"):
            if not isinstance(getattr(self, name), int) or isinstance(getattr(self, name), bool):
                raise InvalidParameter(f"{name} must be a whole number, got {getattr(self, name)!r}")
        for name, lim in LIMITS.items():
            if name not in _SIZE_FIELDS:
                _check_range(lim.label, getattr(self, name), lim.lo, lim.hi, lo_open=lim.lo_open)
        _check_choice("RNG source", self.rng, RNG_SOURCES)
        _check_choice("emphasis mode", self.emphasis, EMPHASIS_MODES)
        _check_choice("prompt syntax", self.prompt_syntax, PROMPT_SYNTAXES)
        _check_choice("hires upscaler", self.hires_upscaler, UPSCALERS)
        for name in ("hires_resize_x", "hires_resize_y"):
            v = getattr(self, name)
            if v:
                _check_size(name.replace("_", " "), v)
        if self.enable_hires:
            # The latent is size // 8, so a target like 1075 runs as 1072: check what will run.
            for name, v in zip(("hires width", "hires height"), self.hires_size):
                if not 64 <= v // 8 * 8 <= 4096:
                    raise InvalidParameter(f"{name} must end up between 64 and 4096, got {v}")

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

    def with_seed_resolved(self, rand: random.Random | None = None) -> "GenerationParams":
        """-1 draws a random seed in [0, 4294967294] as A1111 does."""
        if self.seed != -1:
            return self
        return self.replace(seed=(rand or random).randint(0, MAX_SEED))

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["extra"] = [list(kv) for kv in self.extra]
        return d

    @classmethod
    def from_dict(cls, data: dict) -> "GenerationParams":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise InvalidParameter(f"unknown parameter(s) {', '.join(unknown)}; valid: {', '.join(sorted(names))}")
        data = dict(data)
        if "extra" in data:
            data["extra"] = tuple(tuple(kv) for kv in data["extra"])
        return cls(**data)

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))
