"""Prompt editing, alternation and AND, as A1111's get_learned_conditioning_prompt_schedules returns them."""
from __future__ import annotations

import pytest

from creationmix.prompt.schedule import (get_learned_conditioning_prompt_schedules, get_multicond_prompt_list,
                                         split_and)


def g(prompt, steps=10, hires=None, old=False):
    return get_learned_conditioning_prompt_schedules([prompt], steps, hires, old)[0]


@pytest.mark.parametrize("prompt, expected", [
    ("test", [[10, "test"]]),
    ("a [b:3]", [[3, "a "], [10, "a b"]]),
    ("a [b: 3]", [[3, "a "], [10, "a b"]]),
    ("a [[[b]]:2]", [[2, "a "], [10, "a [[b]]"]]),
    ("[(a:2):3]", [[3, ""], [10, "(a:2)"]]),
    ("a [b : c : 1] d", [[1, "a b  d"], [10, "a  c  d"]]),
    ("a[b:[c:d:2]:1]e", [[1, "abe"], [2, "ace"], [10, "ade"]]),
    ("a [unbalanced", [[10, "a [unbalanced"]]),
    ("a [b:.5] c", [[5, "a  c"], [10, "a b c"]]),
    ("((a][:b:c [d:3]", [[3, "((a][:b:c "], [10, "((a][:b:c d"]]),
    ("[a|(b:1.1)]", [[1, "a"], [2, "(b:1.1)"], [3, "a"], [4, "(b:1.1)"], [5, "a"], [6, "(b:1.1)"], [7, "a"],
                     [8, "(b:1.1)"], [9, "a"], [10, "(b:1.1)"]]),
    ("[fe|]male", [[i, "female" if i % 2 else "male"] for i in range(1, 11)]),
    ("[fe|||]male", [[i, "female" if i % 4 == 1 else "male"] for i in range(1, 11)]),
])
def test_a1111_doctests(prompt, expected):
    assert g(prompt) == expected


def test_from_to_when_forms():
    assert g("a [cat:dog:4] x") == [[4, "a cat x"], [10, "a dog x"]]
    assert g("[cat::4]") == [[4, "cat"], [10, ""]]
    assert g("[dog:4]") == [[4, ""], [10, "dog"]]
    assert g("[cat:dog:0.25]", steps=20) == [[5, "cat"], [20, "dog"]]
    assert g("[cat:dog:25]", steps=20) == [[20, "cat"]]  # never reached
    assert g("[cat:dog:0]") == [[10, "dog"]]


def test_new_vs_old_scheduling_rule():
    # >= 1.6: a dot means a fraction; old rule: < 1 is a fraction, >= 1 a step
    assert g("[a:b:1.0]") == [[10, "a"]]
    assert g("[a:b:1.0]", old=True) == [[1, "a"], [10, "b"]]
    assert g("[a:b:2]") == g("[a:b:2]", old=True) == [[2, "a"], [10, "b"]]


def test_hires_scheduling():
    assert g("a [b:.5] c", 10, 10) == [[10, "a b c"]]
    assert g("a [b:1.5] c", 10, 10) == [[5, "a  c"], [10, "a b c"]]
    assert g("[x:y:15]", 10, 20) == [[5, "x"], [20, "y"]]  # integers count on from the first pass


def test_nested_and_emphasis_kept():
    assert g("[(red:1.2) cat:[blue:green:6] dog:3]") == [[3, "(red:1.2) cat"], [6, "blue dog"], [10, "green dog"]]


def test_unparsable_prompt_is_used_as_is():
    assert g("a [b|c:3]") == [[10, "a [b|c:3]"]]


def test_and_weights():
    assert split_and("a cat AND a dog :0.5") == [("a cat", 1.0), (" a dog", 0.5)]
    assert split_and("x:1.5") == [("x", 1.5)]
    assert split_and("x AND y: -1") == [("x", 1.0), (" y", -1.0)]
    assert split_and("ANDROID and x") == [("ANDROID and x", 1.0)]
    idx, flat, where = get_multicond_prompt_list(["a AND b:2", "b:2 AND c"])
    assert flat == ["a", " b", "b", " c"]
    assert idx == [[(0, 1.0), (1, 2.0)], [(2, 2.0), (3, 1.0)]]


def test_no_bracket_fast_path_equals_the_parse():
    """Text without `[` skips lark; the parse of every such real prompt (and of tricky ones) renders to itself."""
    import json
    from pathlib import Path

    import lark

    from creationmix.prompt.schedule import _collect, _parser, _render

    corpus = Path(__file__).parent / "data" / "real-infotexts" / "infotexts.jsonl"
    prompts = [json.loads(line)["text"].split("\nNegative prompt:")[0] for line in corpus.read_text().splitlines()]
    prompts = [p for p in prompts if "[" not in p][:30]
    prompts += ["(a:1.2) b:c ((d)) \\(e\\) f)", "a | b : c", "  lead and trail  ", "((a)(b:0.5))) :1", ""]
    assert len(prompts) > 30
    parsed = 0
    for prompt in prompts:
        assert g(prompt, 20) == [[20, prompt]]
        try:
            tree = _parser().parse(prompt)
        except lark.exceptions.LarkError:  # a `|` outside brackets: A1111 uses the text as is, as we do
            continue
        ends, whens = _collect(tree, 20, 0, 0.0, False)
        assert (ends, _render(tree, 20, whens)) == ([20], prompt)
        parsed += 1
    assert parsed > 20
