import pytest

from creationmix.errors import InvalidParameter
from creationmix.params import GenerationParams, split_sampler_name


def test_old_and_split_sampler_names_are_the_same():
    a = GenerationParams(sampler="DPM++ 2M Karras")
    b = GenerationParams(sampler="DPM++ 2M", schedule="Karras")
    assert (a.sampler, a.schedule) == (b.sampler, b.schedule) == ("DPM++ 2M", "Karras")
    assert split_sampler_name("DPM++ 2M SDE Karras") == ("DPM++ 2M SDE", "Karras")
    assert split_sampler_name("Euler a") == ("Euler a", "Automatic")


def test_automatic_schedule_resolves_like_a1111():
    assert GenerationParams(sampler="DPM++ 2M").sampler_schedule == "Karras"
    assert GenerationParams(sampler="Euler a").sampler_schedule == "Uniform"
    assert GenerationParams(sampler="DPM++ 2M SDE").sampler_schedule == "Exponential"


def test_documented_hires_size():
    p = GenerationParams(width=672, height=1056, enable_hires=True, hires_scale=1.6)
    assert p.hires_size == (1075, 1689)  # int(W*scale): the latent is 134x211, the image 1072x1688
    assert (p.hires_size[0] // 8, p.hires_size[1] // 8) == (134, 211)


@pytest.mark.parametrize("kw, needle", [
    ({"width": 100}, "width must be a multiple of 8"),
    ({"height": 4104}, "height must be a multiple of 8 between 64 and 4096"),
    ({"width": 56}, "between 64 and 4096"),
    ({"steps": 0}, "steps must be in [1, 150]"),
    ({"steps": 151}, "steps"),
    ({"cfg_scale": 0.5}, "CFG scale must be in [1, 30]"),
    ({"cfg_scale": 31}, "CFG scale"),
    ({"denoising_strength": 0}, "denoising strength must be in (0, 1]"),
    ({"denoising_strength": 1.1}, "denoising strength"),
    ({"hires_scale": 4.5}, "hires scale must be in [1, 4]"),
    ({"hires_scale": 0.5}, "hires scale"),
    ({"sampler": "Euler b"}, "unknown sampler 'Euler b'; valid samplers: DPM++ 2M"),
    ({"hires_upscaler": "ESRGAN"}, "unknown hires upscaler 'ESRGAN'; valid: Latent"),
    ({"seed": -2}, "seed"),
    ({"rng": "Philox"}, "unknown RNG source"),
])
def test_bad_input_is_named(kw, needle):
    with pytest.raises(InvalidParameter) as e:
        GenerationParams(**kw)
    assert needle in str(e.value)


def test_seed_minus_one_draws_in_a1111_range():
    import random
    p = GenerationParams(seed=-1).with_seed_resolved(random.Random(3))
    assert 0 <= p.seed <= 4294967294
    assert GenerationParams(seed=5).with_seed_resolved().seed == 5


def test_dict_round_trip_rejects_unknown_keys():
    p = GenerationParams(prompt="a", extra=(("Foo", "bar"),))
    assert GenerationParams.from_dict(p.to_dict()) == p
    with pytest.raises(InvalidParameter, match="unknown parameter"):
        GenerationParams.from_dict({"promt": "x"})


def test_hires_sampler_same_as_first_is_normalised_away():
    assert GenerationParams(sampler="Euler", hires_sampler="Euler").hires_sampler is None
    assert GenerationParams(sampler="Euler", hires_sampler="Euler a").hires_sampler == "Euler a"
