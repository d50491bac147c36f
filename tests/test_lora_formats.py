import types

import pytest
import torch

from creationmix.errors import LoraError
from creationmix.lora.formats import TargetTable, _ldm_name, convert, detect_format
from lora_fixtures import (full_diff_fake, ia3_fake, kohya_lora, loha_fake, lokr_fake, merged_delta, peft_lora,
                           sd2_fake, sdxl_fake)


@pytest.fixture(scope="module")
def comps(tiny_model):
    return tiny_model.unet, tiny_model.text_encoder  # read only: conversion never touches the model


@pytest.fixture(scope="module")
def table(comps):
    return TargetTable.build(*comps)


def test_detect_kohya_locon_ldm_peft(comps):
    unet, te = comps
    f = detect_format(kohya_lora(unet, te, conv=False))
    assert (f.kind, f.conv, f.has_unet, f.has_te) == ("kohya", False, True, True)
    f = detect_format(kohya_lora(unet, te))
    assert f.kind == "kohya" and f.conv and f.label == "LoCon (kohya)"
    assert detect_format(kohya_lora(unet, None, ldm_names=True)).kind == "kohya-ldm"
    f = detect_format(kohya_lora(None, te))
    assert (f.has_unet, f.has_te) == (False, True)
    assert detect_format(peft_lora(kohya_lora(unet, te), unet, te)).kind == "peft"


def test_detect_from_header_shapes():
    shapes = {"lora_unet_x_to_q.lora_down.weight": {"dtype": "F32", "shape": [4, 32, 3, 3]},
              "lora_unet_x_to_q.lora_up.weight": {"dtype": "F32", "shape": [32, 4, 1, 1]}}
    assert detect_format(shapes).conv


@pytest.mark.parametrize("fake, kind", [(loha_fake, "LoHa"), (lokr_fake, "LoKr"), (ia3_fake, "(IA)³"),
                                        (full_diff_fake, "Full-diff")])
def test_unsupported_types_named(fake, kind):
    with pytest.raises(LoraError, match=rf"{kind.replace('(', '[(]').replace(')', '[)]')} LoRAs are not supported yet"):
        detect_format(fake())


def test_sdxl_and_sd2_refused(table):
    with pytest.raises(LoraError, match="made for SDXL, this checkpoint is SD 1.5"):
        convert(sdxl_fake(), table, "LoRA xl")
    with pytest.raises(LoraError, match="made for SD 2.x, this checkpoint is SD 1.5"):
        convert(sd2_fake(), table, "LoRA two")
    assert detect_format(sdxl_fake()).base == "SDXL" and detect_format(sd2_fake()).base == "SD2"


def test_not_a_lora():
    with pytest.raises(LoraError, match="not a LoRA"):
        detect_format({"model.diffusion_model.conv_in.weight": torch.zeros(3)})
    with pytest.raises(LoraError, match="no tensors"):
        detect_format({})


def test_convert_kohya_matches_a1111_arithmetic(comps, table):
    unet, te = comps
    sd = kohya_lora(unet, te)
    conv = convert(sd, table, "t")
    assert not conv.skipped and conv.has_te and conv.has_unet
    for key in sd:
        if not key.endswith("lora_down.weight"):
            continue
        layer = key.split(".")[0]
        comp, target, mod = table.by_key[layer]
        a = conv.state_dict[f"{comp}.{target}.lora_A.weight"].double()
        b = conv.state_dict[f"{comp}.{target}.lora_B.weight"].double()
        got = (b.flatten(1) @ a.flatten(1)).reshape(mod.weight.shape)
        torch.testing.assert_close(got, merged_delta(sd, layer, 1.0).reshape(mod.weight.shape), atol=1e-6, rtol=1e-5)


def test_ldm_names_equal_diffusers_names(comps, table):
    unet, te = comps
    a = convert(kohya_lora(unet, te, seed=3), table, "a")
    b = convert(kohya_lora(unet, te, seed=3, ldm_names=True), table, "b")
    assert b.format.kind == "kohya-ldm" and a.state_dict.keys() == b.state_dict.keys()
    assert all(torch.equal(a.state_dict[k], b.state_dict[k]) for k in a.state_dict)


def test_ldm_name_table_on_real_sd15_config():
    cfg = types.SimpleNamespace(layers_per_block=2, up_block_types=(
        "UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"))
    pairs = {
        "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q": "input_blocks.1.1.transformer_blocks.0.attn1.to_q",
        "down_blocks.1.attentions.1.proj_in": "input_blocks.5.1.proj_in",
        "down_blocks.0.downsamplers.0.conv": "input_blocks.3.0.op",
        "down_blocks.3.resnets.1.conv2": "input_blocks.11.0.out_layers.3",
        "down_blocks.1.resnets.0.conv_shortcut": "input_blocks.4.0.skip_connection",
        "down_blocks.2.resnets.0.time_emb_proj": "input_blocks.7.0.emb_layers.1",
        "mid_block.attentions.0.transformer_blocks.0.ff.net.2": "middle_block.1.transformer_blocks.0.ff.net.2",
        "mid_block.resnets.1.conv1": "middle_block.2.in_layers.2",
        "up_blocks.0.resnets.2.conv1": "output_blocks.2.0.in_layers.2",
        "up_blocks.0.upsamplers.0.conv": "output_blocks.2.1.conv",
        "up_blocks.1.upsamplers.0.conv": "output_blocks.5.2.conv",
        "up_blocks.3.attentions.2.transformer_blocks.0.attn2.to_out.0":
            "output_blocks.11.1.transformer_blocks.0.attn2.to_out.0",
        "conv_in": "input_blocks.0.0", "conv_out": "out.2", "time_embedding.linear_1": "time_embed.0",
    }
    for diffusers_name, ldm in pairs.items():
        assert _ldm_name(diffusers_name, cfg) == ldm


def test_diffusers_attn_procs_layout(comps, table):
    unet, te = comps
    name = "down_blocks.0.attentions.0.transformer_blocks.0.attn1"
    g = torch.Generator().manual_seed(0)
    sd = {}
    for proj, key in (("to_q", "to_q_lora"), ("to_out", "to_out_lora")):
        sd[f"{name}.processor.{key}.down.weight"] = torch.randn(4, 32, generator=g)
        sd[f"{name}.processor.{key}.up.weight"] = torch.randn(32, 4, generator=g)
    sd["text_encoder.text_model.encoder.layers.0.self_attn.k_proj.lora_linear_layer.down.weight"] = torch.randn(2, 32)
    sd["text_encoder.text_model.encoder.layers.0.self_attn.k_proj.lora_linear_layer.up.weight"] = torch.randn(32, 2)
    conv = convert(sd, table, "d")
    assert conv.format.kind == "diffusers"
    assert set(conv.layers) == {f"unet.{name}.to_q", f"unet.{name}.to_out.0",
                                "text_encoder.encoder.layers.0.self_attn.k_proj"}
    assert torch.equal(conv.state_dict[f"unet.{name}.to_q.lora_A.weight"], sd[f"{name}.processor.to_q_lora.down.weight"])


def test_missing_alpha_means_scale_one(comps, table):
    unet, _ = comps
    sd = kohya_lora(unet, None, alpha=None, conv=False)
    conv = convert(sd, table, "n")
    layer = next(k for k in sd).split(".")[0]
    _, target, _ = table.by_key[layer]
    assert torch.equal(conv.state_dict[f"unet.{target}.lora_B.weight"], sd[f"{layer}.lora_up.weight"])


def test_validation_errors(comps, table):
    unet, te = comps
    sd = kohya_lora(unet, te)
    key = next(k for k in sd if k.endswith("lora_up.weight"))
    with pytest.raises(LoraError, match="no lora_up"):
        convert({k: v for k, v in sd.items() if k != key}, table, "x")
    bad = dict(sd)
    bad[key] = torch.zeros(7, 4)
    with pytest.raises(LoraError, match="does not fit"):
        convert(bad, table, "x")
    nan = dict(sd)
    nan[key] = torch.full_like(sd[key], float("nan"))
    with pytest.raises(LoraError, match="NaN"):
        convert(nan, table, "x")
    alpha = next(k for k in sd if k.endswith(".alpha"))
    up = alpha.removesuffix(".alpha") + ".lora_up.weight"
    huge = {**sd, alpha: torch.tensor(1e38), up: torch.full_like(sd[up], 1e30)}  # finite, until alpha/rank scales
    with pytest.raises(LoraError, match=f"layer {alpha.removesuffix('.alpha')} contains NaN or infinite"):
        convert(huge, table, "x")
    with pytest.raises(LoraError, match="does not match this checkpoint"):
        convert({"lora_unet_nowhere_to_q.lora_down.weight": torch.zeros(4, 8),
                 "lora_unet_nowhere_to_q.lora_up.weight": torch.zeros(8, 4)}, table, "x")
    with pytest.raises(LoraError, match="does not know"):
        convert({**sd, "lora_unet_x.weird": torch.zeros(1)}, table, "x")


def test_unknown_layers_skipped_like_a1111(comps, table):
    unet, te = comps
    sd = kohya_lora(unet, te)
    sd["lora_unet_not_in_tiny_to_q.lora_down.weight"] = torch.zeros(4, 8)
    sd["lora_unet_not_in_tiny_to_q.lora_up.weight"] = torch.zeros(8, 4)
    assert convert(sd, table, "x").skipped == ["lora_unet_not_in_tiny_to_q"]


def test_non_finite_names_the_bad_tensors_only():
    from creationmix.lora.formats import non_finite

    ok = {"a": torch.full((3, 4), 60000.0, dtype=torch.float16), "b": torch.randn(5), "i": torch.arange(3),
          "empty": torch.zeros(0), "scalar": torch.tensor(2.0)}
    assert non_finite(ok) == [] and non_finite({}) == []
    bad = {**ok, "nan": torch.tensor([1.0, float("nan")]), "inf": torch.tensor([[float("-inf")]]).half()}
    assert non_finite(bad) == ["nan", "inf"]
