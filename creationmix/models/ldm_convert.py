"""diffusers -> original LDM (CompVis / A1111 / civitai) state-dict conversion for SD 1.5-architecture models.

diffusers' own scripts hard-code the full-size layout; this one derives every index from the config, so tiny
test models (any block_out_channels / layers_per_block) convert too. The mapping is the exact inverse of
`diffusers.loaders.single_file_utils.convert_ldm_{unet,vae,clip}_checkpoint`, so `from_single_file` on the
result reproduces every tensor. Works on meta tensors too (the loader uses that to list the keys a config needs).
"""
from __future__ import annotations

from collections.abc import Mapping

import torch

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
CLIP_PREFIX = "cond_stage_model.transformer.text_model."

_UNET_TOP = {
    "time_embedding.linear_1.": "time_embed.0.",
    "time_embedding.linear_2.": "time_embed.2.",
    "conv_in.": "input_blocks.0.0.",
    "conv_norm_out.": "out.0.",
    "conv_out.": "out.2.",
}
_UNET_RESNET = (
    ("norm1.", "in_layers.0."),
    ("conv1.", "in_layers.2."),
    ("norm2.", "out_layers.0."),
    ("conv2.", "out_layers.3."),
    ("time_emb_proj.", "emb_layers.1."),
    ("conv_shortcut.", "skip_connection."),
)
_VAE_TOP = {
    "conv_in.": "conv_in.",
    "conv_out.": "conv_out.",
    "conv_norm_out.": "norm_out.",
}
_VAE_ATTN = {
    "group_norm.": "norm.",
    "to_q.": "q.",
    "to_k.": "k.",
    "to_v.": "v.",
    "to_out.0.": "proj_out.",
}


class ConversionError(ValueError):
    """A diffusers key this converter has no LDM name for (so a model would silently lose weights)."""


def _cfg(config, name):
    return config[name] if isinstance(config, Mapping) else getattr(config, name)


def _resnet(rest: str) -> str:
    for old, new in _UNET_RESNET:
        if rest.startswith(old):
            return new + rest[len(old):]
    raise ConversionError(f"unknown UNet resnet parameter {rest!r}")


def unet_key_to_ldm(key: str, config) -> str:
    """One diffusers UNet2DConditionModel key -> its LDM name (without the `model.diffusion_model.` prefix)."""
    lpb = _cfg(config, "layers_per_block")
    if not isinstance(lpb, int):
        raise ConversionError("per-block layers_per_block lists are not SD 1.5 layout")
    for old, new in _UNET_TOP.items():
        if key.startswith(old):
            return new + key[len(old):]
    parts = key.split(".")
    if parts[0] == "down_blocks":
        b, kind = int(parts[1]), parts[2]
        if kind == "resnets":
            return f"input_blocks.{1 + b * (lpb + 1) + int(parts[3])}.0." + _resnet(".".join(parts[4:]))
        if kind == "attentions":
            return f"input_blocks.{1 + b * (lpb + 1) + int(parts[3])}.1." + ".".join(parts[4:])
        if kind == "downsamplers" and parts[4] == "conv":
            return f"input_blocks.{1 + b * (lpb + 1) + lpb}.0.op." + ".".join(parts[5:])
    elif parts[0] == "mid_block":
        kind, i = parts[1], int(parts[2])
        rest = ".".join(parts[3:])
        if kind == "resnets":
            return f"middle_block.{2 * i}." + _resnet(rest)
        if kind == "attentions":
            return f"middle_block.{2 * i + 1}." + rest
    elif parts[0] == "up_blocks":
        b, kind = int(parts[1]), parts[2]
        n = lpb + 1  # up blocks carry one layer more than down blocks
        if kind == "resnets":
            return f"output_blocks.{b * n + int(parts[3])}.0." + _resnet(".".join(parts[4:]))
        if kind == "attentions":
            return f"output_blocks.{b * n + int(parts[3])}.1." + ".".join(parts[4:])
        if kind == "upsamplers" and parts[4] == "conv":
            has_attn = "CrossAttn" in _cfg(config, "up_block_types")[b]
            return f"output_blocks.{b * n + lpb}.{2 if has_attn else 1}.conv." + ".".join(parts[5:])
    raise ConversionError(f"no LDM name for UNet key {key!r}")


def unet_to_ldm(state_dict: Mapping[str, torch.Tensor], config, prefix: str = UNET_PREFIX) -> dict[str, torch.Tensor]:
    return {prefix + unet_key_to_ldm(k, config): v for k, v in state_dict.items()}


def _vae_resnet(rest: str) -> str:
    return rest.replace("conv_shortcut.", "nin_shortcut.") if rest.startswith("conv_shortcut.") else rest


def vae_key_to_ldm(key: str, config) -> str:
    """One diffusers AutoencoderKL key -> its LDM name (without the `first_stage_model.` prefix)."""
    if key.startswith(("quant_conv.", "post_quant_conv.")):
        return key
    side, _, rest = key.partition(".")
    if side not in ("encoder", "decoder"):
        raise ConversionError(f"no LDM name for VAE key {key!r}")
    for old, new in _VAE_TOP.items():
        if rest.startswith(old):
            return f"{side}.{new}{rest[len(old):]}"
    parts = rest.split(".")
    if parts[0] == "mid_block":
        kind, i, tail = parts[1], int(parts[2]), ".".join(parts[3:])
        if kind == "resnets":
            return f"{side}.mid.block_{i + 1}." + _vae_resnet(tail)
        if kind == "attentions":
            for old, new in _VAE_ATTN.items():
                if tail.startswith(old):
                    return f"{side}.mid.attn_1.{new}{tail[len(old):]}"
    elif parts[0] == "down_blocks" and side == "encoder":
        i, kind = int(parts[1]), parts[2]
        if kind == "resnets":
            return f"encoder.down.{i}.block.{parts[3]}." + _vae_resnet(".".join(parts[4:]))
        if kind == "downsamplers" and parts[4] == "conv":
            return f"encoder.down.{i}.downsample.conv." + ".".join(parts[5:])
    elif parts[0] == "up_blocks" and side == "decoder":
        # LDM numbers decoder levels from the lowest resolution up; diffusers in execution order.
        i = len(_cfg(config, "up_block_types")) - 1 - int(parts[1])
        kind = parts[2]
        if kind == "resnets":
            return f"decoder.up.{i}.block.{parts[3]}." + _vae_resnet(".".join(parts[4:]))
        if kind == "upsamplers" and parts[4] == "conv":
            return f"decoder.up.{i}.upsample.conv." + ".".join(parts[5:])
    raise ConversionError(f"no LDM name for VAE key {key!r}")


def vae_to_ldm(state_dict: Mapping[str, torch.Tensor], config, prefix: str = VAE_PREFIX) -> dict[str, torch.Tensor]:
    out = {}
    for k, v in state_dict.items():
        name = vae_key_to_ldm(k, config)
        # LDM's VAE attention is 1x1 convs; diffusers uses linears.
        if ".mid.attn_1." in name and name.endswith(".weight") and v.ndim == 2:
            v = v.reshape(*v.shape, 1, 1)
        out[prefix + name] = v
    return out


def text_encoder_to_ldm(state_dict: Mapping[str, torch.Tensor], prefix: str = CLIP_PREFIX) -> dict[str, torch.Tensor]:
    """CLIPTextModel keys (transformers >= 5 has no `text_model.` level; older ones do) -> LDM names."""
    return {prefix + k.removeprefix("text_model."): v for k, v in state_dict.items()}


def pipeline_to_ldm(unet, vae, text_encoder) -> dict[str, torch.Tensor]:
    """Whole SD 1.5 single-file state dict from diffusers modules (vae may be None: a VAE-less checkpoint)."""
    sd = unet_to_ldm(unet.state_dict(), unet.config)
    if vae is not None:
        sd.update(vae_to_ldm(vae.state_dict(), vae.config))
    sd.update(text_encoder_to_ldm(text_encoder.state_dict()))
    return sd
