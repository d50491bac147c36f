"""Prompt + negative prompt -> the conditioning the sampler asks for at each model call.

A1111 syntax: the prompt splits on AND (each part with its `:weight`), each part and the negative prompt get
their prompt-editing schedule, and each schedule's texts are encoded together (as A1111 batches them, which
matters for "Original" emphasis). `at(step)` picks, for every part, the first entry whose end_at_step >= step,
A1111's reconstruct_multicond_batch; `step` is the index of the model call (0-based), so `[a:b:10]` uses `a`
up to and including call 10. The negative prompt is never split on AND (A1111 does not either).

Compel syntax: compel builds one tensor per prompt (its own weighting, .blend(), .and()); no schedules.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..errors import InvalidParameter
from ..params import PROMPT_SYNTAXES
from .embeddings import Embedding, ti_hashes
from .encoder import PromptEncoder
from .schedule import get_learned_conditioning_prompt_schedules, get_multicond_prompt_list


@dataclass(frozen=True)
class ScheduledCond:
    end_at_step: int
    cond: torch.Tensor  # (1, L, D)


def _pick(schedule: list[ScheduledCond], step: int) -> torch.Tensor:
    for entry in schedule:
        if step <= entry.end_at_step:
            return entry.cond
    return schedule[0].cond  # past every end: A1111 falls back to the first entry


@dataclass
class PromptConditioning:
    parts: list[tuple[list[ScheduledCond], float]]  # AND parts: (schedule, weight)
    uncond: list[ScheduledCond]
    used_embeddings: dict[str, Embedding] = field(default_factory=dict)
    syntax: str = "A1111"

    def at(self, step: int) -> tuple[list[tuple[torch.Tensor, float]], torch.Tensor]:
        """(cond_parts [(Tensor (1, L, D), weight), ...], uncond Tensor (1, L', D)) for model call `step`."""
        return [(_pick(s, step), w) for s, w in self.parts], _pick(self.uncond, step)

    @property
    def ti_hashes(self) -> dict[str, str]:
        """{name: sha256[:12]} of the embeddings used in the prompt or the negative prompt."""
        return ti_hashes(self.used_embeddings)

    @property
    def embeddings_used(self) -> set[str]:
        return set(self.used_embeddings)

    @property
    def switch_steps(self) -> list[int]:
        """Every step index after which some conditioning changes (for tests and debugging)."""
        ends = {e.end_at_step for s, _ in self.parts for e in s} | {e.end_at_step for e in self.uncond}
        return sorted(ends)


def _schedule_conds(encoder: PromptEncoder, text: str, steps: int, hires_steps, clip_skip: int, emphasis: str,
                    used: dict, use_old_scheduling: bool) -> list[ScheduledCond]:
    [schedule] = get_learned_conditioning_prompt_schedules([text], steps, hires_steps, use_old_scheduling)
    z = encoder.encode_batch([t for _, t in schedule], clip_skip=clip_skip, emphasis=emphasis)
    used.update(encoder.used_embeddings)
    return [ScheduledCond(end, z[i:i + 1]) for i, (end, _) in enumerate(schedule)]


def build_conditioning(encoder: PromptEncoder, prompt: str, negative_prompt: str, steps: int, *, clip_skip: int = 1,
                       emphasis: str = "Original", hires_steps: int | None = None, syntax: str = "A1111",
                       use_old_scheduling: bool = False) -> PromptConditioning:
    """Encode everything a generation needs up front. `steps` counts model calls of the pass (A1111 passes the
    sampler's total steps); for the hires pass give the first-pass steps and `hires_steps`."""
    if syntax not in PROMPT_SYNTAXES:
        raise InvalidParameter(f"unknown prompt syntax {syntax!r}; valid: {', '.join(PROMPT_SYNTAXES)}")
    if steps < 1:
        raise InvalidParameter(f"steps must be at least 1, got {steps}")
    if syntax == "Compel":
        from .compel_adapter import compel_conditioning
        cond, uncond, used = compel_conditioning(encoder, prompt, negative_prompt, clip_skip=clip_skip)
        last = hires_steps or steps
        return PromptConditioning([([ScheduledCond(last, cond)], 1.0)], [ScheduledCond(last, uncond)],
                                  used_embeddings=used, syntax=syntax)

    used: dict[str, Embedding] = {}
    indexes, flat, _ = get_multicond_prompt_list([prompt])
    by_text: dict[str, list[ScheduledCond]] = {}
    for text in flat:
        by_text[text] = _schedule_conds(encoder, text, steps, hires_steps, clip_skip, emphasis, used,
                                        use_old_scheduling)
    parts = [(by_text[flat[i]], weight) for i, weight in indexes[0]]
    uncond = _schedule_conds(encoder, negative_prompt, steps, hires_steps, clip_skip, emphasis, used,
                             use_old_scheduling)
    encoder.used_embeddings = dict(used)
    return PromptConditioning(parts, uncond, used_embeddings=used, syntax=syntax)


def prompt_token_count(encoder: PromptEncoder, text: str, steps: int = 20,
                       emphasis: str = "Original") -> tuple[int, int]:
    """A1111's UI counter with a loaded model: the longest AND part / schedule variant."""
    from .encoder import target_token_count
    _, flat, _ = get_multicond_prompt_list([text])
    count = max(encoder.tokenize_line(t, emphasis)[1]
                for sched in get_learned_conditioning_prompt_schedules(flat, steps) for _, t in sched)
    return count, target_token_count(count)


__all__ = ["build_conditioning", "PromptConditioning", "ScheduledCond", "prompt_token_count"]
