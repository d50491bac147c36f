"""Gradio UI. Talks only to a ServiceAPI and imports no torch (a test checks it)."""
from .app import Studio, build_ui

__all__ = ["Studio", "build_ui"]
