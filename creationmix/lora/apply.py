"""LoRAs applied as forward hooks on the model's own Linear/Conv2d layers, unfused: `y = W x + Σ w·B(A x)`.

This is what peft's LoRA layers compute (same operations, same order, so images are bit-identical to the peft
adapters we used before), without what made peft slow for previews: injecting an adapter walked and rewrapped
every module of the UNet and text encoder (140–220 ms per new LoRA on the tiny model, more at real size), on the
thread that generates. Here a LoRA is only its tensors; making a set of LoRAs active registers one hook per
touched layer (a dict insert) and points it at those tensors, so switching LoRAs costs well under a millisecond
per hundred layers and the model's modules, parameters and state dict are never changed. A layer with no active
LoRA has no hook at all: weight 0 and "no LoRA" run the plain checkpoint's code (bit-identical by construction).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .formats import ConvertedLora, TargetTable


@dataclass(frozen=True)
class LayerLora:
    """One LoRA's part on one layer: down (A) and up (B, alpha/rank folded in), in the layer's dtype/device."""

    comp: str  # "unet" | "text_encoder"
    module: nn.Module
    down: torch.Tensor
    up: torch.Tensor


def layer_parts(conv: ConvertedLora, table: TargetTable) -> list[LayerLora]:
    """The layers a converted LoRA touches, resolved to the live modules once (when it is loaded)."""
    sd = conv.state_dict
    return [LayerLora(comp, table.modules[layer], sd[f"{layer}.lora_A.weight"], sd[f"{layer}.lora_B.weight"])
            for layer, (comp, _rank, _alpha) in conv.layers.items()]


class _Hook:
    """The forward hook of one layer: adds each active LoRA's `B(A x) * weight` to the layer's output."""

    __slots__ = ("entries", "handle", "conv")

    def __init__(self, module: nn.Module) -> None:
        self.entries: tuple[tuple[torch.Tensor, torch.Tensor, float, str], ...] = ()
        self.conv = isinstance(module, nn.Conv2d)
        self.handle = module.register_forward_hook(self)

    def __call__(self, module: nn.Module, args, output):
        x = args[0]
        for down, up, scale, _name in self.entries:
            h = x if x.dtype == down.dtype else x.to(down.dtype)
            if self.conv:  # peft's LoRA conv: A with the layer's kernel/stride/padding, B a 1x1 conv
                h = F.conv2d(F.conv2d(h, down, None, module.stride, module.padding, module.dilation), up)
            else:
                h = F.linear(F.linear(h, down), up)
            output = output + h * scale
        return output


class HookSet:
    """Which LoRAs run on which layer. `apply` replaces the whole set at once."""

    def __init__(self) -> None:
        self._hooks: dict[int, tuple[nn.Module, _Hook]] = {}  # id(module) -> its hook

    def apply(self, plan: list[tuple[str, dict[str, float], list[LayerLora]]]) -> None:
        """plan: (name, weight per component, parts) in prompt order; a part runs when its component's weight
        is not 0. New hooks are registered first (the only step that can fail: then they are removed and the
        previous set stays as it was), then every hook's entries are swapped, then unused hooks are removed."""
        wanted: dict[int, tuple[nn.Module, list]] = {}
        for name, weights, parts in plan:
            for p in parts:
                w = weights[p.comp]
                if w != 0:
                    wanted.setdefault(id(p.module), (p.module, []))[1].append((p.down, p.up, float(w), name))
        added: list[int] = []
        try:
            for key, (module, _) in wanted.items():
                if key not in self._hooks:
                    self._hooks[key] = (module, _Hook(module))
                    added.append(key)
        except BaseException:
            for key in added:
                self._hooks.pop(key)[1].handle.remove()
            raise
        for key, (_, hook) in self._hooks.items():
            hook.entries = tuple(wanted[key][1]) if key in wanted else ()
        for key in [k for k in self._hooks if k not in wanted]:
            self._hooks.pop(key)[1].handle.remove()

    def clear(self) -> None:
        self.apply([])
