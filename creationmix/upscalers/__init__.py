"""Upscalers for the hires pass and Extras-style upscaling: one table of names (torch-free, `table`), the model
architectures (`archs`), file loading (`models`), A1111's tiling and resize rules (`pixels`) and a cached runner
(`runner`). Only `table` is imported here so `params` and the UI stay torch-free."""
from .table import (BUILTIN_MODELS, LATENT_MODES, MODEL_EXTS, PIL_UPSCALERS, UPSCALER_NAMES, UpscalerEntry,
                    check_upscaler_name, find_model_file, list_upscalers)

__all__ = ["BUILTIN_MODELS", "LATENT_MODES", "MODEL_EXTS", "PIL_UPSCALERS", "UPSCALER_NAMES", "UpscalerEntry",
           "check_upscaler_name", "find_model_file", "list_upscalers"]
