"""LoRA library, A1111 `<lora:...>` tags and applying LoRAs (forward hooks, apply.py).

tags and library are torch-free at import (the UI uses them); formats, apply and manager import torch.
"""
from .library import LoraInfo, LoraLibrary, read_safetensors_header
from .tags import (LoraRequest, extract_lora_tags, extract_prompt_loras, list_lora_weights, merge_requests,
                   set_lora_weight)

__all__ = [
    "LoraInfo", "LoraLibrary", "LoraManager", "LoraRequest", "extract_lora_tags", "extract_prompt_loras",
    "list_lora_weights", "merge_requests", "read_safetensors_header", "set_lora_weight",
]


def __getattr__(name):  # LoraManager pulls in torch: only when asked for
    if name == "LoraManager":
        from .manager import LoraManager
        return LoraManager
    raise AttributeError(name)
