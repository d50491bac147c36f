"""The seed's "Extra" toggle (A1111: variation seed, variation strength, resize seed from) and the ENSD setting.

A1111 ignores the extra values while "Extra" is unticked; here unticking sets them back to "off", and values that
arrive switched on (a pasted infotext, a preset) tick it, so what is applied is always what is shown. ENSD is an
A1111 setting rather than a seed extra: it stays visible beside the toggle.
"""
from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from ..params import GenerationParams
from .icons import icon_classes

EXTRA_FIELDS = ("subseed", "subseed_strength", "seed_resize_from_w", "seed_resize_from_h")


def extras_in_use(strength, resize_w, resize_h) -> bool:
    def num(v) -> float:
        try:
            return float(v or 0)
        except (TypeError, ValueError):
            return 1.0  # unreadable: show it, the field check names the error on Generate
    return num(strength) != 0 or num(resize_w) > 0 or num(resize_h) > 0


def on_toggle(ticked: bool):
    """(panel, strength, resize w, resize h) updates for the Extra checkbox."""
    if ticked:
        return gr.update(visible=True), gr.skip(), gr.skip(), gr.skip()
    return gr.update(visible=False), 0, 0, 0


def on_value(strength, resize_w, resize_h):
    """(checkbox, panel) updates when an extra value changes: switched-on values tick Extra."""
    if extras_in_use(strength, resize_w, resize_h):
        return True, gr.update(visible=True)
    return gr.skip(), gr.skip()


@dataclass
class SeedExtra:
    toggle: gr.Checkbox
    panel: gr.Group
    random_subseed: gr.Button


def build_seed_extra(f: dict, d: GenerationParams) -> SeedExtra:
    """Adds the widgets under their GenerationParams names to `f` and wires the toggle. Call it inside the
    Blocks, right under the seed row."""
    shown = extras_in_use(d.subseed_strength, d.seed_resize_from_w, d.seed_resize_from_h)
    with gr.Row(equal_height=True):
        toggle = gr.Checkbox(shown, label="Extra", scale=1, min_width=80, elem_id="cm_seed_extra")
        f["eta_noise_seed_delta"] = gr.Number(d.eta_noise_seed_delta, label="Eta noise seed delta (ENSD)",
                                              precision=0, minimum=0, scale=3, elem_id="cm_ensd")
    with gr.Group(visible=shown, elem_id="cm_seed_extras") as panel:
        with gr.Row(equal_height=True):
            f["subseed"] = gr.Number(d.subseed, label="Variation seed", precision=0, scale=4, elem_id="cm_subseed")
            random_subseed = gr.Button("Random variation seed (-1)", elem_classes=["cm-tool", *icon_classes("dice")],
                                       scale=0, min_width=40, elem_id="cm_random_subseed")
            f["subseed_strength"] = gr.Slider(0, 1, value=d.subseed_strength, step=0.01, label="Variation strength",
                                              scale=4, elem_id="cm_subseed_strength")
        with gr.Row():
            f["seed_resize_from_w"] = gr.Slider(0, 2048, value=d.seed_resize_from_w, step=8,
                                                label="Resize seed from width", elem_id="cm_seed_resize_from_w")
            f["seed_resize_from_h"] = gr.Slider(0, 2048, value=d.seed_resize_from_h, step=8,
                                                label="Resize seed from height", elem_id="cm_seed_resize_from_h")
    quiet = dict(show_progress="hidden", api_visibility="private")
    values = [f["subseed_strength"], f["seed_resize_from_w"], f["seed_resize_from_h"]]
    toggle.change(on_toggle, inputs=[toggle], outputs=[panel, *values], **quiet)
    for comp in values:
        comp.change(on_value, inputs=values, outputs=[toggle, panel], **quiet)
    random_subseed.click(lambda: -1, outputs=[f["subseed"]], **quiet)
    return SeedExtra(toggle, panel, random_subseed)
