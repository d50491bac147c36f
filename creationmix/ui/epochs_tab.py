"""The "LoRA epochs" tab: a kohya run's epochs x strengths per sample prompt, then publish the winner. Torch-free.

Service methods (ServiceAPI): list_lora_series() -> [SeriesCard]; run_epoch_grid(series, prompts_text=...,
prompts_format=..., preset_id=..., strengths=..., seeds=..., overrides=..., publish="EPOCH:STRENGTH",
force=..., preview_name=..., progress=..., control=...) -> epochs.job.EpochGridResult. The uploaded prompt file
is passed as text (never as a path). Publishing re-runs the grid (every cell is skipped: it is there) and writes
the chosen cell as the epoch's preview plus A1111's sidecar.

Use: inside `with gr.Tab("LoRA epochs"):` call `EpochsTab(service, allow=studio.allow).build()`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import gradio as gr

from ..errors import CreationMixError
from ..jobs import Control
from .handlers import stream_job
from .previews_tab import job_text

DEFAULT_STRENGTHS = "0.6, 0.8, 1.0"
NO_PRESET = "(none: kohya's sampling defaults)"


class EpochsTab:
    def __init__(self, service, *, allow: Callable[[Any], Any] | None = None):
        self.service = service
        self.allow = allow or (lambda p: str(p) if p else None)
        self.control = Control()
        self.cards: list = []

    def _series(self) -> list:
        try:
            self.cards = self.service.list_lora_series()
        except CreationMixError:
            self.cards = []
        return self.cards

    def _keys(self, name: str | None) -> list[tuple[str, str]]:
        card = next((c for c in self.cards if c.name == name), None)
        return list(zip(card.labels, card.keys)) if card else []

    def build(self) -> None:
        names = [c.name for c in self._series()]
        try:
            presets = [NO_PRESET] + [p.id for p in self.service.list_presets()]
        except CreationMixError:
            presets = [NO_PRESET]
        first = names[0] if names else None
        with gr.Row():
            self.series = gr.Dropdown(names, value=first, label="Training run (kohya series)", elem_id="cm_ep_series")
            self.refresh = gr.Button("Refresh", elem_id="cm_ep_refresh", scale=0, min_width=80)
            self.prompts = gr.File(label="Sample prompts (kohya .txt/.toml/.json, OneTrainer samples.json)",
                                   file_types=[".txt", ".toml", ".json"], type="filepath", elem_id="cm_ep_prompts")
            self.preset = gr.Dropdown(presets, value=NO_PRESET, label="Preset filling what the file leaves out",
                                      elem_id="cm_ep_preset")
        with gr.Row():
            self.strengths = gr.Textbox(DEFAULT_STRENGTHS, label="Strengths", elem_id="cm_ep_strengths")
            self.seeds = gr.Number(value=1, label="Seeds", precision=0, minimum=1, maximum=16, elem_id="cm_ep_seeds")
            self.steps = gr.Number(value=None, label="Steps (0: the file's)", precision=0, elem_id="cm_ep_steps")
            self.size = gr.Number(value=None, label="Width = height (0: the file's)", precision=0,
                                  elem_id="cm_ep_size")
        with gr.Row():
            self.run_btn = gr.Button("Render epochs", variant="primary", elem_id="cm_ep_run")
            self.stop_btn = gr.Button("Interrupt", elem_id="cm_ep_interrupt")
        self.status = gr.Markdown("", elem_id="cm_ep_status")
        self.grids = gr.Gallery(label="Grids (rows: epochs, columns: strengths)", columns=2, height=560, object_fit="contain",
                                elem_id="cm_ep_grids")
        with gr.Row():
            self.epoch = gr.Dropdown(self._keys(first), value=None, label="Publish epoch", elem_id="cm_ep_epoch")
            self.weight = gr.Number(value=0.8, label="at strength", elem_id="cm_ep_weight")
            self.preview_name = gr.Radio([("<stem>.preview.png", "preview"), ("<stem>.png", "png")], value="preview",
                                         label="Preview file", elem_id="cm_ep_preview_name")
            self.force = gr.Checkbox(False, label="Replace an existing preview and sidecar values",
                                     elem_id="cm_ep_force")
            self.publish_btn = gr.Button("Publish", elem_id="cm_ep_publish")
        self.publish_status = gr.Markdown("", elem_id="cm_ep_publish_status")
        self._wire()

    # -- events ------------------------------------------------------------------------------------------------
    def _job(self, series, prompts, preset, strengths, seeds, steps, size, **extra):
        if not series:
            raise gr.Error("choose a training run (no kohya series found in the LoRA folders?)")
        kw: dict[str, Any] = {}
        if prompts:
            path = Path(prompts)
            try:
                kw["prompts_text"] = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as e:
                raise gr.Error(f"cannot read the prompt file: {e}") from None
            kw["prompts_format"] = path.suffix.lstrip(".").lower() or "txt"
        overrides: dict[str, Any] = {}
        if steps:
            overrides["steps"] = int(steps)
        if size:
            overrides["width"] = overrides["height"] = int(size)
        self.control = Control()
        gen = stream_job(self.service.run_epoch_grid, self.control, series=series,
                         preset_id=None if preset in (None, NO_PRESET) else preset,
                         strengths=strengths or DEFAULT_STRENGTHS, seeds=int(seeds or 1), overrides=overrides,
                         **kw, **extra)
        return gen

    def run(self, series, prompts, preset, strengths, seeds, steps, size):
        try:
            gen = self._job(series, prompts, preset, strengths, seeds, steps, size)
            while True:
                try:
                    jp = next(gen)
                except StopIteration as stop:
                    result = stop.value
                    break
                yield job_text(jp, "cells"), gr.skip()
        except CreationMixError as e:
            raise gr.Error(str(e)) from None
        grids = [self.allow(p) for p in result.grid_paths]
        text = result.summary().replace("\n", "  \n")
        if result.warnings:
            text += "  \n" + "  \n".join(f"⚠ {w}" for w in result.warnings)
        yield text, grids

    def publish(self, series, prompts, preset, strengths, seeds, steps, size, epoch, weight, preview_name, force):
        if not epoch:
            raise gr.Error("choose the epoch to publish")
        try:
            gen = self._job(series, prompts, preset, strengths, seeds, steps, size, publish=f"{epoch}:{weight}",
                            force=bool(force), preview_name=preview_name or "preview")
            while True:
                try:
                    jp = next(gen)
                except StopIteration as stop:
                    result = stop.value
                    break
                yield job_text(jp, "cells")
        except CreationMixError as e:
            raise gr.Error(str(e)) from None
        if result.published is None:
            yield "interrupted: nothing published"
            return
        yield result.published.summary().replace("\n", "  \n")

    def _refresh(self, current):
        names = [c.name for c in self._series()]
        value = current if current in names else (names[0] if names else None)
        return gr.Dropdown(choices=names, value=value), gr.Dropdown(choices=self._keys(value), value=None)

    def _series_changed(self, name):
        return gr.Dropdown(choices=self._keys(name), value=None)

    def interrupt(self) -> None:
        self.control.interrupt()

    def _wire(self) -> None:
        inputs = [self.series, self.prompts, self.preset, self.strengths, self.seeds, self.steps, self.size]
        self.run_btn.click(self.run, inputs, [self.status, self.grids], concurrency_id="generation")
        self.publish_btn.click(self.publish, inputs + [self.epoch, self.weight, self.preview_name, self.force],
                               [self.publish_status], concurrency_id="generation")
        self.stop_btn.click(self.interrupt, None, None, queue=False)
        self.refresh.click(self._refresh, [self.series], [self.series, self.epoch], queue=False)
        self.series.change(self._series_changed, [self.series], [self.epoch], queue=False)
