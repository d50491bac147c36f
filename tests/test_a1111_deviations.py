"""Five places where we did something else than A1111 1.10; each test quotes what A1111's own function gives."""
from __future__ import annotations

import pytest
import torch

from creationmix.engine import Engine, hires_cond_steps
from creationmix.errors import InvalidParameter
from creationmix.infotext import parse_infotext
from creationmix.params import GenerationParams
from creationmix.prompt.attention import parse_prompt_attention
from creationmix.prompt.encoder import PromptEncoder
from creationmix.prompt.schedule import get_learned_conditioning_prompt_schedules
from creationmix.sampling import SAMPLER_TABLE


@pytest.fixture(scope="module")
def comps():
    from creationmix.models.tiny import tiny_components
    return tiny_components(seed=0)


# 1. Hires-pass prompt editing: calculate_hr_conds passes self.firstpass_steps as the base and the hires
#    total steps as hires_steps, so an absolute step counts on from the first pass.
def test_hires_prompt_editing_counts_from_the_first_pass():
    p = GenerationParams(steps=20, sampler="Euler", enable_hires=True, hires_steps=10)
    steps = hires_cond_steps(p, SAMPLER_TABLE["Euler"], SAMPLER_TABLE["Euler"])
    assert steps == (20, 10)
    # A1111: get_learned_conditioning_prompt_schedules(["[cat:dog:25]"], 20, 10) == [[[5, 'cat'], [10, 'dog']]]
    assert get_learned_conditioning_prompt_schedules(["[cat:dog:25]"], *steps) == [[[5, "cat"], [10, "dog"]]]
    # A second-order sampler doubles both counts (A1111's sampler_config.total_steps).
    assert hires_cond_steps(p.replace(sampler="Heun"), SAMPLER_TABLE["Heun"], SAMPLER_TABLE["Heun"]) == (40, 20)


def test_engine_builds_the_hires_conditioning_from_the_first_pass_steps(folders, monkeypatch):
    engine = Engine(folders, device="cpu", precision="fp32")
    calls = []

    class Stop(Exception):
        pass

    def encode(prompt, negative, params, steps, hires_steps):
        calls.append((steps, hires_steps))
        if hires_steps is not None:
            raise Stop
        return None

    monkeypatch.setattr(engine, "_encode", encode)
    with pytest.raises(Stop):
        engine.generate(GenerationParams(prompt="[cat:dog:25]", steps=20, sampler="Euler", width=64, height=64,
                                         enable_hires=True, hires_steps=10, seed=1), save=False)
    assert calls == [(20, None), (20, 10)]


# 2. BREAK inside brackets: multiply_range scales every item, the -1 marker too, so it is no longer a BREAK.
def test_break_inside_brackets_is_the_word_break_at_weight_minus_1_1(comps):
    # A1111: parse_prompt_attention("a (b BREAK c) d")
    #   == [['a ', 1.0], ['b', 1.1], ['BREAK', -1.1], ['c', 1.1], [' d', 1.0]]
    assert parse_prompt_attention("a (b BREAK c) d") == [["a ", 1.0], ["b", 1.1], ["BREAK", -1.1], ["c", 1.1],
                                                         [" d", 1.0]]
    enc = PromptEncoder(comps["text_encoder"], comps["tokenizer"])
    chunks, count = enc.tokenize_line("a (b BREAK c) d")
    tok = comps["tokenizer"]
    ids = tok("a b break c d", add_special_tokens=False)["input_ids"]
    assert len(chunks) == 1 and count == 5
    assert chunks[0].tokens[1:6] == ids
    assert chunks[0].multipliers[1:6] == [1.0, 1.1, -1.1, 1.1, 1.0]
    # Outside brackets BREAK still starts a new chunk.
    assert len(enc.tokenize_line("a BREAK b")[0]) == 2


# 3. (an embedding moved by the comma backtrack: test_prompt_embeddings.py, next to the embedding fixtures)

# 4. A weight that is not a number: A1111's float("1.2.3") raises ValueError; we say what and where.
@pytest.mark.parametrize("text, shown", [("a (b:1.2.3) c", "'(b:1.2.3)'"), ("x ((y:..)) z", "'(y:..)'")])
def test_bad_weight_is_a_clear_error_naming_the_text(text, shown):
    with pytest.raises(InvalidParameter, match=r"is not a weight in " + shown.replace("(", r"\(").replace(")", r"\)")
                       .replace(".", r"\.")):
        parse_prompt_attention(text)
    assert parse_prompt_attention("b:1.2.3)") == [["b:1.2.3)", 1.0]]  # no open bracket: text, as in A1111


# 5. Pasting: A1111 1.10's txt2img paste field is
#    enable_hr = "Denoising strength" in d and ("Hires upscale" in d or "Hires upscaler" in d or "Hires resize-1" in d)
#    with "Hires resize-1" always set by parse_generation_parameters.
def test_paste_turns_hires_on_only_with_denoising_strength():
    base = "x\nSteps: 20, Sampler: Euler, CFG scale: 7, Seed: 1, Size: 512x512"
    assert not parse_infotext(base + ", Hires upscale: 2, Hires upscaler: Latent").params.enable_hires
    assert parse_infotext(base + ", Denoising strength: 0.5").params.enable_hires
    assert parse_infotext(base + ", Denoising strength: 0.5, Hires upscale: 1.5").params.hires_scale == 1.5
