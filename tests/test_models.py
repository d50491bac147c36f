"""Checkpoint loading: exact round trips through the LDM layout, and precise errors for bad files."""
from __future__ import annotations

import shutil
import struct
import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from creationmix.errors import ModelError
from creationmix.models import ldm_convert, loader, tiny


@pytest.fixture(scope="module")
def comps():
    return tiny.tiny_components(0)


def _assert_same(module_a, module_b, what=""):
    a, b = module_a.state_dict(), module_b.state_dict()
    assert a.keys() == b.keys(), (what, sorted(set(a) ^ set(b))[:5])
    for k in a:
        assert a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]), (what, k)


# -- converter ----------------------------------------------------------------------------------------------------

def test_round_trip_every_tensor(tiny_model, comps):
    for name in ("unet", "vae", "text_encoder"):
        _assert_same(comps[name], getattr(tiny_model, name), name)
    assert tiny_model.pipe.unet is tiny_model.unet and tiny_model.pipe.vae is tiny_model.vae
    assert tiny_model.pipe.text_encoder is tiny_model.text_encoder and tiny_model.pipe.tokenizer is tiny_model.tokenizer


def test_diffusers_own_from_single_file_reads_our_file(tiny_ckpt, comps):
    from diffusers import StableDiffusionPipeline
    pipe = StableDiffusionPipeline.from_single_file(
        str(tiny_ckpt), config=str(tiny.config_dir_for(tiny_ckpt)), local_files_only=True,
        safety_checker=None, tokenizer=comps["tokenizer"])
    for name in ("unet", "vae", "text_encoder"):
        _assert_same(comps[name], getattr(pipe, name), name)


def test_converter_handles_other_layouts():
    from diffusers import AutoencoderKL, UNet2DConditionModel
    torch.manual_seed(3)
    unet = UNet2DConditionModel(
        sample_size=8, block_out_channels=(32, 32, 64), layers_per_block=2, cross_attention_dim=16,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"), attention_head_dim=2)
    vae = AutoencoderKL(block_out_channels=(8, 16), down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, layers_per_block=2, norm_num_groups=4)
    sd = ldm_convert.unet_to_ldm(unet.state_dict(), unet.config)
    sd.update(ldm_convert.vae_to_ldm(vae.state_dict(), vae.config))
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint, convert_ldm_vae_checkpoint
    back = convert_ldm_unet_checkpoint(sd, dict(unet.config))
    assert back.keys() == unet.state_dict().keys()
    assert all(torch.equal(back[k], v) for k, v in unet.state_dict().items())
    vback = convert_ldm_vae_checkpoint(sd, dict(vae.config))
    assert vback.keys() == vae.state_dict().keys()
    assert all(torch.equal(vback[k], v) for k, v in vae.state_dict().items())


def test_full_size_sd15_key_layout():
    """The shipped configs give exactly SD 1.5's key set (checked on meta tensors: no memory needed)."""
    unet, vae, te = loader._meta_models(loader.SHIPPED_CONFIG)
    u = ldm_convert.unet_to_ldm(unet.state_dict(), unet.config)
    v = ldm_convert.vae_to_ldm(vae.state_dict(), vae.config)
    t = ldm_convert.text_encoder_to_ldm(te.state_dict())
    assert (len(u), len(v), len(t)) == (686, 248, 196)  # + position_ids = the 1131 keys of v1-5-pruned-emaonly
    for k in ("model.diffusion_model.output_blocks.11.0.skip_connection.weight",
              "model.diffusion_model.input_blocks.3.0.op.weight",
              "model.diffusion_model.output_blocks.2.1.conv.weight",
              "model.diffusion_model.output_blocks.5.2.conv.weight",
              "model.diffusion_model.middle_block.1.transformer_blocks.0.attn2.to_k.weight",
              "model.diffusion_model.time_embed.2.bias", "model.diffusion_model.out.2.weight",
              "first_stage_model.decoder.up.3.upsample.conv.weight", "first_stage_model.encoder.down.2.downsample.conv.bias",
              "first_stage_model.encoder.down.1.block.0.nin_shortcut.weight", "first_stage_model.post_quant_conv.weight",
              "cond_stage_model.transformer.text_model.final_layer_norm.bias",
              "cond_stage_model.transformer.text_model.encoder.layers.11.mlp.fc2.weight"):
        assert k in {**u, **v, **t}, k
    assert tuple(v["first_stage_model.decoder.mid.attn_1.q.weight"].shape) == (512, 512, 1, 1)
    assert tuple(u["model.diffusion_model.input_blocks.1.1.proj_in.weight"].shape) == (320, 320, 1, 1)
    assert tuple(u["model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight"].shape) == (320, 768)
    assert "first_stage_model.decoder.up.0.upsample.conv.weight" not in v
    assert "first_stage_model.encoder.down.3.downsample.conv.weight" not in v


# -- loading ------------------------------------------------------------------------------------------------------

def test_loaded_model_fields(tiny_model, tiny_ckpt):
    from creationmix import hashing
    m = tiny_model
    assert m.path == tiny_ckpt and m.name == "tiny.safetensors"
    assert m.model_hash == hashing.sha256_file(tiny_ckpt)[:10]
    assert m.vae_path is None and m.vae_name is None and m.vae_hash is None
    assert m.device == torch.device("cpu") and m.dtype == torch.float32
    for mod in (m.unet, m.vae, m.text_encoder):
        assert not mod.training
        assert not any(p.requires_grad for p in mod.parameters())
    assert m.vae.config.scaling_factor == pytest.approx(0.18215)
    assert m.tokenizer("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]
    # The tiny CLIP's final LayerNorm is not the degenerate zero-bias default.
    assert m.text_encoder.final_layer_norm.bias.abs().mean() > 0.1


def test_tiny_model_runs(tiny_model):
    with torch.no_grad():
        ids = tiny_model.tokenizer("a cat", padding="max_length", max_length=77, return_tensors="pt").input_ids
        ctx = tiny_model.text_encoder(ids).last_hidden_state
        assert ctx.shape == (1, 77, 32) and ctx.mean().abs() > 0.05
        eps = tiny_model.unet(torch.randn(1, 4, 8, 8), 500, encoder_hidden_states=ctx).sample
        img = tiny_model.vae.decode(eps / tiny_model.vae.config.scaling_factor).sample
    assert eps.shape == (1, 4, 8, 8) and img.shape == (1, 3, 64, 64)
    assert torch.isfinite(img).all()


def test_tiny_components_deterministic():
    a, b, c = tiny.tiny_components(5), tiny.tiny_components(5), tiny.tiny_components(6)
    _assert_same(a["unet"], b["unet"])
    assert not torch.equal(a["unet"].conv_in.weight, c["unet"].conv_in.weight)


def test_fp16_file_loads_as_requested_dtype(tmp_path, comps):
    p = tiny.write_tiny_checkpoint(tmp_path / "half.safetensors", dtype=torch.float16)
    assert load_file(str(p))["model.diffusion_model.out.2.weight"].dtype == torch.float16
    m = loader.load_checkpoint(p, dtype=torch.float32)
    for name in ("unet", "vae", "text_encoder"):
        got = getattr(m, name).state_dict()
        for k, v in comps[name].state_dict().items():
            assert got[k].dtype == torch.float32
            assert torch.equal(got[k], v.half().float()), (name, k)


def test_ckpt_file(tmp_path, comps):
    p = tiny.write_tiny_checkpoint(tmp_path / "old.ckpt")
    m = loader.load_checkpoint(p)
    _assert_same(comps["unet"], m.unet)
    _assert_same(comps["text_encoder"], m.text_encoder)


def test_old_clip_key_layout(tmp_path, comps):
    p = tiny.write_tiny_checkpoint(tmp_path / "m.safetensors")
    sd = load_file(str(p))
    old = {k.replace("cond_stage_model.transformer.text_model.", "cond_stage_model.transformer."): v
           for k, v in sd.items()}
    save_file(old, str(p))
    _assert_same(comps["text_encoder"], loader.load_checkpoint(p).text_encoder)


# -- VAE ----------------------------------------------------------------------------------------------------------

def _vae_from(path):
    return {k: v for k, v in load_file(str(path)).items()}


def test_no_vae_is_a_clear_error(tmp_path):
    p = tiny.write_tiny_checkpoint(tmp_path / "novae.safetensors", with_vae=False)
    with pytest.raises(ModelError) as e:
        loader.load_checkpoint(p)
    msg = str(e.value)
    assert "novae.safetensors" in msg and "no VAE" in msg
    assert "models/VAE" in msg and "novae.vae.safetensors" in msg


@pytest.mark.parametrize("layout,prefix", [("ldm", ""), ("ldm", "first_stage_model."), ("diffusers", "")])
def test_sidecar_vae(tmp_path, layout, prefix):
    p = tiny.write_tiny_checkpoint(tmp_path / "novae.safetensors", with_vae=False)
    vp = tiny.write_tiny_vae(tmp_path / "novae.vae.safetensors", seed=7, layout=layout, prefix=prefix)
    m = loader.load_checkpoint(p)
    assert m.vae_path == vp and m.vae_name == "novae.vae.safetensors" and len(m.vae_hash) == 10
    ref = tiny.write_tiny_vae(tmp_path / "ref.safetensors", seed=7, layout="diffusers")
    want = _vae_from(ref)
    got = m.vae.state_dict()
    assert got.keys() == want.keys()
    assert all(torch.equal(got[k], want[k]) for k in want)


def test_explicit_vae_path_pt_and_precedence(tmp_path, comps):
    p = tiny.write_tiny_checkpoint(tmp_path / "m.safetensors")  # has its own VAE
    vp = tiny.write_tiny_vae(tmp_path / "other.pt", seed=9)
    m = loader.load_checkpoint(p, vae_path=vp)
    assert m.vae_path == vp
    assert not torch.equal(m.vae.decoder.conv_out.weight, comps["vae"].decoder.conv_out.weight)
    # A1111 "Automatic": a sidecar VAE wins over the built-in one; auto_vae=False ("None") keeps the built-in.
    shutil.copy(vp, tmp_path / "m.vae.pt")
    assert loader.load_checkpoint(p).vae_name == "m.vae.pt"
    m2 = loader.load_checkpoint(p, auto_vae=False)
    assert m2.vae_path is None
    _assert_same(comps["vae"], m2.vae)


def test_vae_that_does_not_fit(tmp_path):
    from diffusers import AutoencoderKL
    p = tiny.write_tiny_checkpoint(tmp_path / "m.safetensors", with_vae=False)
    big = AutoencoderKL(block_out_channels=(8, 16, 16, 32), down_block_types=("DownEncoderBlock2D",) * 4,
                        up_block_types=("UpDecoderBlock2D",) * 4, layers_per_block=1, norm_num_groups=4)
    vp = tmp_path / "big.safetensors"
    save_file({k: v.contiguous() for k, v in big.state_dict().items()}, str(vp))
    with pytest.raises(ModelError, match=r"VAE big\.safetensors does not fit: .*shape"):
        loader.load_checkpoint(p, vae_path=vp)
    junk = tmp_path / "junk.safetensors"
    save_file({"foo.weight": torch.zeros(2)}, str(junk))
    with pytest.raises(ModelError, match=r"VAE junk\.safetensors does not fit"):
        loader.load_checkpoint(p, vae_path=junk)
    with pytest.raises(ModelError, match="not found"):
        loader.load_checkpoint(p, vae_path=tmp_path / "missing.safetensors")


# -- bad files ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("key,what", [
    ("model.diffusion_model.out.2.weight", "UNet"),
    ("cond_stage_model.transformer.text_model.final_layer_norm.bias", "text encoder"),
])
def test_missing_keys(tmp_path, key, what):
    p = tiny.write_tiny_checkpoint(tmp_path / "m.safetensors", drop_keys=(key,))
    with pytest.raises(ModelError) as e:
        loader.load_checkpoint(p)
    assert key in str(e.value) and what in str(e.value) and "m.safetensors" in str(e.value)


def test_missing_vae_part_and_missing_unet(tmp_path):
    p = tiny.write_tiny_checkpoint(tmp_path / "m.safetensors",
                                   drop_keys=("first_stage_model.decoder.conv_out.weight",))
    with pytest.raises(ModelError, match="VAE.*missing.*first_stage_model.decoder.conv_out.weight"):
        loader.load_checkpoint(p)
    p = tiny.write_tiny_checkpoint(tmp_path / "t.safetensors", drop_keys=("cond_stage_model.",))
    with pytest.raises(ModelError, match="no text encoder weights"):
        loader.load_checkpoint(p)


def test_garbage_files(tmp_path):
    g = tmp_path / "garbage.safetensors"
    g.write_bytes(bytes(range(256)) * 64)
    with pytest.raises(ModelError, match=r"garbage\.safetensors is not a safetensors file"):
        loader.load_checkpoint(g)
    g2 = tmp_path / "garbage.ckpt"
    g2.write_bytes(b"this is not a pickle at all" * 50)
    with pytest.raises(ModelError, match=r"cannot read checkpoint garbage\.ckpt"):
        loader.load_checkpoint(g2)
    empty = tmp_path / "empty.safetensors"
    empty.write_bytes(b"")
    with pytest.raises(ModelError, match="empty.safetensors"):
        loader.load_checkpoint(empty)
    hdr = json.dumps(["not", "a", "dict"]).encode()
    bad = tmp_path / "badheader.safetensors"
    bad.write_bytes(struct.pack("<Q", len(hdr)) + hdr)
    with pytest.raises(ModelError, match="unreadable header"):
        loader.load_checkpoint(bad)
    with pytest.raises(ModelError, match="not found"):
        loader.load_checkpoint(tmp_path / "nope.safetensors")


def test_truncated_file(tmp_path, tiny_ckpt):
    data = tiny_ckpt.read_bytes()
    t = tmp_path / "cut.safetensors"
    t.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError, match=r"cut\.safetensors is truncated"):
        loader.load_checkpoint(t)


def test_pickle_with_code_is_refused(tmp_path):
    import pickle
    p = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {"x": torch.zeros(1)}, "callback": pickle.Pickler}, p)
    with pytest.raises(ModelError, match=r"evil\.ckpt: it contains pickled objects other than tensors"):
        loader.load_checkpoint(p)


def _fake(path, keys: dict):
    save_file({k: torch.zeros(s) for k, s in keys.items()}, str(path))
    return path


def test_sdxl_and_sd2_are_recognised(tmp_path):
    xl = _fake(tmp_path / "xl.safetensors", {
        "conditioner.embedders.0.transformer.text_model.embeddings.position_embedding.weight": (77, 8),
        "conditioner.embedders.1.model.transformer.resblocks.9.mlp.c_proj.bias": (8,),
        "model.diffusion_model.input_blocks.0.0.weight": (8, 4, 3, 3)})
    with pytest.raises(ModelError, match=r"not an SD 1\.5 checkpoint \(looks like SDXL\)"):
        loader.load_checkpoint(xl)
    sd2 = _fake(tmp_path / "sd2.safetensors", {
        "cond_stage_model.model.transformer.resblocks.0.attn.in_proj_weight": (24, 8),
        "model.diffusion_model.input_blocks.0.0.weight": (8, 4, 3, 3)})
    with pytest.raises(ModelError, match=r"not an SD 1\.5 checkpoint \(looks like SD 2\.x\)"):
        loader.load_checkpoint(sd2)
    sd2b = _fake(tmp_path / "sd2b.safetensors", {
        "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": (320, 1024),
        "cond_stage_model.transformer.text_model.final_layer_norm.bias": (8,)})
    with pytest.raises(ModelError, match=r"looks like SD 2\.x"):
        loader.load_checkpoint(sd2b)
    lora = _fake(tmp_path / "lora.safetensors", {"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": (4, 8)})
    with pytest.raises(ModelError, match=r"looks like a LoRA"):
        loader.load_checkpoint(lora)
    inpaint = _fake(tmp_path / "inpaint.safetensors", {"model.diffusion_model.input_blocks.0.0.weight": (32, 9, 3, 3)})
    with pytest.raises(ModelError, match=r"inpainting"):
        loader.load_checkpoint(inpaint)


def test_without_sidecar_the_shipped_sd15_config_is_used(tmp_path, tiny_ckpt):
    p = tmp_path / "lonely.safetensors"
    shutil.copy(tiny_ckpt, p)
    assert loader.config_dir_for(p) == loader.SHIPPED_CONFIG
    with pytest.raises(ModelError, match="shipped SD 1.5 configs"):
        loader.load_checkpoint(p)


def test_no_network_during_load(tmp_path, monkeypatch):
    import socket

    def refuse(*a, **k):
        raise AssertionError("network access attempted")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    p = tiny.write_tiny_checkpoint(tmp_path / "m.ckpt", with_vae=False)
    tiny.write_tiny_vae(tmp_path / "m.vae.safetensors")
    loader.load_checkpoint(p)


def test_describe_checkpoint(tiny_ckpt, tmp_path):
    d = loader.describe_checkpoint(tiny_ckpt)
    assert d["format"] == "safetensors" and d["architecture"] == "SD 1.5" and d["has_vae"]
    assert "float32" in d["dtypes"]
    p = tiny.write_tiny_checkpoint(tmp_path / "n.ckpt", with_vae=False, dtype=torch.float16)
    d = loader.describe_checkpoint(p)
    assert d["format"] == "pickle" and not d["has_vae"] and "float16" in d["dtypes"]


def test_folders_fixture(folders):
    from creationmix.paths import CHECKPOINT_EXTS, resolve_file
    p = resolve_file("tiny", folders.checkpoint_dirs, CHECKPOINT_EXTS, "checkpoint")
    assert p.name == "tiny.safetensors" and loader.config_dir_for(p) == p.with_name("tiny.config")
    assert folders.outputs_dir.is_dir() and folders.vae_dirs[0].is_dir()
