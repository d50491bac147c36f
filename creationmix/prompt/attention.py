"""A1111's emphasis syntax: `(text)`, `[text]`, `(text:1.3)`, escapes and BREAK -> [[text, weight], ...].

Behaviour follows modules/prompt_parser.parse_prompt_attention so a pasted A1111 prompt gets the same weights:
`(` multiplies by 1.1, `[` divides by 1.1, `(x:w)` multiplies by w, nesting multiplies, brackets left open
apply up to the end of the prompt, a closing bracket with nothing open is plain text, `\\(` `\\)` `\\[` `\\]`
`\\\\` are literal characters, and `(a:b)` (no number) keeps `a:b` as text with the 1.1 of its parentheses.
BREAK inside brackets is scaled like any text, as A1111 does: `(a BREAK b)` gives ["BREAK", -1.1], which the
encoder then reads as the word "break" at weight -1.1 (not a chunk break). `(a:1.2.3)` is an error (A1111
crashes on it).
"""
from __future__ import annotations

import re

from ..errors import InvalidParameter

ROUND_MULT = 1.1
SQUARE_MULT = 1 / 1.1
BREAK_MARK = "BREAK"

# One token per alternative, in priority order (the order matters: escapes before brackets, the weighted
# close `:1.2)` before a bare `:`).
_TOKEN = re.compile(
    r"""
    \\[()\[\]\\]           # escaped bracket or backslash -> literal character
    | \\                   # lone backslash (dropped)
    | [(\[]                # openers
    | :\s*([+-]?[.\d]+)\s*\)   # `:weight)` closes a round bracket with that weight
    | [)\]]                # closers
    | [^\\()\[\]:]+        # plain text run
    | :                    # a colon that is not a weight
    """,
    re.X,
)
_BREAK = re.compile(r"\s*\bBREAK\b\s*", re.S)


def parse_prompt_attention(text: str) -> list[list]:
    """Split `text` into [[fragment, weight], ...]; BREAK becomes ["BREAK", -1]. Runs of equal weight merge
    (a BREAK marker too, exactly as A1111 merges them).

    >>> parse_prompt_attention("an (important) word")
    [['an ', 1.0], ['important', 1.1], [' word', 1.0]]
    """
    res: list[list] = []
    open_round: list[tuple[int, int]] = []  # (index in res, position in text) per open `(`
    open_square: list[int] = []

    def scale_from(start: int, factor: float) -> None:
        for item in res[start:]:
            item[1] *= factor

    def add_text(fragment: str) -> None:
        for i, part in enumerate(_BREAK.split(fragment)):
            if i:
                res.append([BREAK_MARK, -1])
            res.append([part, 1.0])

    for m in _TOKEN.finditer(text):
        tok, weight = m.group(0), m.group(1)
        if tok.startswith("\\"):
            res.append([tok[1:], 1.0])  # a lone backslash vanishes, as in A1111
        elif tok == "(":
            open_round.append((len(res), m.start()))
        elif tok == "[":
            open_square.append(len(res))
        elif weight is not None and open_round:
            start, at = open_round.pop()
            try:
                factor = float(weight)
            except ValueError:  # `(a:1.2.3)`: A1111's float() raises here and the generation fails
                raise InvalidParameter(f"prompt: {weight!r} is not a weight in {text[at:m.end()]!r}; a weight is "
                                       f"one number, e.g. (word:1.2)") from None
            scale_from(start, factor)
        elif tok == ")" and open_round:
            scale_from(open_round.pop()[0], ROUND_MULT)
        elif tok == "]" and open_square:
            scale_from(open_square.pop(), SQUARE_MULT)
        else:
            add_text(tok)

    for pos, _ in open_round:
        scale_from(pos, ROUND_MULT)
    for pos in open_square:
        scale_from(pos, SQUARE_MULT)

    if not res:
        return [["", 1.0]]

    merged = [res[0]]
    for item in res[1:]:
        if item[1] == merged[-1][1]:
            merged[-1][0] += item[0]
        else:
            merged.append(item)
    return merged


__all__ = ["parse_prompt_attention", "BREAK_MARK", "ROUND_MULT", "SQUARE_MULT"]
