"""Gradio UI. Talks only to a ServiceAPI and imports no torch (a test checks it)."""
from . import gradio_import

gradio_import.install()  # before gradio's first import: skip its per-launch .pyi rewriting (see the module)

from .app import Studio, build_ui  # noqa: E402

__all__ = ["Studio", "build_ui"]
