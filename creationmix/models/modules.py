"""The four parts we generate with, and diffusers' LoRA loader over them, without `StableDiffusionPipeline`.

We never call a diffusers pipeline (sampling, conditioning and decoding are ours); what we need from diffusers
beyond the models is its LoRA loader (`load_lora_weights` / `delete_adapters` / `unload_lora_weights`, the
`StableDiffusionLoraLoaderMixin` methods). Building a `StableDiffusionPipeline` also needs a scheduler, a safety
checker slot and the pipelines package; this holder gives the mixin what it reads (`unet`, `text_encoder`,
`components`, `hf_device_map`) and builds it only when the first LoRA is loaded, so a run without LoRAs never
imports the LoRA loader at all.
"""
from __future__ import annotations


class SDModules:
    """`unet`, `vae`, `text_encoder`, `tokenizer` of one loaded checkpoint (the same objects the engine runs)."""

    def __init__(self, *, unet, vae, text_encoder, tokenizer):
        self.unet, self.vae, self.text_encoder, self.tokenizer = unet, vae, text_encoder, tokenizer
        self._loader = None

    @property
    def components(self) -> dict:
        return {"unet": self.unet, "vae": self.vae, "text_encoder": self.text_encoder, "tokenizer": self.tokenizer}

    def _lora_loader(self):
        if self._loader is None:
            self._loader = _make_loader(self)
        return self._loader

    def unload_lora_weights(self) -> None:
        if self._loader is not None:  # nothing was ever loaded: nothing to unload (and nothing to import)
            self._loader.unload_lora_weights()

    def __getattr__(self, name: str):
        # Only reached for what the holder lacks: diffusers' LoRA methods (load_lora_weights, delete_adapters,
        # get_list_adapters, ...), as StableDiffusionPipeline has them; they inject peft adapters into the modules.
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._lora_loader(), name)


def _make_loader(mods: SDModules):
    from diffusers.loaders import StableDiffusionLoraLoaderMixin

    class _Loader(StableDiffusionLoraLoaderMixin):
        hf_device_map = None  # no accelerate device map: diffusers then checks for offload hooks itself

        @property
        def unet(self):
            return mods.unet

        @property
        def text_encoder(self):
            return mods.text_encoder

        @property
        def components(self):
            return mods.components

    return _Loader()
