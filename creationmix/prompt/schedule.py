"""A1111 prompt editing and composition: `[from:to:when]`, `[to:when]`, `[from::when]`, `[a|b]`, `AND`.

`get_learned_conditioning_prompt_schedules` returns, per prompt, [[end_at_step, text], ...] exactly as A1111's
function of the same name (>= 1.6 scheduling: a `when` written with a dot is a fraction of the steps, one
without a dot is a step number; with hires steps, integers count on from the first pass and fractions from
1.0 on are fractions of the hires pass). `use_old_scheduling=True` gives the < 1.6 rule (`when` < 1 is a
fraction). Emphasis brackets pass through untouched: the attention parser reads them afterwards.
A prompt the grammar rejects is used as is for all steps, as A1111 does.
"""
from __future__ import annotations

import re
from functools import lru_cache

import lark

from ..errors import InvalidParameter

# The language A1111 accepts (same structure, so lark's Earley parser resolves ambiguities the same way):
# stray brackets/colons at the top level are literal text; `emphasized` keeps its bracket characters.
_GRAMMAR = r"""
!start: (prompt | /[][():]/+)*
prompt: (emphasized | scheduled | alternate | plain | WHITESPACE)*
!emphasized: "(" prompt ")"
        | "(" prompt ":" prompt ")"
        | "[" prompt "]"
scheduled: "[" [prompt ":"] prompt ":" [WHITESPACE] NUMBER [WHITESPACE] "]"
alternate: "[" prompt ("|" [prompt])+ "]"
WHITESPACE: /\s+/
plain: /([^\\\[\]():|]|\\.)+/
%import common.SIGNED_NUMBER -> NUMBER
"""


@lru_cache(maxsize=1)
def _parser() -> lark.Lark:
    return lark.Lark(_GRAMMAR)


def _resolve_when(number: str, steps: int, int_offset: int, flt_offset: float, old: bool) -> int:
    value = float(number)
    if value != value or value in (float("inf"), float("-inf")):
        # int() of it would raise OverflowError deep in sampling (A1111 crashes the same way): name the number.
        raise InvalidParameter(f"prompt editing: step {number!r} in [from:to:step] is not a finite number")
    if old:
        value = value * steps if value < 1 else value
    elif "." in number:
        value = (value - flt_offset) * steps
    else:
        value = value - int_offset
    return min(steps, int(value))


def _collect(tree: lark.Tree, steps: int, int_offset: int, flt_offset: float, old: bool) -> tuple[list[int], dict]:
    """Every step at which the text may change, and the resolved `when` of each scheduled node."""
    ends = {steps}
    whens: dict[int, int] = {}
    for node in tree.iter_subtrees():
        if node.data == "scheduled":
            when = _resolve_when(str(node.children[-2]), steps, int_offset, flt_offset, old)
            whens[id(node)] = when
            if when >= 1:
                ends.add(when)
        elif node.data == "alternate":
            ends.update(range(1, steps + 1))
    return sorted(ends), whens


def _render(node, step: int, whens: dict) -> str:
    if node is None:
        return ""
    if isinstance(node, lark.Token):
        return str(node)
    if node.data == "scheduled":
        before, after = node.children[0], node.children[1]
        return _render(before if step <= whens[id(node)] else after, step, whens)
    if node.data == "alternate":
        options = node.children
        return _render(options[(step - 1) % len(options)], step, whens)
    return "".join(_render(child, step, whens) for child in node.children)


def get_learned_conditioning_prompt_schedules(prompts: list[str], base_steps: int, hires_steps: int | None = None,
                                              use_old_scheduling: bool = False) -> list[list[list]]:
    """For each prompt: [[end_at_step, text], ...], sorted, the last end being the step count.

    >>> get_learned_conditioning_prompt_schedules(["a [b:c:3]"], 10)
    [[[3, 'a b'], [10, 'a c']]]
    """
    if hires_steps is None or use_old_scheduling:
        int_offset, flt_offset, steps = 0, 0.0, base_steps
    else:
        int_offset, flt_offset, steps = base_steps, 1.0, hires_steps

    out = []
    for prompt in prompts:
        entries = _schedule(prompt, steps, int_offset, flt_offset, use_old_scheduling)
        out.append([list(entry) for entry in entries])
    return out


@lru_cache(maxsize=256)
def _schedule(prompt: str, steps: int, int_offset: int, flt_offset: float, old: bool) -> tuple[tuple, ...]:
    # A pure function of its arguments, and lark's Earley parse of a long card prompt costs ~50-100 ms on 2 CPU
    # cores: a sweep or a previews job asks for the same text (LoRA tags stripped) once per image.
    if "[" not in prompt:
        # Only `[` opens a scheduled or alternate node, and every parse renders back to its input, so without
        # one the answer is the text itself (the corpus test checks this against the parse). A new card prompt
        # would otherwise pay the Earley parse, ~270 ms for lora-preview's, on its first image.
        return ((steps, prompt),)
    try:
        tree = _parser().parse(prompt)
    except lark.exceptions.LarkError:
        return ((steps, prompt),)
    ends, whens = _collect(tree, steps, int_offset, flt_offset, old)
    return tuple((end, _render(tree, end, whens)) for end in ends)


_AND = re.compile(r"\bAND\b")
_WEIGHT = re.compile(r"^((?:\s|.)*?)(?:\s*:\s*([-+]?(?:\d+\.?|\d*\.\d+)))?\s*$")


def split_and(prompt: str) -> list[tuple[str, float]]:
    """`a AND b :0.5` -> [("a", 1.0), (" b", 0.5)] (A1111 keeps leading spaces, drops trailing ones)."""
    parts = []
    for sub in _AND.split(prompt):
        m = _WEIGHT.search(sub)
        if m is None:
            parts.append((sub, 1.0))
        else:
            text, weight = m.groups()
            parts.append((text, float(weight) if weight is not None else 1.0))
    return parts


def get_multicond_prompt_list(prompts: list[str]) -> tuple[list[list[tuple[int, float]]], list[str], dict[str, int]]:
    """A1111's AND split: (per prompt [(index, weight), ...], unique sub-prompts, {sub-prompt: index})."""
    indexes: list[list[tuple[int, float]]] = []
    flat: list[str] = []
    where: dict[str, int] = {}
    for prompt in prompts:
        row = []
        for text, weight in split_and(prompt):
            if text not in where:
                where[text] = len(flat)
                flat.append(text)
            row.append((where[text], weight))
        indexes.append(row)
    return indexes, flat, where


__all__ = ["get_learned_conditioning_prompt_schedules", "get_multicond_prompt_list", "split_and"]
