"""The four parts we generate with, without `StableDiffusionPipeline`.

We never call a diffusers pipeline (sampling, conditioning and decoding are ours) and LoRAs are applied by our
own hooks (lora/apply.py), so a checkpoint is just these four objects; building a pipeline would also need a
scheduler, a safety-checker slot and the pipelines package.
"""
from __future__ import annotations


class SDModules:
    """`unet`, `vae`, `text_encoder`, `tokenizer` of one loaded checkpoint (the same objects the engine runs)."""

    def __init__(self, *, unet, vae, text_encoder, tokenizer):
        self.unet, self.vae, self.text_encoder, self.tokenizer = unet, vae, text_encoder, tokenizer

    @property
    def components(self) -> dict:
        return {"unet": self.unet, "vae": self.vae, "text_encoder": self.text_encoder, "tokenizer": self.tokenizer}
