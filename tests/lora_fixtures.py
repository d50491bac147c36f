"""Writers of small LoRA files for the tiny model (and fakes of the kinds we refuse).

The kohya LoRA is built from the model's own layer names, so it fits whatever the tiny config is: rank 4,
alpha 2, every UNet attention to_q/to_k/to_v/to_out.0, every text-encoder q/k/v/out_proj and mlp fc1/fc2, and
one LoCon layer on a 3x3 resnet conv. The "original UNet names" variant spells the same layers the LDM way,
with its own small name table (not the one under test).
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from torch import nn

RANK = 4
ALPHA = 2.0
CONV_LAYER = "down_blocks.0.resnets.0.conv1"
UNET_ATTN = re.compile(r"attn[12]\.(to_q|to_k|to_v|to_out\.0)$")
TE_LAYERS = re.compile(r"(self_attn\.(q_proj|k_proj|v_proj|out_proj)|mlp\.(fc1|fc2))$")

KOHYA_METADATA = {
    "ss_output_name": "tiny_style",
    "ss_network_dim": str(RANK),
    "ss_network_alpha": str(ALPHA),
    "ss_base_model_version": "sd_v1",
    "ss_sd_model_name": "v1-5-pruned-emaonly.safetensors",
    "ss_tag_frequency": json.dumps({"10_tinystyle": {"tinystyle": 40, "1girl": 25, "solo": 25, "outdoors": 3},
                                    "5_extra": {"tinystyle": 10, "smile": 12}}),
}


def _layers(model: nn.Module, pattern: re.Pattern) -> list[tuple[str, nn.Module]]:
    return [(n, m) for n, m in model.named_modules()
            if isinstance(m, (nn.Linear, nn.Conv2d)) and pattern.search(n) and "lora_" not in n and "base_layer" not in n]


def _ldm(name: str, lpb: int) -> str:
    """Tiny-config LDM names for the layers this writer uses (attentions and one resnet conv)."""
    m = re.match(r"down_blocks\.(\d+)\.(attentions|resnets)\.(\d+)\.(.*)", name)
    if m:
        i, kind, j, rest = int(m[1]), m[2], int(m[3]), m[4]
        rest = rest.replace("conv1", "in_layers.2") if kind == "resnets" else rest
        return f"input_blocks.{1 + i * (lpb + 1) + j}.{0 if kind == 'resnets' else 1}.{rest}"
    m = re.match(r"up_blocks\.(\d+)\.attentions\.(\d+)\.(.*)", name)
    if m:
        return f"output_blocks.{int(m[1]) * (lpb + 1) + int(m[2])}.1.{m[3]}"
    m = re.match(r"mid_block\.attentions\.0\.(.*)", name)
    if m:
        return f"middle_block.1.{m[1]}"
    raise AssertionError(f"no LDM name for {name}")


def kohya_lora(unet: nn.Module | None, text_encoder: nn.Module | None, *, rank: int = RANK, alpha: float | None = ALPHA,
               seed: int = 0, scale: float = 0.2, conv: bool = True, ldm_names: bool = False,
               attn_filter: str = "") -> dict[str, torch.Tensor]:
    """A kohya/A1111 LoRA state dict for the given model (either part may be None: UNet-only / TE-only)."""
    g = torch.Generator().manual_seed(seed)
    sd: dict[str, torch.Tensor] = {}

    def add(prefix: str, mod: nn.Module) -> None:
        if isinstance(mod, nn.Conv2d):
            down = torch.randn(rank, mod.in_channels, *mod.kernel_size, generator=g) * scale
            up = torch.randn(mod.out_channels, rank, 1, 1, generator=g) * scale
        else:
            down = torch.randn(rank, mod.in_features, generator=g) * scale
            up = torch.randn(mod.out_features, rank, generator=g) * scale
        sd[f"{prefix}.lora_down.weight"] = down
        sd[f"{prefix}.lora_up.weight"] = up
        if alpha is not None:
            sd[f"{prefix}.alpha"] = torch.tensor(float(alpha))

    if unet is not None:
        lpb = unet.config.layers_per_block
        layers = [(n, m) for n, m in _layers(unet, UNET_ATTN) if attn_filter in n]
        if conv:
            layers.append((CONV_LAYER, unet.get_submodule(CONV_LAYER)))
        for n, m in layers:
            name = _ldm(n, lpb) if ldm_names else n
            add("lora_unet_" + name.replace(".", "_"), m)
    if text_encoder is not None:
        for n, m in _layers(text_encoder, TE_LAYERS):
            canonical = n if n.startswith("text_model.") else "text_model." + n
            add("lora_te_" + canonical.replace(".", "_"), m)
    return sd


def peft_lora(kohya: dict[str, torch.Tensor], unet: nn.Module, text_encoder: nn.Module) -> dict[str, torch.Tensor]:
    """The same LoRA in diffusers' peft layout (`unet.<layer>.lora_A.weight`), alpha folded into lora_B."""
    names = {"lora_unet_" + n.replace(".", "_"): "unet." + n for n, _ in _layers(unet, re.compile(".*"))}
    names.update({"lora_te_" + ("text_model." + n).replace(".", "_"): "text_encoder." + n
                  for n, _ in _layers(text_encoder, re.compile(".*"))})
    out = {}
    for key, v in kohya.items():
        layer, _, suffix = key.partition(".")
        if suffix == "lora_down.weight":
            up = kohya[f"{layer}.lora_up.weight"]
            a = kohya.get(f"{layer}.alpha")
            s = (float(a) / v.shape[0]) if a is not None else 1.0
            out[f"{names[layer]}.lora_A.weight"] = v
            out[f"{names[layer]}.lora_B.weight"] = up * s
    return out


def write_lora(path: Path, sd: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> Path:
    """`.safetensors` (with metadata) or `.pt`/`.ckpt` (a plain pickled dict of tensors)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file
        save_file({k: v.contiguous() for k, v in sd.items()}, str(path), metadata=metadata)
    else:
        torch.save(sd, path)
    return path


def write_sidecar(lora_path: Path, *, preferred_weight: float = 0.0, activation_text: str = "",
                  negative_text: str = "", sd_version: str = "SD1", description: str = "") -> Path:
    """A1111's user-metadata sidecar `<stem>.json`."""
    side = Path(lora_path).with_suffix(".json")
    side.write_text(json.dumps({"description": description, "sd version": sd_version,
                                "activation text": activation_text, "preferred weight": preferred_weight,
                                "negative text": negative_text, "notes": ""}, indent=4))
    return side


def loha_fake(rank: int = 4, dim: int = 32) -> dict[str, torch.Tensor]:
    p = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q"
    return {f"{p}.hada_w1_a": torch.randn(dim, rank), f"{p}.hada_w1_b": torch.randn(rank, dim),
            f"{p}.hada_w2_a": torch.randn(dim, rank), f"{p}.hada_w2_b": torch.randn(rank, dim),
            f"{p}.alpha": torch.tensor(float(rank))}


def lokr_fake() -> dict[str, torch.Tensor]:
    p = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q"
    return {f"{p}.lokr_w1": torch.randn(4, 4), f"{p}.lokr_w2": torch.randn(8, 8), f"{p}.alpha": torch.tensor(4.0)}


def ia3_fake() -> dict[str, torch.Tensor]:
    p = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_k"
    return {f"{p}.weight": torch.randn(32), f"{p}.on_input": torch.tensor(False)}


def full_diff_fake() -> dict[str, torch.Tensor]:
    p = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q"
    return {f"{p}.diff": torch.randn(32, 32)}


def sdxl_fake(rank: int = 4) -> dict[str, torch.Tensor]:
    out = {}
    for p, din, dout in (("lora_te1_text_model_encoder_layers_0_self_attn_q_proj", 768, 768),
                         ("lora_te2_text_model_encoder_layers_0_self_attn_q_proj", 1280, 1280),
                         ("lora_unet_input_blocks_4_1_transformer_blocks_0_attn2_to_k", 2048, 640)):
        out[f"{p}.lora_down.weight"] = torch.randn(rank, din) * 0.01
        out[f"{p}.lora_up.weight"] = torch.zeros(dout, rank)
        out[f"{p}.alpha"] = torch.tensor(float(rank))
    return out


def sd2_fake(rank: int = 4) -> dict[str, torch.Tensor]:
    p = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k"
    return {f"{p}.lora_down.weight": torch.randn(rank, 1024) * 0.01, f"{p}.lora_up.weight": torch.zeros(320, rank),
            f"{p}.alpha": torch.tensor(float(rank))}


def truncate(path: Path, keep: float = 0.6) -> Path:
    """Cut a file to a fraction of its size (an interrupted download)."""
    data = Path(path).read_bytes()
    Path(path).write_bytes(data[: int(len(data) * keep)])
    return Path(path)


def write_garbage(path: Path, size: int = 4096) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x07" * 8 + bytes(range(256)) * (size // 256))
    return path


def merged_delta(sd: dict[str, torch.Tensor], kohya_name: str, weight: float) -> torch.Tensor:
    """A1111's arithmetic for one layer: weight * (alpha/rank) * up @ down, shaped like the layer's weight."""
    down = sd[f"{kohya_name}.lora_down.weight"].double()
    up = sd[f"{kohya_name}.lora_up.weight"].double()
    rank = down.shape[0]
    alpha = float(sd[f"{kohya_name}.alpha"]) if f"{kohya_name}.alpha" in sd else rank
    delta = up.flatten(1) @ down.flatten(1)
    if down.ndim == 4:
        delta = delta.reshape(up.shape[0], *down.shape[1:])
    return weight * (alpha / rank) * delta
