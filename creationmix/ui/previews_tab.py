"""The "LoRA previews" tab: a strength sweep of one LoRA, and previews for the whole LoRA library. Torch-free.

It needs two service methods beyond ServiceAPI (the real Service delegates them to creationmix.xyz):
    run_strength_sweep(params, lora, strengths, seeds, preset_id=None, overrides=None, progress=None,
                       control=None) -> xyz.plot.PlotResult
        -> creationmix.xyz.plot.service_strength_sweep(self, ...)
    run_lora_previews(preset_id, names=None, overwrite=False, append_triggers=False, overrides=None,
                      progress=None, control=None) -> previews.job.PreviewReport
        -> creationmix.previews.job.service_lora_previews(self, ...)
Both report progress as jobs.JobProgress and honour a jobs.Control (Interrupt keeps finished images).

Use: inside `with gr.Tab("LoRA previews"):` call `PreviewsTab(service, allow=studio.allow).build()`.
"""
from __future__ import annotations

from typing import Any, Callable

import gradio as gr

from ..errors import CreationMixError
from ..jobs import Control
from .handlers import stream_job
from .icons import icon_classes

DEFAULT_STRENGTHS = "0, 0.4, 0.6, 0.8, 1.0, 1.2"


def job_text(jp, unit: str = "images") -> str:
    """One progress line for a job over many images: `3/12 images — label (step 4/20)`."""
    text = f"{jp.done}/{jp.total} {unit}"
    if jp.label:
        text += f" — {jp.label}"
    if jp.event is not None:
        text += f" (step {jp.event.step}/{jp.event.total})"
    return text


class PreviewsTab:
    def __init__(self, service, *, allow: Callable[[Any], Any] | None = None):
        self.service = service
        self.allow = allow or (lambda p: str(p) if p else None)
        self.control = Control()

    def _lora_names(self) -> list[str]:
        try:
            return [c.name for c in self.service.list_loras() if not c.error]
        except CreationMixError:
            return []

    def _slot_presets(self) -> list[str]:
        try:
            cards = self.service.list_presets()
        except CreationMixError:
            return []
        return [p.id for p in cards if "<lora:" in p.params.prompt] or [p.id for p in cards]

    def build(self) -> None:
        names = self._lora_names()
        presets = self._slot_presets()
        preview_default = "lora-preview" if "lora-preview" in presets else (presets[0] if presets else None)
        with gr.Row():
            self.preset = gr.Dropdown(presets, value=preview_default, label="Preset card (its LoRA slot is used)",
                                      elem_id="cm_pv_preset")
            # Text boxes, not gr.Number: a Number shows an empty value as 0, which reads as "0 steps".
            self.steps = gr.Textbox("", label="Steps (empty: the card's)", placeholder="the card's",
                                    elem_id="cm_pv_steps")
            self.size = gr.Textbox("", label="Width = height (empty: the card's)", placeholder="the card's",
                                   elem_id="cm_pv_size")
            self.hires = gr.Checkbox(value=True, label="Hires fix as on the card", elem_id="cm_pv_hires")
        with gr.Tab("Strength sweep"):
            with gr.Row():
                self.lora = gr.Dropdown(names, value=names[0] if names else None, label="LoRA",
                                        elem_id="cm_pv_lora", scale=3)
                # LoRAs copied in after start-up appear after a refresh (A1111's extra-networks refresh).
                self.refresh_btn = gr.Button("Refresh LoRAs", elem_classes=["cm-tool", *icon_classes("refresh")],
                                             elem_id="cm_pv_refresh", scale=0, min_width=40)
                self.strengths = gr.Textbox(DEFAULT_STRENGTHS, label="Strengths (A1111 syntax: 0-1 [5] ...)",
                                            elem_id="cm_pv_strengths")
                self.seeds = gr.Number(value=2, label="Seeds", precision=0, minimum=1, maximum=16,
                                       elem_id="cm_pv_seeds")
            with gr.Row():
                self.sweep_btn = gr.Button("Sweep", variant="primary", elem_id="cm_pv_sweep")
                self.stop_btn = gr.Button("Interrupt", elem_id="cm_pv_interrupt")
            self.sweep_status = gr.Markdown("", elem_id="cm_pv_sweep_status")
            self.sweep_grid = gr.Image(label="Grid", type="filepath", interactive=False, elem_id="cm_pv_grid")
        with gr.Tab("Library previews"):
            with gr.Row():
                self.overwrite = gr.Checkbox(False, label="Render again over existing previews",
                                             elem_id="cm_pv_overwrite")
                self.triggers = gr.Checkbox(False, label="Append activation text / top tags",
                                            elem_id="cm_pv_triggers")
            with gr.Row():
                self.lib_btn = gr.Button("Make previews", variant="primary", elem_id="cm_pv_library")
                self.lib_stop = gr.Button("Interrupt", elem_id="cm_pv_library_interrupt")
            self.lib_status = gr.Markdown("", elem_id="cm_pv_library_status")
            self.sheet = gr.Image(label="Contact sheet", type="filepath", interactive=False, elem_id="cm_pv_sheet")
        self._wire()

    # -- events ------------------------------------------------------------------------------------------------
    @staticmethod
    def _whole(label: str, value) -> int | None:
        text = str(value if value is not None else "").strip()
        if not text:
            return None
        try:
            return int(text)
        except ValueError:
            raise gr.Error(f"{label} must be a whole number, or empty for the card's value; got {text!r}",
                           print_exception=False) from None

    def _overrides(self, steps, size, hires) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if (n := self._whole("Steps", steps)) is not None:
            out["steps"] = n  # 0 and other bad values reach the params' own check and its message
        if (n := self._whole("Width = height", size)) is not None:
            out["width"] = out["height"] = n
        if not hires:
            out["enable_hires"] = False
        return out

    def refresh(self, current: str | None):
        """The LoRA dropdown from a fresh library scan (keeps the choice when it still exists)."""
        names = self._lora_names()
        return gr.update(choices=names, value=current if current in names else (names[0] if names else None))

    def sweep(self, preset_id, lora, strengths, seeds, steps, size, hires):
        if not lora:
            raise gr.Error("choose a LoRA")
        self.control = Control()
        try:
            if not preset_id:
                raise gr.Error("choose a preset card")
            gen = stream_job(self.service.run_strength_sweep, self.control, params=None, lora=lora,
                             strengths=strengths or DEFAULT_STRENGTHS, seeds=int(seeds or 2), preset_id=preset_id,
                             overrides=self._overrides(steps, size, hires))
            while True:
                try:
                    jp = next(gen)
                except StopIteration as stop:
                    result = stop.value
                    break
                yield job_text(jp), gr.skip()
        except CreationMixError as e:
            raise gr.Error(str(e)) from None
        grid = self.allow(result.grid_paths[0]) if result.grid_paths else None
        note = " (interrupted: finished cells kept)" if result.interrupted else ""
        yield f"{len(result.written) - len(result.grid_paths)} cells and {len(result.grid_paths)} grid{note}", grid

    def library(self, preset_id, overwrite, triggers, steps, size, hires):
        self.control = Control()
        try:
            gen = stream_job(self.service.run_lora_previews, self.control, preset_id=preset_id,
                             overwrite=bool(overwrite), append_triggers=bool(triggers),
                             overrides=self._overrides(steps, size, hires))
            while True:
                try:
                    jp = next(gen)
                except StopIteration as stop:
                    report = stop.value
                    break
                yield job_text(jp), gr.skip()
        except CreationMixError as e:
            raise gr.Error(str(e)) from None
        text = report.summary().replace("\n", "  \n")
        yield text, self.allow(report.sheet_png) if report.sheet_png else None

    def interrupt(self) -> None:
        self.control.interrupt()

    def _wire(self) -> None:
        common = [self.steps, self.size, self.hires]
        self.sweep_btn.click(self.sweep, [self.preset, self.lora, self.strengths, self.seeds, *common],
                             [self.sweep_status, self.sweep_grid], concurrency_id="generation")
        self.lib_btn.click(self.library, [self.preset, self.overwrite, self.triggers, *common],
                           [self.lib_status, self.sheet], concurrency_id="generation")
        self.refresh_btn.click(self.refresh, [self.lora], [self.lora], api_visibility="private")
        self.stop_btn.click(self.interrupt, None, None, queue=False)
        self.lib_stop.click(self.interrupt, None, None, queue=False)
