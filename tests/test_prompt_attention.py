"""A1111's emphasis parser: the documented examples verbatim, plus BREAK, escapes and literal weights."""
from __future__ import annotations

import pytest

from creationmix.prompt.attention import parse_prompt_attention


@pytest.mark.parametrize("text, expected", [
    ("normal text", [["normal text", 1.0]]),
    ("an (important) word", [["an ", 1.0], ["important", 1.1], [" word", 1.0]]),
    ("(unbalanced", [["unbalanced", 1.1]]),
    ("\\(literal\\]", [["(literal]", 1.0]]),
    ("(unnecessary)(parens)", [["unnecessaryparens", 1.1]]),
    ("a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).",
     [["a ", 1.0], ["house", 1.5730000000000004], [" ", 1.1], ["on", 1.0], [" a ", 1.1], ["hill", 0.55],
      [", sun, ", 1.1], ["sky", 1.4641000000000006], [".", 1.1]]),
])
def test_a1111_examples_exactly(text, expected):
    assert parse_prompt_attention(text) == expected


def test_empty_prompt():
    assert parse_prompt_attention("") == [["", 1.0]]


def test_non_number_weight_stays_literal():
    assert parse_prompt_attention("(a:b)") == [["a:b", 1.1]]
    assert parse_prompt_attention("a:1.2)") == [["a:1.2)", 1.0]]  # nothing open: plain text


def test_weights_and_nesting():
    assert parse_prompt_attention("(a:1.5)") == [["a", 1.5]]
    assert parse_prompt_attention("(a: 0.8 )") == [["a", 0.8]]
    assert parse_prompt_attention("[a]") == [["a", 1 / 1.1]]
    assert parse_prompt_attention("[[a]]")[0][1] == pytest.approx(1 / 1.21)
    assert parse_prompt_attention("((a:2))") == [["a", 2.2]]
    assert parse_prompt_attention("[unbalanced") == [["unbalanced", 1 / 1.1]]
    assert parse_prompt_attention("a ] b )") == [["a ] b )", 1.0]]


def test_escapes():
    assert parse_prompt_attention(r"\(a\) \[b\] c\\d") == [["(a) [b] c\\d", 1.0]]
    assert parse_prompt_attention(r"(\(x\))") == [["(x)", 1.1]]
    assert parse_prompt_attention("a\\b") == [["ab", 1.0]]  # A1111 drops a lone backslash


def test_break():
    assert parse_prompt_attention("a BREAK b") == [["a", 1.0], ["BREAK", -1], ["b", 1.0]]
    assert parse_prompt_attention("a, BREAK, b") == [["a,", 1.0], ["BREAK", -1], [", b", 1.0]]
    # only the upper-case whole word
    assert parse_prompt_attention("a break b BREAKING") == [["a break b BREAKING", 1.0]]
    # inside brackets A1111 scales the marker like any text: it is then the word "BREAK" (test_a1111_deviations)
    assert parse_prompt_attention("(a BREAK b)") == [["a", 1.1], ["BREAK", -1.1], ["b", 1.1]]


def test_equal_weight_runs_merge():
    assert parse_prompt_attention("(a)(b) c (d)") == [["ab", 1.1], [" c ", 1.0], ["d", 1.1]]
