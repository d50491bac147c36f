"""The "Settings" tab: the user's defaults for new pages (A1111's Settings -> Stable Diffusion / Sampler
parameters), kept in `<data dir>/ui-settings.json`. Torch-free.

Only generation defaults that GenerationParams already knows are offered (RNG source, emphasis mode, prompt
syntax, clip skip, sampler, schedule); the file is checked by a schema that rejects unknown keys, and a bad or
unreadable file means "no saved defaults" with a log line, never a page that does not start.
"""
from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import gradio as gr
from pydantic import BaseModel, ConfigDict, ValidationError

from ..errors import InvalidParameter
from ..params import EMPHASIS_MODES, LIMITS, PROMPT_SYNTAXES, RNG_SOURCES, SAMPLERS, SCHEDULES, GenerationParams

log = logging.getLogger("creationmix.ui")
SETTINGS_FILE = "ui-settings.json"
FIELDS = ("rng", "emphasis", "prompt_syntax", "clip_skip", "sampler", "schedule")


class UiDefaults(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rng: str | None = None
    emphasis: str | None = None
    prompt_syntax: str | None = None
    clip_skip: int | None = None
    sampler: str | None = None
    schedule: str | None = None

    def overrides(self) -> dict[str, Any]:
        return {k: v for k, v in self.model_dump().items() if v is not None}

    def apply(self, params: GenerationParams) -> GenerationParams:
        """`params` with these defaults; raises InvalidParameter (GenerationParams' own checks) when bad."""
        return params.replace(**self.overrides())


def load_defaults(path: Path | None) -> UiDefaults:
    if path is None or not Path(path).is_file():
        return UiDefaults()
    try:
        defaults = UiDefaults.model_validate(json.loads(Path(path).read_text(encoding="utf-8")))
        defaults.apply(GenerationParams())
        return defaults
    except (OSError, ValueError, ValidationError, InvalidParameter) as e:
        log.warning("ignoring %s: %s", path, str(e).splitlines()[0])
        return UiDefaults()


def save_defaults(path: Path, defaults: UiDefaults) -> None:
    defaults.apply(GenerationParams())  # refuse what the engine would refuse
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(json.dumps(defaults.overrides(), indent=2) + "\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class SettingsTab:
    """Use: inside `with gr.Tab("Settings"):` call `SettingsTab(path, fields).build()`; `fields` is
    Studio.f, so "Apply" also sets the open page's widgets (by field name)."""

    def __init__(self, path: Path | None, fields: dict[str, Any]):
        self.path = path
        self.fields = fields

    def build(self) -> None:
        d = load_defaults(self.path).apply(GenerationParams())
        self.w: dict[str, Any] = {}
        gr.Markdown("Defaults for new pages" + (f" (saved in `{self.path}`)" if self.path else " (not saved: "
                                                  "no data dir)"))
        with gr.Row():
            self.w["sampler"] = gr.Dropdown(list(SAMPLERS), value=d.sampler, label="Sampling method",
                                            elem_id="cm_set_sampler")
            self.w["schedule"] = gr.Dropdown(list(SCHEDULES), value=d.schedule, label="Schedule type",
                                             elem_id="cm_set_schedule")
            lim = LIMITS["clip_skip"]
            self.w["clip_skip"] = gr.Slider(lim.lo, lim.hi, value=d.clip_skip, step=lim.step, label="Clip skip",
                                            elem_id="cm_set_clip_skip")
        with gr.Row():
            self.w["rng"] = gr.Radio(list(RNG_SOURCES), value=d.rng, label="Random number generator source",
                                     elem_id="cm_set_rng")
            self.w["emphasis"] = gr.Radio(list(EMPHASIS_MODES), value=d.emphasis, label="Emphasis mode",
                                          elem_id="cm_set_emphasis")
            self.w["prompt_syntax"] = gr.Radio(list(PROMPT_SYNTAXES), value=d.prompt_syntax,
                                               label="Prompt syntax", elem_id="cm_set_prompt_syntax")
        self.save_btn = gr.Button("Apply settings", variant="primary", elem_id="cm_set_apply")
        self.status = gr.Markdown("", elem_id="cm_set_status")
        targets = [self.fields[n] for n in FIELDS if n in self.fields]
        self.save_btn.click(self.save, inputs_kwargs=self.w, outputs=[self.status, *targets],
                            api_visibility="private")

    def save(self, **values) -> list:
        try:
            defaults = UiDefaults(**values)
            if self.path is not None:
                save_defaults(self.path, defaults)
        except (ValidationError, InvalidParameter) as e:
            raise gr.Error(f"Settings not saved: {str(e).splitlines()[0]}", print_exception=False) from None
        except OSError as e:
            raise gr.Error(f"Settings not saved: cannot write {self.path}: {e.strerror}",
                           print_exception=False) from None
        where = f" and saved to {self.path}" if self.path else ""
        return [f"Applied to this page{where}.", *(values[n] for n in FIELDS if n in self.fields)]
