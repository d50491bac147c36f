"""CreationMix: A1111-faithful SD 1.5 previews for LoRA authors."""
__version__ = "0.1.0"
