"""The engine end to end on the tiny checkpoint: A1111's pixel-deciding facts, hires arithmetic, seeds, errors."""
from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
from PIL import Image

from creationmix.engine import Engine, to_uint8_images
from creationmix.errors import CreationMixError, InvalidParameter
from creationmix.params import GenerationParams
from creationmix.sampling.philox import PhiloxGenerator
from creationmix.jobs import Control

SMALL = dict(prompt="1girl, solo", negative_prompt="worst quality", steps=3, sampler="DPM++ 2M Karras",
             cfg_scale=7.0, seed=1234, width=64, height=64)


@pytest.fixture
def engine(folders):
    return Engine(folders, device="cpu", precision="fp32")


def sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_png_written_with_a1111_parameters(engine, folders):
    res = engine.generate(GenerationParams(**SMALL))
    [path] = res.paths
    assert path.parent.parent.name == "txt2img-images"
    assert path.name.endswith("-1234.png") and path.name.startswith("00000-")
    text = Image.open(path).text["parameters"]
    lines = text.split("\n")
    assert lines[0] == "1girl, solo"
    assert lines[1] == "Negative prompt: worst quality"
    assert lines[2].startswith("Steps: 3, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7")
    for part in ("Seed: 1234", "Size: 64x64", "Model hash: ", "Model: tiny"):
        assert part in lines[2]


def test_same_params_same_png_bytes(engine):
    p = GenerationParams(**SMALL)
    a, b = engine.generate(p).paths[0], engine.generate(p).paths[0]
    assert a != b and sha(a) == sha(b)


def test_batch_uses_seed_plus_i_each_with_its_own_generator(engine):
    batch = engine.generate(GenerationParams(**{**SMALL, "batch_size": 2, "batch_count": 2}), save=False)
    assert batch.seeds == (1234, 1235, 1236, 1237)
    single = engine.generate(GenerationParams(**{**SMALL, "seed": 1235}), save=False)
    a, b = np.asarray(batch.images[1], dtype=int), np.asarray(single.images[0], dtype=int)
    # Batched convolutions may differ in the last float bits from single ones; the noise itself is identical.
    assert np.abs(a - b).max() <= 2
    assert "Seed: 1235" in batch.infotexts[1]


def test_seed_minus_one_is_recorded(engine):
    res = engine.generate(GenerationParams(**{**SMALL, "seed": -1}), save=False)
    assert 0 <= res.seeds[0] <= 4294967294
    assert f"Seed: {res.seeds[0]}," in res.infotexts[0]


class UNetSpy:
    def __init__(self, unet):
        self.unet, self.calls = unet, []
        self.forward = unet.forward

    def __enter__(self):
        def spy(sample, timestep, encoder_hidden_states=None, **kw):
            self.calls.append((sample.detach().clone(), timestep.detach().clone(), encoder_hidden_states.shape))
            return self.forward(sample, timestep, encoder_hidden_states=encoder_hidden_states, **kw)
        self.unet.forward = spy
        return self

    def __exit__(self, *exc):
        self.unet.forward = self.forward


def test_first_latent_is_noise_times_sigma_max_and_timesteps_are_fractional(engine):
    p = GenerationParams(**{**SMALL, "steps": 4})
    model = engine.load()
    with UNetSpy(model.unet) as spy:
        engine.generate(p, save=False)
    sample, t, _ = spy.calls[0]
    sigma_max = 14.614642
    # RNG "GPU" (the default) off CUDA is NV noise: what CUDA's torch.randn draws for this seed.
    noise = torch.from_numpy(PhiloxGenerator(1234).randn((1, 4, 8, 8)))
    # The UNet sees noise * sigma / sqrt(sigma^2 + 1) (A1111's CompVisDenoiser input scaling).
    expected = noise * sigma_max / (sigma_max ** 2 + 1) ** 0.5
    assert torch.allclose(sample[:1], expected, atol=1e-4)
    assert abs(float(t[0]) - 999.0) < 1e-3
    ts = [float(c[1][0]) for c in spy.calls]
    assert any(abs(x - round(x)) > 1e-3 for x in ts), ts  # diffusers' schedulers would round these


def test_cond_and_uncond_of_different_length_are_separate_unet_calls(engine):
    long_prompt = ", ".join(["masterpiece"] * 60)  # > 75 tokens: two chunks
    model = engine.load()
    with UNetSpy(model.unet) as spy:
        engine.generate(GenerationParams(**{**SMALL, "prompt": long_prompt, "steps": 1}), save=False)
    assert [c[2][:2] for c in spy.calls] == [(1, 154), (1, 77)]
    with UNetSpy(model.unet) as spy:
        engine.generate(GenerationParams(**{**SMALL, "steps": 1}), save=False)
    assert [c[2][:2] for c in spy.calls] == [(2, 77)]


@pytest.mark.slow  # a real-size 1072x1688 decode; the size arithmetic is tested on small images below
def test_documented_hires_recipe_size(engine):
    p = GenerationParams(**{**SMALL, "width": 672, "height": 1056, "steps": 1, "enable_hires": True,
                            "hires_scale": 1.6, "hires_steps": 1, "denoising_strength": 0.6})
    res = engine.generate(p, save=False)
    assert res.images[0].size == (1072, 1688)
    assert "Hires upscale: 1.6" in res.infotexts[0] and "Size: 672x1056" in res.infotexts[0]


def test_hires_runs_hires_steps_of_a_longer_schedule(engine):
    p = GenerationParams(**{**SMALL, "steps": 2, "enable_hires": True, "hires_scale": 1.5, "hires_steps": 3,
                            "denoising_strength": 0.6, "hires_upscaler": "Latent (nearest-exact)"})
    events = []
    res = engine.generate(p, save=False, progress=events.append)
    assert res.images[0].size == (96, 96)
    assert [(e.pass_name, e.step, e.total) for e in events] == [
        ("first", 1, 2), ("first", 2, 2), ("hires", 1, 3), ("hires", 2, 3), ("hires", 3, 3)]


@pytest.mark.parametrize("sampler", ["Euler a", "Euler", "Heun", "DPM2", "DPM++ SDE Karras",
                                     "DPM++ 2M SDE Karras", "DDIM", "DPM++ 2M"])
def test_every_sampler_generates_reproducibly(engine, sampler):
    p = GenerationParams(**{**SMALL, "sampler": sampler, "steps": 3})
    a = engine.generate(p, save=False).images[0]
    b = engine.generate(p, save=False).images[0]
    assert np.array_equal(np.asarray(a), np.asarray(b))


def test_interrupt_keeps_finished_images(engine):
    control = Control()
    seen = []

    def progress(ev):
        seen.append(ev)
        if ev.image_index == 1:
            control.interrupt()

    res = engine.generate(GenerationParams(**{**SMALL, "batch_count": 3}), progress=progress, control=control)
    # The finished image and (A1111) the decoded partial latent of the one in progress; nothing after it.
    assert res.interrupted and len(res.paths) == 2 and res.seeds == (1234, 1235)
    assert any("incomplete" in w for w in res.warnings)


def test_interrupt_at_step_k_keeps_the_denoised_latent_of_step_k(engine, monkeypatch):
    """The kept PNG is the VAE decode of the last denoised prediction (A1111's last_latent), with the normal
    infotext, and the hires pass is not started when the first pass was interrupted."""
    control = Control()
    p = GenerationParams(**{**SMALL, "steps": 6, "enable_hires": True, "hires_scale": 2.0, "hires_steps": 2})
    decoded = []
    real_decode = engine._decode
    monkeypatch.setattr(engine, "_decode", lambda m, lat, w: decoded.append(lat.clone()) or real_decode(m, lat, w))
    passes = []

    def progress(ev):
        passes.append(ev.pass_name)
        if ev.step == 3:
            control.interrupt()

    res = engine.generate(p, progress=progress, control=control)
    assert res.interrupted and len(res.paths) == 1 and set(passes) == {"first"}
    assert decoded[0].shape[-2:] == (8, 8)  # the first-pass latent, not upscaled
    with Image.open(res.paths[0]) as im:
        assert im.size == (64, 64) and "Steps: 6" in im.text["parameters"]
    assert "step 3 of the first pass" in " ".join(res.warnings)


def test_interrupt_inside_one_unet_call(engine):
    """The flag is checked between UNet blocks: an interrupt raised during a model call stops that call."""
    control = Control()
    engine.load()
    first_block = engine.model.unet.down_blocks[0]
    calls = []

    def during_call(_m, _args, _out):
        calls.append(1)
        control.interrupt()
    handle = first_block.register_forward_hook(during_call)
    ups = []
    up_handle = engine.model.unet.up_blocks[-1].register_forward_pre_hook(lambda *a: ups.append(1))
    try:
        res = engine.generate(GenerationParams(**SMALL), control=control, save=False)
    finally:
        handle.remove()
        up_handle.remove()
    assert res.interrupted and len(res.images) == 1  # the (noisy) start latent, decoded
    assert len(calls) == 1 and ups == []  # the call in progress did not reach its last block
    hooks = sum(len(b._forward_pre_hooks) for b in engine.model.unet.down_blocks)
    assert hooks == 0  # the per-run hooks are removed


def test_skip_moves_to_the_next_batch(engine):
    control = Control()

    def progress(ev):
        if ev.image_index == 0:
            control.skip()

    res = engine.generate(GenerationParams(**{**SMALL, "batch_count": 2}), progress=progress, control=control,
                          save=False)
    assert res.seeds == (1235,) and not res.interrupted


def test_uint8_by_truncation_not_rounding():
    x = torch.full((1, 3, 1, 1), (0.9999 / 255.0) * 2 - 1)  # 0.9999 of a level above 0
    assert np.asarray(to_uint8_images(x)[0])[0, 0, 0] == 0
    x = torch.full((1, 3, 1, 1), 1.0)
    assert np.asarray(to_uint8_images(x)[0])[0, 0, 0] == 255


def test_unknown_checkpoint_and_bad_vae_name_write_nothing(engine, folders):
    with pytest.raises(CreationMixError, match="not found"):
        engine.generate(GenerationParams(**{**SMALL, "checkpoint": "nope"}))
    with pytest.raises(Exception, match="contains '..'"):
        engine.generate(GenerationParams(**{**SMALL, "vae": "../../etc/x"}))
    assert not list(folders.outputs_dir.rglob("*.png"))


def test_switching_checkpoints_frees_the_previous(engine, folders):
    from creationmix.models.tiny import write_tiny_checkpoint
    write_tiny_checkpoint(folders.checkpoint_dirs[0] / "other.safetensors", seed=5)
    first = engine.load("tiny")
    assert engine.load("tiny") is first  # cached
    second = engine.load("other")
    assert second is not first and engine.model is second
    res = engine.generate(GenerationParams(**{**SMALL, "checkpoint": "other"}), save=False)
    assert "Model: other" in res.infotexts[0]


def test_params_validation_happens_before_work():
    with pytest.raises(InvalidParameter):
        GenerationParams(**{**SMALL, "width": 65})


def test_tiled_vae_on_request_gives_an_image_of_the_same_size(folders):
    tiled = Engine(folders, device="cpu", precision="fp32", tiled_vae=True)
    res = tiled.generate(GenerationParams(**SMALL), save=False)
    assert res.images[0].size == (64, 64)


def test_progress_reports_previews_on_request(engine):
    events = []
    engine.generate(GenerationParams(**SMALL), save=False, progress=events.append, preview_every=1)
    assert all(e.preview is not None and e.preview.size == (8, 8) for e in events)


def test_lora_strengths_encode_each_state_once_and_weight_zero_equals_base(engine, folders):
    from lora_fixtures import kohya_lora, write_lora

    model = engine.load()
    write_lora(folders.lora_dirs[0] / "style.safetensors", kohya_lora(model.unet, model.text_encoder))
    encodes = []
    real = engine.encoder.encode

    def counting(text, *a, **k):
        encodes.append(text)
        return real(text, *a, **k)

    engine.encoder.encode = counting
    base = engine.generate(GenerationParams(**SMALL), save=False).images[0]
    zero = engine.generate(GenerationParams(**{**SMALL, "prompt": SMALL["prompt"] + " <lora:style:0>"}),
                           save=False).images[0]
    assert np.array_equal(np.asarray(base), np.asarray(zero))
    for w in (0.5, 1.0, 0.5, 1.0):
        res = engine.generate(GenerationParams(**{**SMALL, "prompt": f"1girl, solo <lora:style:{w}>"}), save=False)
    assert 'Lora hashes: "style: ' in res.infotexts[0]
    n = len(encodes)
    for w in (0.5, 1.0):  # states seen before: served from the conditioning cache
        engine.generate(GenerationParams(**{**SMALL, "prompt": f"1girl, solo <lora:style:{w}>"}), save=False)
    assert len(encodes) == n
    assert engine.loras.load_count == 1


def test_a_sidecar_vae_is_never_taken_for_a_checkpoint(folders):
    from creationmix.models.tiny import write_tiny_vae
    # Sorts before tiny.safetensors: the engine's default pick must still be the checkpoint.
    write_tiny_vae(folders.checkpoint_dirs[0] / "a.vae.safetensors")
    engine = Engine(folders, device="cpu", precision="fp32")
    assert [p.name for p in engine.list_checkpoints()] == ["tiny.safetensors"]
    assert engine.checkpoint_path(None).name == "tiny.safetensors"
