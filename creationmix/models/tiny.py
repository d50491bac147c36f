"""Tiny random SD 1.5-architecture models for tests and the offline demo.

Same module types and key layout as SD 1.5 (conv 1x1 attention projections, CrossAttn down/up blocks, a
4-level VAE so the latent is image/8, a CLIP text encoder with the real 49408-token vocabulary), only narrow.
The CLIP's final LayerNorm gets a random non-zero weight and bias: with the default bias 0 the hidden states
average ~0 and A1111's emphasis renormalisation (divide by the new mean) would blow up.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from .ldm_convert import pipeline_to_ldm, vae_to_ldm

RESOURCES = Path(__file__).resolve().parent.parent / "resources" / "sd15"

TINY_UNET_CONFIG = dict(
    sample_size=8,
    in_channels=4,
    out_channels=4,
    block_out_channels=(32, 64),
    layers_per_block=1,
    down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
    cross_attention_dim=32,
    attention_head_dim=2,  # diffusers' SD1 quirk: this is the number of heads
    norm_num_groups=32,
    use_linear_projection=False,
)
TINY_VAE_CONFIG = dict(
    in_channels=3,
    out_channels=3,
    latent_channels=4,
    block_out_channels=(8, 16, 16, 16),
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
    layers_per_block=1,
    norm_num_groups=4,
    sample_size=64,
    scaling_factor=0.18215,
)
TINY_TEXT_CONFIG = dict(
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=3,
    num_attention_heads=4,
    max_position_embeddings=77,
    vocab_size=49408,
    hidden_act="quick_gelu",
    projection_dim=32,
    bos_token_id=49406,
    eos_token_id=49407,
    pad_token_id=49407,
)

MODEL_INDEX = {
    "_class_name": "StableDiffusionPipeline",
    "_diffusers_version": "0.42.1",
    "feature_extractor": [None, None],
    "safety_checker": [None, None],
    "scheduler": ["diffusers", "PNDMScheduler"],
    "text_encoder": ["transformers", "CLIPTextModel"],
    "tokenizer": ["transformers", "CLIPTokenizer"],
    "unet": ["diffusers", "UNet2DConditionModel"],
    "vae": ["diffusers", "AutoencoderKL"],
}


def _build_vae():
    from diffusers import AutoencoderKL
    return AutoencoderKL(**TINY_VAE_CONFIG)


def tiny_components(seed: int = 0) -> dict:
    """{"unet", "vae", "text_encoder", "tokenizer", "scheduler"}: fresh tiny modules, deterministic from seed.

    The global torch RNG is left as it was."""
    from diffusers import PNDMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(**TINY_UNET_CONFIG)
        vae = _build_vae()
        te = CLIPTextModel(CLIPTextConfig(**TINY_TEXT_CONFIG))
        with torch.no_grad():
            ln = te.final_layer_norm
            ln.weight.copy_(torch.rand_like(ln.weight) + 0.5)
            ln.bias.copy_(0.5 + 0.25 * torch.randn_like(ln.bias))
    for m in (unet, vae, te):
        m.eval().requires_grad_(False)
    return {
        "unet": unet,
        "vae": vae,
        "text_encoder": te,
        "tokenizer": CLIPTokenizer.from_pretrained(RESOURCES / "tokenizer"),
        "scheduler": PNDMScheduler.from_pretrained(RESOURCES / "scheduler"),
    }


def _extra_keys() -> dict[str, torch.Tensor]:
    """Non-model entries real A1111-era SD 1.5 files carry; a loader must ignore them."""
    betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float64) ** 2
    return {
        "betas": betas.float(),
        "alphas_cumprod": torch.cumprod(1 - betas, 0).float(),
        "model_ema.decay": torch.tensor(0.9999),
        "model_ema.num_updates": torch.tensor(0, dtype=torch.int32),
        "cond_stage_model.transformer.text_model.embeddings.position_ids": torch.arange(77).unsqueeze(0),
    }


def write_config_folder(folder: Path, components: dict, *, with_tokenizer: bool = False) -> Path:
    """diffusers-layout config folder (no weights) for the components, as the loader's `config=`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    from ..fsio import write_atomic
    write_atomic(folder / "model_index.json", json.dumps(MODEL_INDEX, indent=2) + "\n", what="model config")
    components["unet"].save_config(folder / "unet")
    components["vae"].save_config(folder / "vae")
    components["text_encoder"].config.save_pretrained(folder / "text_encoder")
    components["scheduler"].save_config(folder / "scheduler")
    if with_tokenizer:
        shutil.copytree(RESOURCES / "tokenizer", folder / "tokenizer", dirs_exist_ok=True)
    return folder


def _drop(sd: dict, drop_keys) -> dict:
    drop = tuple(drop_keys)
    return {k: v for k, v in sd.items() if not any(k == d or (d.endswith(".") and k.startswith(d)) for d in drop)}


def _cast(sd: dict, dtype: torch.dtype) -> dict:
    return {k: (v.to(dtype) if v.is_floating_point() else v).contiguous() for k, v in sd.items()}


def save_state_dict(sd: dict, path: Path) -> None:
    """`.safetensors` via safetensors; anything else as a pickled {"state_dict": ...} (.ckpt/.pt)."""
    from ..fsio import write_atomic
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import save
        write_atomic(path, save(sd, metadata={"format": "pt"}), what="checkpoint")
    else:
        write_atomic(path, lambda fh: torch.save({"state_dict": sd}, fh), what="checkpoint")


def config_dir_for(path: Path) -> Path:
    """`<stem>.config/` beside a checkpoint: the sidecar the loader prefers over the shipped SD 1.5 configs."""
    path = Path(path)
    return path.with_name(path.stem + ".config")


def write_tiny_checkpoint(path, *, seed: int = 0, with_vae: bool = True, dtype: torch.dtype = torch.float32,
                          drop_keys=(), extra_keys: bool = True, with_tokenizer: bool = False) -> Path:
    """Write a tiny LDM-layout single file (`.safetensors`, or `.ckpt` = torch.save({"state_dict": ...}))
    plus its `<stem>.config/` sidecar. `drop_keys`: exact LDM keys, or prefixes ending in "." to remove."""
    path = Path(path)
    comps = tiny_components(seed)
    sd = pipeline_to_ldm(comps["unet"], comps["vae"] if with_vae else None, comps["text_encoder"])
    if extra_keys:
        sd.update(_extra_keys())
    sd = _cast(_drop(sd, drop_keys), dtype)
    # The config sidecar first: once the checkpoint file exists (written whole), its configs are complete.
    write_config_folder(config_dir_for(path), comps, with_tokenizer=with_tokenizer)
    save_state_dict(sd, path)
    return path


def write_tiny_vae(path, *, seed: int = 1, layout: str = "ldm", prefix: str = "",
                   dtype: torch.dtype = torch.float32) -> Path:
    """A tiny VAE file as people ship them: layout "ldm" (`encoder.down.0...`, optionally with `prefix`, e.g.
    "first_stage_model.") or "diffusers" (`encoder.down_blocks.0...`). Fits the tiny checkpoints."""
    path = Path(path)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        vae = _build_vae()
    sd = vae.state_dict()
    if layout == "ldm":
        sd = vae_to_ldm(sd, vae.config, prefix=prefix)
    elif layout != "diffusers":
        raise ValueError(f"layout must be 'ldm' or 'diffusers', got {layout!r}")
    save_state_dict(_cast(dict(sd), dtype), path)
    return path


__all__ = ["tiny_components", "write_tiny_checkpoint", "write_tiny_vae", "write_config_folder", "config_dir_for",
           "save_state_dict", "TINY_UNET_CONFIG", "TINY_VAE_CONFIG", "TINY_TEXT_CONFIG", "RESOURCES"]
