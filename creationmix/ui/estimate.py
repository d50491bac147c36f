"""How long and how much memory a run will take, from its latent size and the step rate measured on this device.

Torch-free. A UNet step costs about the same per latent pixel at a given size, so one measured first-pass rate
(seconds per step per latent pixel) prices both passes: a hires step costs that rate x its larger latent area.
Self-attention grows faster than the area, so the figures are lower bounds for sizes well above the measured one.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

from ..jobs import ProgressEvent
from ..params import GenerationParams

# What "the usual" is for SD 1.5 per step: up to two 2048x2048 hires images (or eight 1024x1024 first passes).
USUAL_LATENT_PIXELS = 2 * (2048 // 8) * (2048 // 8)
FAR_OVER_SECONDS = 15 * 60  # ... or when the estimate says more than 15 minutes
# Rough UNet activation memory per latent pixel and image (cond + uncond, memory-efficient attention, fp16) and
# the weights of SD 1.5 (UNet + VAE + CLIP, fp16).
ACTIVATION_BYTES_PER_LATENT_PIXEL = 160_000
WEIGHTS_BYTES = 2_100_000_000


def latent_area(width: int, height: int) -> int:
    return (width // 8) * (height // 8)


def passes(p: GenerationParams) -> list[tuple[str, int, int]]:
    """(pass name, sampler steps, latent area) for one batch."""
    out = [("first", p.steps, latent_area(p.width, p.height))]
    if p.enable_hires:
        out.append(("hires", p.hires_steps_effective, latent_area(*p.hires_size)))
    return out


def work_units(p: GenerationParams) -> float:
    """The whole run in first-pass-latent-pixel steps (batch_size images share a step)."""
    return p.batch_count * sum(steps * area for _, steps, area in passes(p))


@dataclass
class StepRate:
    """Seconds per step per latent pixel of the batch, measured on this device (None until a run was seen)."""

    s_per_unit: float | None = None

    def update(self, seconds: float, steps: int, area: int, batch_size: int) -> None:
        if steps <= 0 or area <= 0 or seconds <= 0:
            return
        rate = seconds / (steps * area * max(1, batch_size))
        # Keep the latest measure but damp single noisy runs (a model load in the first step, ...).
        self.s_per_unit = rate if self.s_per_unit is None else 0.5 * (self.s_per_unit + rate)


@dataclass(frozen=True)
class Cost:
    seconds: float | None
    memory_bytes: int
    far_over: bool
    reason: str

    def text(self) -> str:
        mem = f"~{self.memory_bytes / 2**30:.1f} GB"
        when = f", ~{format_eta(self.seconds)}" if self.seconds is not None else ""
        return f"Estimate: {mem}{when} (at least)"


def estimate(p: GenerationParams, rate: StepRate) -> Cost:
    peak_area = max(area for _, _, area in passes(p))
    memory = WEIGHTS_BYTES + ACTIVATION_BYTES_PER_LATENT_PIXEL * peak_area * p.batch_size
    seconds = None
    if rate.s_per_unit is not None:
        seconds = work_units(p) * p.batch_size * rate.s_per_unit
    usual = USUAL_LATENT_PIXELS
    reason = ""
    if peak_area * p.batch_size > usual:
        reason = (f"{peak_area * 64 * p.batch_size / 2**20:.0f} megapixels per step is far over the usual "
                  f"({usual * 64 / 2**20:.0f})")
    elif seconds is not None and seconds > FAR_OVER_SECONDS:
        reason = f"about {format_eta(seconds)} at the speed measured on this device"
    return Cost(seconds, memory, bool(reason), reason)


def format_eta(seconds: float) -> str:
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"
    return f"{s // 60}:{s % 60:02d}"


class EtaTracker:
    """ETA over every pass and batch still to run, priced by the first-pass rate x each pass's latent area."""

    def __init__(self, p: GenerationParams, rate: StepRate | None = None, clock=time.monotonic):
        self.p = p
        self.plan = passes(p)
        self.rate = rate or StepRate()
        self.clock = clock
        self._first_start: float | None = None
        self._measured: float | None = None  # this run's seconds per latent-pixel step

    def _done_units(self, ev: ProgressEvent) -> float:
        per_batch = sum(steps * area for _, steps, area in self.plan)
        done = ev.image_index * per_batch
        for name, steps, area in self.plan:
            if name == ev.pass_name:
                done += ev.step * area
                break
            done += steps * area
        return done

    def update(self, ev: ProgressEvent) -> float | None:
        """Seconds left after this event (None until a rate is known)."""
        now = self.clock()
        area = self.plan[0][2]
        if ev.pass_name == "first" and ev.image_index == 0:
            if ev.step == 1 or self._first_start is None:
                # The first step pays model loading and warm-up: measure from its end.
                self._first_start = now
            elif ev.step > 1:
                self._measured = (now - self._first_start) / ((ev.step - 1) * area)
        rate = self._measured
        if rate is None and self.rate.s_per_unit is not None:
            rate = self.rate.s_per_unit * self.p.batch_size
        if rate is None:
            return None
        total = sum(steps * a for _, steps, a in self.plan) * self.p.batch_count
        return max(0.0, (total - self._done_units(ev)) * rate)

    def fraction(self, ev: ProgressEvent) -> float:
        """How much of the whole run is done after this event, in priced steps (0..1)."""
        total = sum(steps * a for _, steps, a in self.plan) * self.p.batch_count
        return min(1.0, self._done_units(ev) / total) if total else 1.0

    def finish(self) -> None:
        """Fold this run's rate into the device's (for the next run's estimate)."""
        if self._measured is not None:
            self.rate.update(self._measured, 1, 1, self.p.batch_size)
