"""LoRA file formats: read, recognise, validate and convert to the peft layout diffusers loads.

Supported: kohya / A1111 (`lora_unet_*`, `lora_te_*`, lora_down/lora_up/alpha), LoCon (the same on conv layers),
kohya with the original (LDM) UNet names (`lora_unet_input_blocks_*` ...), diffusers (`*.lora.down.weight`,
attention-processor `to_q_lora`) and peft (`lora_A`/`lora_B`). LoHa, LoKr, (IA)^3, full-diff, OFT, GLoRA, DoRA and
SDXL/SD2 LoRAs are refused with a LoraError naming the type.

Key names are not converted by string heuristics: every Linear/Conv2d of the actual UNet and text encoder is
listed under each spelling a file may use (kohya, kohya-LDM, diffusers), and a key either names a real layer or
is reported. Shapes are checked against that layer, so a file is rejected before the model is touched.
The kohya scale alpha/rank is folded into lora_B, so the adapter's own scale is exactly the user's weight.
"""
from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import LoraError

if TYPE_CHECKING:  # detection is torch-free so the library listing can use it; conversion imports torch
    import torch
    from torch import nn

# Marker (substring of a key) -> type name, checked before anything else.
_UNSUPPORTED = (
    ("hada_w1_a", "LoHa"), ("hada_w1", "LoHa"),
    ("lokr_w1", "LoKr"), ("lokr_w2", "LoKr"),
    ("on_input", "(IA)³"),
    ("oft_blocks", "OFT"), ("oft_diag", "OFT"),
    (".a1.weight", "GLoRA"), (".b1.weight", "GLoRA"),
    ("lora_mid", "LoCon with Tucker decomposition (lora_mid)"),
    ("dora_scale", "DoRA"),
    ("w_norm", "LyCORIS norm-layer"), ("b_norm", "LyCORIS norm-layer"),
)
_BASE_BY_CONTEXT = {768: "SD1", 1024: "SD2", 2048: "SDXL"}
BASE_LABEL = {"SD1": "SD 1.5", "SD2": "SD 2.x", "SDXL": "SDXL"}

_KOHYA_SUFFIX = {"lora_down.weight": "down", "lora_up.weight": "up", "alpha": "alpha"}
_DIFFUSERS_SUFFIX = (
    (".lora_A.weight", "down"), (".lora_B.weight", "up"),
    (".lora.down.weight", "down"), (".lora.up.weight", "up"),
    (".lora_linear_layer.down.weight", "down"), (".lora_linear_layer.up.weight", "up"),
    ("_lora.down.weight", "down"), ("_lora.up.weight", "up"),
    (".alpha", "alpha"),
)
_LDM_KEY = re.compile(r"^lora_unet_(input_blocks|middle_block|output_blocks)_")


def _shape(v) -> tuple[int, ...]:
    if hasattr(v, "shape"):
        return tuple(v.shape)
    if isinstance(v, Mapping):  # a safetensors header entry
        return tuple(v.get("shape", ()))
    return tuple(v)


@dataclass(frozen=True)
class FormatInfo:
    kind: str  # "kohya" | "kohya-ldm" | "diffusers" | "peft"
    conv: bool  # LoCon: LoRA on conv layers with a kernel larger than 1x1
    has_unet: bool
    has_te: bool
    base: str | None  # "SD1" / "SD2" / "SDXL" guessed from the cross-attention width; None when unknown

    @property
    def label(self) -> str:
        kind = {"kohya": "kohya", "kohya-ldm": "kohya (original UNet names)", "diffusers": "diffusers",
                "peft": "peft"}[self.kind]
        return f"LoCon ({kind})" if self.conv else f"LoRA ({kind})"


def unsupported_type(keys) -> str | None:
    for key in keys:
        for marker, kind in _UNSUPPORTED:
            if marker in key:
                return kind
        if key.endswith(".diff") or key.endswith(".diff_b"):
            return "Full-diff"
    return None


def guess_base(shapes: Mapping[str, object]) -> str | None:
    """SD1 / SD2 / SDXL from what the file's layers look like, independent of the model it will meet."""
    for key in shapes:
        if key.startswith(("lora_te1_", "lora_te2_", "text_encoder_2.", "lora_unet_label_emb", "unet.add_embedding")):
            return "SDXL"
    for key, v in shapes.items():
        if "attn2" in key and ("to_k" in key or "to_v" in key) and ("lora_down" in key or "lora_A" in key
                                                                    or ".down." in key):
            s = _shape(v)
            if len(s) >= 2 and s[1] in _BASE_BY_CONTEXT:
                return _BASE_BY_CONTEXT[s[1]]
    for key, v in shapes.items():  # text-encoder-only files: the CLIP width tells the family too
        if key.startswith("lora_te_") and "q_proj" in key and "lora_down" in key:
            s = _shape(v)
            if len(s) >= 2 and s[1] in _BASE_BY_CONTEXT:
                return _BASE_BY_CONTEXT[s[1]]
    return None


def detect_format(shapes: Mapping[str, object], name: str = "LoRA") -> FormatInfo:
    """Recognise a LoRA from its keys (and shapes: tensors or safetensors header entries). Raises LoraError for
    types we do not apply, naming the type."""
    keys = list(shapes)
    if not keys:
        raise LoraError(f"{name} contains no tensors")
    kind = unsupported_type(keys)
    if kind:
        raise LoraError(f"{name} is a {kind} LoRA; {kind} LoRAs are not supported yet (only LoRA and LoCon)")
    base = guess_base(shapes)
    downs = [k for k in keys if k.endswith(("lora_down.weight", "lora_A.weight", ".down.weight"))]
    if not downs:
        raise LoraError(f"{name} is not a LoRA: none of its {len(keys)} tensors is a LoRA down/up pair "
                        f"(first keys: {', '.join(keys[:3])})")
    if all(k.startswith(("lora_unet_", "lora_te_", "lora_te1_", "lora_te2_")) for k in keys):
        fmt = "kohya-ldm" if any(_LDM_KEY.match(k) for k in keys) else "kohya"
        has_unet = any(k.startswith("lora_unet_") for k in keys)
        has_te = any(k.startswith(("lora_te_", "lora_te1_", "lora_te2_")) for k in keys)
    else:
        fmt = "peft" if any(".lora_A." in k for k in keys) else "diffusers"
        has_te = any(k.startswith("text_encoder") for k in keys)
        has_unet = any(not k.startswith("text_encoder") for k in keys)
    conv = any(len(_shape(shapes[k])) == 4 and _shape(shapes[k])[2:] != (1, 1) for k in downs)
    return FormatInfo(fmt, conv, has_unet, has_te, base)


def non_finite(tensors: Mapping[str, torch.Tensor]) -> list[str]:
    """Keys of the floating-point tensors holding NaN or Inf. One fused max-abs pass over all of them (the max of
    finite values cannot overflow), then a per-tensor look only when something is wrong."""
    import torch

    vals = {k: v for k, v in tensors.items() if v.is_floating_point() and v.numel()}
    if not vals:
        return []
    if bool(torch.stack([n.float() for n in torch._foreach_norm(list(vals.values()), float("inf"))]).isfinite().all()):
        return []
    return [k for k, v in vals.items() if not bool(v.isfinite().all())]


# -- reading --------------------------------------------------------------------------------------------------

def load_lora_file(path: Path, name: str | None = None) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(state dict, safetensors metadata). `.pt`/`.ckpt` go through torch.load(weights_only=True): no pickled code.
    Any failure is a LoraError naming the file."""
    import torch

    path = Path(path)
    name = name or path.name
    if path.suffix.lower() == ".safetensors":
        import safetensors.torch

        from .library import read_safetensors_header

        _, meta = read_safetensors_header(path)  # precise message for short / truncated files first
        try:
            # One read and one deserialize: 3.5x faster than a get_tensor per key (a LoRA has hundreds of
            # small tensors), which is most of a prefetch's CPU time, taken from the image sampling meanwhile.
            with open(path, "rb") as fh:
                sd = safetensors.torch.load(fh.read())
        except Exception as e:  # safetensors raises its own error types (SafetensorError, OSError, ...)
            raise LoraError(f"LoRA file {name} is corrupt or truncated: {e}") from e
        return sd, dict(meta or {})
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:
        raise LoraError(f"LoRA file {name} cannot be read (corrupt, truncated, or contains code): {e}") from e
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise LoraError(f"LoRA file {name} does not hold a dictionary of tensors")
    return {str(k): v for k, v in obj.items()}, {}


# -- the layers a LoRA may target -----------------------------------------------------------------------------

_ADAPTER_PARTS = ("lora_A", "lora_B", "lora_dropout", "lora_embedding_A", "lora_embedding_B", "lora_magnitude_vector")
_RESNET_SUB = {"conv1": "in_layers.2", "conv2": "out_layers.3", "time_emb_proj": "emb_layers.1",
               "conv_shortcut": "skip_connection"}


def lora_targets(model: nn.Module) -> dict[str, nn.Module]:
    """name -> Linear/Conv2d layer, peft wrappers seen through (their base_layer stands for them)."""
    from torch import nn

    out: dict[str, nn.Module] = {}
    for name, mod in model.named_modules():
        if not isinstance(mod, (nn.Linear, nn.Conv2d)):
            continue
        parts = name.split(".")
        if any(p in _ADAPTER_PARTS for p in parts):
            continue
        while parts and parts[-1] == "base_layer":
            parts.pop()
        out[".".join(parts)] = mod
    return out


def _ldm_name(name: str, cfg) -> str | None:
    """diffusers UNet layer name -> the original (LDM/sgm) name, from the UNet's config."""
    lpb = cfg.layers_per_block if isinstance(cfg.layers_per_block, int) else None
    if lpb is None:
        return None
    fixed = {"conv_in": "input_blocks.0.0", "conv_out": "out.2", "time_embedding.linear_1": "time_embed.0",
             "time_embedding.linear_2": "time_embed.2"}
    if name in fixed:
        return fixed[name]
    p = name.split(".")

    def sub(rest: list[str], resnet: bool) -> str:
        if resnet and rest and rest[0] in _RESNET_SUB:
            return ".".join([_RESNET_SUB[rest[0]]] + rest[1:])
        return ".".join(rest)

    if p[0] == "down_blocks" and len(p) >= 5:
        i, kind, j = int(p[1]), p[2], int(p[3])
        if kind == "resnets":
            return f"input_blocks.{1 + i * (lpb + 1) + j}.0." + sub(p[4:], True)
        if kind == "attentions":
            return f"input_blocks.{1 + i * (lpb + 1) + j}.1." + sub(p[4:], False)
        if kind == "downsamplers" and p[4:] == ["conv"]:
            return f"input_blocks.{(i + 1) * (lpb + 1)}.0.op"
    if p[0] == "mid_block" and len(p) >= 4:
        kind, j = p[1], int(p[2])
        idx = {("resnets", 0): 0, ("attentions", 0): 1, ("resnets", 1): 2}.get((kind, j))
        if idx is not None:
            return f"middle_block.{idx}." + sub(p[3:], kind == "resnets")
    if p[0] == "up_blocks" and len(p) >= 5:
        i, kind, j = int(p[1]), p[2], int(p[3])
        if kind == "resnets":
            return f"output_blocks.{i * (lpb + 1) + j}.0." + sub(p[4:], True)
        if kind == "attentions":
            return f"output_blocks.{i * (lpb + 1) + j}.1." + sub(p[4:], False)
        if kind == "upsamplers" and p[4:] == ["conv"]:
            has_attn = "CrossAttn" in cfg.up_block_types[i]
            return f"output_blocks.{i * (lpb + 1) + lpb}.{2 if has_attn else 1}.conv"
    return None


@dataclass
class TargetTable:
    """Every spelling a LoRA file may use for a layer -> (component, diffusers layer name, layer)."""

    by_key: dict[str, tuple[str, str, nn.Module]] = field(default_factory=dict)
    modules: dict[str, nn.Module] = field(default_factory=dict)  # "<component>.<diffusers layer name>" -> layer
    context_dim: int | None = None

    @classmethod
    def build(cls, unet: nn.Module | None, text_encoder: nn.Module | None) -> "TargetTable":
        t = cls()
        if unet is not None:
            cfg = getattr(unet, "config", None)
            t.context_dim = getattr(cfg, "cross_attention_dim", None)
            for name, mod in lora_targets(unet).items():
                entry = ("unet", name, mod)
                t.modules["unet." + name] = mod
                t.by_key["lora_unet_" + name.replace(".", "_")] = entry
                t.by_key["unet." + name] = entry
                if cfg is not None:
                    ldm = _ldm_name(name, cfg)
                    if ldm:
                        t.by_key.setdefault("lora_unet_" + ldm.replace(".", "_"), entry)
        if text_encoder is not None:
            for name, mod in lora_targets(text_encoder).items():
                entry = ("text_encoder", name, mod)
                t.modules["text_encoder." + name] = mod
                canonical = name if name.startswith("text_model.") else "text_model." + name
                short = canonical.removeprefix("text_model.")
                t.by_key["lora_te_" + canonical.replace(".", "_")] = entry
                t.by_key.setdefault("lora_te_" + short.replace(".", "_"), entry)
                t.by_key["text_encoder." + canonical] = entry
                t.by_key["text_encoder." + short] = entry
        return t


# -- conversion -----------------------------------------------------------------------------------------------

@dataclass
class ConvertedLora:
    """A validated LoRA in diffusers' peft layout: `unet.<layer>.lora_A.weight` / `text_encoder.<layer>.lora_B...`,
    with alpha/rank folded into lora_B (so the adapter scale equals the user's weight)."""

    state_dict: dict[str, torch.Tensor]
    format: FormatInfo
    layers: dict[str, tuple[str, int, float]]  # "<component>.<layer>" -> (component, rank, alpha)
    skipped: list[str] = field(default_factory=list)  # file layers this model does not have (A1111 skips them too)

    @property
    def has_unet(self) -> bool:
        return any(c == "unet" for c, _, _ in self.layers.values())

    @property
    def has_te(self) -> bool:
        return any(c == "text_encoder" for c, _, _ in self.layers.values())

    def component(self, comp: str) -> dict[str, torch.Tensor]:
        return {k: v for k, v in self.state_dict.items() if k.startswith(comp + ".")}


def _group(state_dict: Mapping[str, torch.Tensor], fmt: FormatInfo, name: str) -> dict[str, dict[str, torch.Tensor]]:
    groups: dict[str, dict[str, torch.Tensor]] = {}
    unknown: list[str] = []
    for key, value in state_dict.items():
        if fmt.kind.startswith("kohya"):
            layer, _, suffix = key.partition(".")
            role = _KOHYA_SUFFIX.get(suffix)
        else:
            role = None
            for suffix, r in _DIFFUSERS_SUFFIX:
                if key.endswith(suffix):
                    layer, role = key[: -len(suffix)], r
                    break
            if role is not None:
                if not layer.startswith(("unet.", "text_encoder.")):
                    layer = "unet." + layer  # save_attn_procs files carry UNet layers without a prefix
                layer = re.sub(r"\.processor\.(to_q|to_k|to_v)$", r".\1", layer)
                layer = re.sub(r"\.processor\.to_out$", ".to_out.0", layer)
        if role is None:
            unknown.append(key)
            continue
        groups.setdefault(layer, {})[role] = value
    if unknown:
        raise LoraError(f"{name} has keys this {fmt.label} reader does not know: {', '.join(unknown[:5])}"
                        + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""))
    return groups


def _fit(t: torch.Tensor, mod: nn.Module, role: str) -> torch.Tensor | None:
    """Reshape a down/up matrix to what peft builds for this layer, or None when it cannot fit."""
    from torch import nn

    if isinstance(mod, nn.Conv2d):
        if t.ndim == 2:
            t = t[:, :, None, None]
        if t.ndim != 4:
            return None
        if role == "down":
            ok = t.shape[1] == mod.in_channels and tuple(t.shape[2:]) == tuple(mod.kernel_size)
        else:
            ok = t.shape[0] == mod.out_channels and tuple(t.shape[2:]) == (1, 1)
        return t if ok else None
    if t.ndim == 4 and tuple(t.shape[2:]) == (1, 1):
        t = t[:, :, 0, 0]
    if t.ndim != 2:
        return None
    ok = t.shape[1] == mod.in_features if role == "down" else t.shape[0] == mod.out_features
    return t if ok else None


def convert(state_dict: Mapping[str, torch.Tensor], table: TargetTable, name: str = "LoRA",
            fmt: FormatInfo | None = None) -> ConvertedLora:
    """Validate a LoRA state dict against the model's layers and convert it. Touches nothing but its input."""
    import torch

    fmt = fmt or detect_format(state_dict, name)
    model_base = _BASE_BY_CONTEXT.get(table.context_dim or 0)
    if fmt.base in ("SDXL", "SD2") and fmt.base != model_base:
        this = BASE_LABEL.get(model_base or "SD1", "SD 1.5")
        raise LoraError(f"{name} was made for {BASE_LABEL[fmt.base]}, this checkpoint is {this}")
    out: dict[str, torch.Tensor] = {}
    layers: dict[str, tuple[str, int, float]] = {}
    skipped: list[str] = []
    mismatched: list[str] = []
    origin: dict[str, str] = {}  # our layer name -> the file's, for messages
    for layer, parts in _group(state_dict, fmt, name).items():
        if "down" not in parts or "up" not in parts:
            missing = "lora_up" if "down" in parts else "lora_down"
            raise LoraError(f"{name} is incomplete: layer {layer} has no {missing} weight")
        entry = table.by_key.get(layer)
        if entry is None:
            skipped.append(layer)
            continue
        comp, target, mod = entry
        down, up = _fit(parts["down"], mod, "down"), _fit(parts["up"], mod, "up")
        if down is None or up is None or down.shape[0] != up.shape[1]:
            mismatched.append(f"{layer} (down {tuple(parts['down'].shape)}, up {tuple(parts['up'].shape)}, "
                              f"layer {tuple(mod.weight.shape)})")
            continue
        rank = int(down.shape[0])
        alpha = float(parts["alpha"].float().item()) if "alpha" in parts else float(rank)
        if not math.isfinite(alpha) or rank == 0:
            raise LoraError(f"{name} has a bad alpha/rank on layer {layer} (alpha {alpha}, rank {rank})")
        scale = alpha / rank
        w = mod.weight
        down32 = down.to(torch.float32)
        up32 = up.to(torch.float32) * scale
        out[f"{comp}.{target}.lora_A.weight"] = down32.to(device=w.device, dtype=w.dtype).contiguous()
        out[f"{comp}.{target}.lora_B.weight"] = up32.to(device=w.device, dtype=w.dtype).contiguous()
        layers[f"{comp}.{target}"] = (comp, rank, alpha)
        origin[f"{comp}.{target}"] = layer
    bad = non_finite(out)  # after the alpha/rank scaling (and the cast to the model's dtype) too
    if bad:
        layer = origin[bad[0].rsplit(".lora_", 1)[0]]
        raise LoraError(f"{name} is corrupt: layer {layer} contains NaN or infinite values")
    if mismatched:
        raise LoraError(f"{name} does not fit this checkpoint's layers: {'; '.join(mismatched[:3])}"
                        + (f" and {len(mismatched) - 3} more" if len(mismatched) > 3 else ""))
    if not layers:
        raise LoraError(f"{name} does not match this checkpoint: none of its {len(skipped)} layers exist in the model "
                        f"(e.g. {', '.join(skipped[:3])})")
    return ConvertedLora(out, fmt, layers, skipped)
