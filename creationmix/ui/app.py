"""The gradio Blocks app: A1111 txt2img layout over a ServiceAPI. Imports no torch.

Every generation widget is registered under its GenerationParams field name in `Studio.f`; events pass them with
`inputs_kwargs=Studio.f`, so handlers receive `{field name: value}` and never depend on widget order.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import gradio as gr

from ..params import (EMPHASIS_MODES, LIMITS, PROMPT_SYNTAXES, RNG_SOURCES, SAMPLERS, SCHEDULES, UPSCALERS,
                      GenerationParams)
from ..errors import CreationMixError
from ..jobs import Control
from ..styles import apply_styles
from ..service_api import ServiceAPI
from . import handlers as h
from . import keyboard
from .advanced_sampling import add_advanced_sampling
from .estimate import EtaTracker, StepRate, estimate
from .fields import FIELD_NAMES, SAME_SAMPLER
from .icons import icon_classes, icon_css
from .seed_extra import build_seed_extra
from .settings_tab import SettingsTab, load_defaults

# What /generate's JSON values must be (gradio passes them through untyped): "64" is not a width.
API_GENERATE_TYPES = {"prompt": str, "negative_prompt": str, "steps": int, "sampler": str, "schedule": str,
                      "cfg_scale": float, "seed": int, "width": int, "height": int, "batch_size": int,
                      "batch_count": int, "clip_skip": int, "enable_hires": bool, "hires_scale": float,
                      "hires_resize_x": int, "hires_resize_y": int, "hires_steps": int, "hires_upscaler": str,
                      "hires_sampler": str, "hires_prompt": str, "hires_negative_prompt": str,
                      "denoising_strength": float, "rng": str, "emphasis": str, "prompt_syntax": str,
                      "checkpoint": str, "vae": str}

MAX_LORA_SLIDERS = 8
log = logging.getLogger("creationmix.ui")
PREVIEW_EVERY_S = 0.4  # previews are streamed at most this often
GENERATION_CONCURRENCY_ID = "generation"  # the UI button and the API share the one-at-a-time slot
# Fields that change a run's cost (shown under Generate before the run).
ESTIMATE_FIELDS = ("width", "height", "steps", "batch_size", "batch_count", "enable_hires", "hires_scale",
                   "hires_steps", "hires_resize_x", "hires_resize_y")

CSS = """
#cm_banner {border: 1px solid #d97706; background: #fef3c7; color: #78350f; padding: 6px 12px; border-radius: 6px}
#cm_notice {border-left: 4px solid #d97706; padding: 0 10px; font-size: 0.85em; min-height: 0 !important}
.cm-prompt-wrap {position: relative}
.cm-tokens {position: absolute !important; top: 6px; right: 14px; z-index: 5; width: max-content !important;
            height: auto !important; overflow: visible !important; padding: 0 !important; font-size: 0.8em;
            opacity: 0.75; min-height: 0 !important; pointer-events: none; background: transparent !important;
            border: none !important}
.cm-tokens * {white-space: nowrap}
.cm-tool {max-width: 3em !important; min-width: 3em !important}
#cm_estimate {font-size: 0.8em; opacity: 0.8}
#cm_run_error {color: #b91c1c}
.cm-progress {position: relative; height: 1.6em; border-radius: 4px; background: var(--block-background-fill);
              border: 1px solid var(--border-color-primary); overflow: hidden}
.cm-progress-bar {position: absolute; inset: 0 auto 0 0; background: var(--color-accent-soft, #fed7aa)}
.cm-progress-text {position: relative; padding: 0 8px; font-size: 0.85em; line-height: 1.6em}
#cm_confirm {border: 1px solid #dc2626; border-radius: 6px; padding: 6px}
""" + icon_css()

HEAD = keyboard.HEAD


class Studio:
    """Builds the Blocks and owns the per-session generation controls (Interrupt / Skip)."""

    def __init__(self, service: ServiceAPI, *, title: str = "CreationMix", settings_path: Path | None = None):
        self.service = service
        self.title = title
        self.settings_path = settings_path  # the Settings tab's defaults (None: not saved)
        self.f: dict[str, gr.components.Component] = {}
        self._controls: dict[str, Control] = {}
        self._allowed: set[str] = set()
        self.blocks: gr.Blocks | None = None
        self.rate = StepRate()  # measured on this device by every run, prices the next one

    # -- files the page may show (gallery previews, thumbnails) ----------------------------------------------
    def allow(self, path: str | Path | None) -> str | None:
        """Allow gradio to serve exactly this file (a LoRA preview or preset thumbnail), not its whole folder."""
        if not path:
            return None
        p = str(Path(path).resolve())
        self._allowed.add(p)
        if self.blocks is not None and p not in self.blocks.allowed_paths:
            self.blocks.allowed_paths.append(p)
        return p

    @property
    def allowed_paths(self) -> list[str]:
        return sorted(self._allowed)

    def _startup_list(self, fn, what: str) -> list:
        """A broken preset or LoRA folder must not keep the studio from starting: log it, show none."""
        try:
            return list(fn())
        except Exception:
            log.exception("could not list %s; the panel starts empty (press refresh after fixing it)", what)
            return []

    # -- layout ----------------------------------------------------------------------------------------------
    def build(self) -> gr.Blocks:
        svc = self.service
        d = load_defaults(self.settings_path).apply(GenerationParams())
        checkpoints = svc.list_checkpoints()
        self.presets = self._startup_list(svc.list_presets, "presets")
        self.loras = self._startup_list(svc.list_loras, "LoRAs")
        for item in [*(p.thumbnail for p in self.presets), *(c.preview for c in self.loras)]:
            self.allow(item)

        with gr.Blocks(title=self.title, analytics_enabled=False) as demo:
            self.blocks = demo
            banner_text = svc.banner()
            self.banner = gr.Markdown(banner_text or "", visible=bool(banner_text), elem_id="cm_banner")
            with gr.Tabs(selected="generate") as self.tabs:
                with gr.Tab("txt2img", id="generate", elem_id="cm_tab_generate"):
                    self._generate_tab(d, checkpoints)
                with gr.Tab("PNG Info", id="pnginfo", elem_id="cm_tab_pnginfo"):
                    self._pnginfo_tab()
                with gr.Tab("LoRA previews", id="previews", elem_id="cm_tab_previews"):
                    from .previews_tab import PreviewsTab
                    PreviewsTab(svc, allow=self.allow).build()
                with gr.Tab("LoRA epochs", id="epochs", elem_id="cm_tab_epochs"):
                    from .epochs_tab import EpochsTab
                    EpochsTab(svc, allow=self.allow).build()
                with gr.Tab("Settings", id="settings_tab", elem_id="cm_tab_settings_defaults"):
                    SettingsTab(self.settings_path, self.f).build()
            self._wire()
        return demo

    def _tool(self, icon: str, label: str, elem_id: str) -> gr.Button:
        """A square tool button with an SVG icon; `label` stays as its accessible name (and tooltip)."""
        return gr.Button(label, elem_classes=["cm-tool", *icon_classes(icon)], elem_id=elem_id, scale=0,
                         min_width=40)

    def _generate_tab(self, d: GenerationParams, checkpoints: list[str]) -> None:
        f = self.f
        with gr.Row(equal_height=True):
            selected = self.service.selected_checkpoint()
            first = selected if selected in checkpoints else (checkpoints[0] if checkpoints else None)
            f["checkpoint"] = gr.Dropdown(checkpoints, value=first,
                                          label="Stable Diffusion checkpoint", elem_id="cm_checkpoint", scale=4)
            self.refresh_ckpt = self._tool("refresh", "Refresh checkpoints", "cm_refresh_checkpoint")
            f["vae"] = gr.Dropdown(self._vae_choices(), value=d.vae, label="SD VAE", elem_id="cm_vae", scale=3)
            self.refresh_vae = self._tool("refresh", "Refresh VAEs", "cm_refresh_vae")
        self.notice = gr.Markdown("", visible=False, elem_id="cm_notice")
        with gr.Row():
            with gr.Column(scale=6):
                # The token counters sit in the boxes' top-right corner, as in A1111.
                with gr.Column(elem_classes="cm-prompt-wrap"):
                    f["prompt"] = gr.Textbox(d.prompt, label="Prompt", lines=3, max_lines=20,
                                             elem_id="cm_prompt",
                                             placeholder="Prompt (press Ctrl+Enter to generate, Ctrl+Up/Down to "
                                                         "change the emphasis of the selection)")
                    self.prompt_tokens = gr.Markdown("", elem_id="cm_prompt_tokens", elem_classes="cm-tokens")
                with gr.Column(elem_classes="cm-prompt-wrap"):
                    f["negative_prompt"] = gr.Textbox(d.negative_prompt, label="Negative prompt", lines=2,
                                                      max_lines=20, elem_id="cm_negative_prompt")
                    self.negative_tokens = gr.Markdown("", elem_id="cm_negative_tokens",
                                                       elem_classes="cm-tokens")
            with gr.Column(scale=2, min_width=220):
                self.generate_btn = gr.Button("Generate", variant="primary", elem_id="cm_generate", size="lg")
                with gr.Row():
                    self.interrupt_btn = gr.Button("Interrupt", elem_id="cm_interrupt", size="sm", min_width=60)
                    self.skip_btn = gr.Button("Skip", elem_id="cm_skip", size="sm", min_width=60)
                with gr.Row(equal_height=True):
                    # A1111's ↙: read the parameters in the prompt box (or of the last image) into the fields.
                    self.paste_btn = self._tool("paste", "Read generation parameters from the prompt box or "
                                                         "the last generation", "cm_paste_apply")
                    self.clear_btn = self._tool("trash", "Clear prompt", "cm_clear_prompt")
                    self.apply_styles_btn = self._tool("style", "Apply selected styles to the prompts",
                                                       "cm_apply_styles")
                self.styles = gr.Dropdown(self._style_names(), value=[], multiselect=True, label="Styles",
                                          elem_id="cm_styles")
                self.estimate_md = gr.Markdown("", elem_id="cm_estimate")
                with gr.Group(visible=False, elem_id="cm_confirm") as self.confirm_box:
                    self.confirm_md = gr.Markdown("", elem_id="cm_confirm_text")
                    with gr.Row():
                        self.confirm_btn = gr.Button("Generate anyway", variant="stop", size="sm",
                                                     elem_id="cm_confirm_generate")
                        self.cancel_btn = gr.Button("Cancel", size="sm", elem_id="cm_confirm_cancel")

        # A1111's txt2img: the settings column and the output side by side under the prompts.
        with gr.Row(elem_id="cm_main_row"):
            with gr.Column(scale=1, elem_id="cm_settings_column"):
                with gr.Tabs(selected="settings"):
                    with gr.Tab("Generation", id="settings", elem_id="cm_tab_settings"):
                        self._settings(d)
                        # Extra settings modules hook in inside _settings (seed_extra under the seed,
                        # advanced_sampling at the end), each adding its own accordion.
                    with gr.Tab("Presets", id="presets", elem_id="cm_tab_presets"):
                        self._presets_panel()
                    with gr.Tab("Lora", id="lora", elem_id="cm_tab_lora"):
                        self._lora_panel()
            with gr.Column(scale=1, elem_id="cm_output_column"):
                # During a run the live preview takes the gallery's place (A1111), under one progress line.
                self.progress_html = gr.HTML("", elem_id="cm_progress", visible=False)
                self.preview = gr.Image(label="Live preview", visible=False, interactive=False, type="pil",
                                        elem_id="cm_preview", height=420, show_label=True)
                self.gallery = gr.Gallery(label="Output", format="png", columns=4, object_fit="contain",
                                          interactive=False, elem_id="cm_gallery", height=420,
                                          buttons=["download", "fullscreen"])
                self.run_error = gr.Markdown("", visible=False, elem_id="cm_run_error")
                self.seeds_md = gr.Markdown("", elem_id="cm_seeds")
                with gr.Row():
                    self.to_txt2img_btn = gr.Button("Send to txt2img", size="sm", elem_id="cm_send_txt2img")
                    self.reuse_seed_btn = gr.Button("Reuse seed", size="sm", elem_id="cm_reuse_seed")
                    self.to_pnginfo_btn = gr.Button("Send to PNG Info", size="sm", elem_id="cm_send_pnginfo")
                self.infotext = gr.Textbox(label="Infotext", lines=5, interactive=False, elem_id="cm_infotext",
                                           buttons=["copy"])
                self.result = gr.State(None)
                self.selected = gr.State(None)

    def _slider(self, name: str, value, label: str, *, from_zero: bool = False, **kw) -> gr.Slider:
        """A slider whose range is GenerationParams' own (params.LIMITS): the widget never clamps a value the
        engine would take. `from_zero`: start at 0 so a typed 0 reaches the params check and its message
        (gradio's number box would silently turn it into the minimum)."""
        lim = LIMITS[name]
        lo = 0 if lim.zero_ok or from_zero else lim.lo
        return gr.Slider(lo, lim.hi, value=value, step=lim.step, label=label, elem_id=f"cm_{name}", **kw)

    def _settings(self, d: GenerationParams) -> None:
        f = self.f
        with gr.Row():
            f["sampler"] = gr.Dropdown(list(SAMPLERS), value=d.sampler, label="Sampling method",
                                       elem_id="cm_sampler")
            f["schedule"] = gr.Dropdown(list(SCHEDULES), value=d.schedule, label="Schedule type",
                                        elem_id="cm_schedule")
        f["steps"] = self._slider("steps", d.steps, "Sampling steps", from_zero=True)
        with gr.Accordion("Hires. fix", open=False, elem_id="cm_hires_panel") as self.hires_panel:
            f["enable_hires"] = gr.Checkbox(d.enable_hires, label="Enable Hires. fix", elem_id="cm_enable_hires")
            with gr.Row():
                # Found models are offered; a pasted recipe may name one not installed yet (the engine says
                # which file to get), so custom values are allowed.
                f["hires_upscaler"] = gr.Dropdown(self._startup_list(self.service.list_upscalers, "upscalers")
                                                  or list(UPSCALERS), value=d.hires_upscaler, label="Upscaler",
                                                  allow_custom_value=True, elem_id="cm_hires_upscaler")
                f["hires_steps"] = self._slider("hires_steps", d.hires_steps, "Hires steps")
                f["denoising_strength"] = self._slider("denoising_strength", d.denoising_strength,
                                                       "Denoising strength")
            with gr.Row():
                f["hires_scale"] = self._slider("hires_scale", d.hires_scale, "Upscale by")
                f["hires_resize_x"] = self._slider("hires_resize_x", d.hires_resize_x, "Resize width to")
                f["hires_resize_y"] = self._slider("hires_resize_y", d.hires_resize_y, "Resize height to")
            f["hires_sampler"] = gr.Dropdown([SAME_SAMPLER, *SAMPLERS], value=SAME_SAMPLER,
                                             label="Hires sampling method", elem_id="cm_hires_sampler")
            f["hires_prompt"] = gr.Textbox(d.hires_prompt, label="Hires prompt", lines=2,
                                           placeholder="Prompt for hires fix pass. Leave empty to use the same "
                                                       "prompt as in first pass.", elem_id="cm_hires_prompt")
            f["hires_negative_prompt"] = gr.Textbox(d.hires_negative_prompt, label="Hires negative prompt",
                                                    lines=2, elem_id="cm_hires_negative_prompt",
                                                    placeholder="Negative prompt for hires fix pass. Leave "
                                                                "empty to use the same negative prompt.")
        with gr.Row(equal_height=True):
            with gr.Column(scale=4):
                f["width"] = self._slider("width", d.width, "Width")
                f["height"] = self._slider("height", d.height, "Height")
            self.swap_btn = self._tool("swap", "Swap width and height", "cm_swap_size")
            with gr.Column(scale=3):
                with gr.Row():  # A1111: batch count and batch size side by side
                    f["batch_count"] = self._slider("batch_count", d.batch_count, "Batch count", min_width=100)
                    f["batch_size"] = self._slider("batch_size", d.batch_size, "Batch size", min_width=100)
        f["cfg_scale"] = self._slider("cfg_scale", d.cfg_scale, "CFG Scale")
        with gr.Row(equal_height=True):
            f["seed"] = gr.Number(d.seed, label="Seed", precision=0, scale=4, elem_id="cm_seed",
                                  minimum=LIMITS["seed"].lo, maximum=LIMITS["seed"].hi)
            self.random_seed_btn = self._tool("dice", "Random seed (-1)", "cm_random_seed")
            self.last_seed_btn = self._tool("reuse", "Reuse the seed of the selected image", "cm_reuse_last_seed")
        self.seed_extra = build_seed_extra(f, d)
        f["clip_skip"] = self._slider("clip_skip", d.clip_skip, "Clip skip")
        with gr.Row():
            f["rng"] = gr.Radio(list(RNG_SOURCES), value=d.rng, label="Random number generator source",
                                elem_id="cm_rng")
            f["emphasis"] = gr.Radio(list(EMPHASIS_MODES), value=d.emphasis, label="Emphasis mode",
                                     elem_id="cm_emphasis")
            f["prompt_syntax"] = gr.Radio(list(PROMPT_SYNTAXES), value=d.prompt_syntax, label="Prompt syntax",
                                          elem_id="cm_prompt_syntax")
        add_advanced_sampling(f, d)
        missing = set(FIELD_NAMES) - set(f)
        assert not missing, f"no widget for {missing}"

    def _presets_panel(self) -> None:
        self.preset_ids = gr.State([p.id for p in self.presets])
        self.preset_cards = gr.Dataset(components=["image", "textbox", "textbox"],
                                       headers=["", "Preset", "Description"],
                                       samples=h.preset_samples(self.presets), type="index",
                                       layout="table", samples_per_page=50, label="Preset cards",
                                       elem_id="cm_presets")
        with gr.Row(equal_height=True):
            self.preset_title = gr.Textbox(label="Preset title", placeholder="My preset", scale=3,
                                           elem_id="cm_preset_title")
            self.save_preset_btn = gr.Button("Save as preset", scale=1, elem_id="cm_save_preset")

    def _lora_panel(self) -> None:
        with gr.Row(equal_height=True):
            self.lora_search = gr.Textbox(label="Search LoRAs", placeholder="name, trigger tag or base model",
                                          scale=4, elem_id="cm_lora_search")
            self.refresh_loras = self._tool("refresh", "Refresh LoRAs", "cm_refresh_loras")
        self.lora_names = gr.State([c.name for c in self.loras])
        self.lora_cards = gr.Dataset(components=["image", "textbox", "textbox", "textbox"],
                                     headers=["", "LoRA", "Trigger tags", "Base model"],
                                     samples=h.lora_samples(self.loras), type="index", layout="table",
                                     samples_per_page=20, label="LoRA cards (click to add to the prompt)",
                                     elem_id="cm_loras")
        self.lora_slot_names = gr.State([None] * MAX_LORA_SLIDERS)
        self.lora_sliders = [
            gr.Slider(-2, 2, value=1, step=0.05, label=f"LoRA {i + 1}", visible=False,
                      elem_id=f"cm_lora_weight_{i}")
            for i in range(MAX_LORA_SLIDERS)
        ]

    def _pnginfo_tab(self) -> None:
        with gr.Row():
            with gr.Column():
                self.png_file = gr.File(label="Source", type="filepath", elem_id="cm_pnginfo_file")
            with gr.Column():
                self.png_info = gr.Textbox(label="Parameters", lines=10, interactive=False,
                                           elem_id="cm_pnginfo_text", buttons=["copy"])
                self.png_keys = gr.Markdown("", elem_id="cm_pnginfo_keys")
                self.png_to_generate = gr.Button("Send to txt2img", elem_id="cm_pnginfo_send")

    @staticmethod
    def _vae_choices(vaes: list[str] | None = None) -> list[str]:
        return ["Automatic", "None", *(v for v in vaes or [] if v not in ("Automatic", "None"))]

    # -- wiring ----------------------------------------------------------------------------------------------
    def _wire(self) -> None:
        f = self.f
        fields = list(f.values())
        gen_inputs = {**f, "styles": self.styles}
        gen_outputs = [self.gallery, self.preview, self.progress_html, self.infotext, self.seeds_md, self.result,
                       self.selected, self.confirm_box, self.confirm_md, self.run_error]
        # gradio's overlay would cover every output (and hide the live preview): one progress line of our own.
        run = dict(inputs_kwargs=gen_inputs, outputs=gen_outputs, concurrency_limit=1,
                   concurrency_id=GENERATION_CONCURRENCY_ID, show_progress="hidden")
        self.generate_btn.click(self._generate, api_name="generate_ui", api_visibility="undocumented", **run)
        self.confirm_btn.click(self._generate_confirmed, api_visibility="private", **run)
        self.cancel_btn.click(lambda: gr.update(visible=False), outputs=[self.confirm_box], queue=False,
                              api_visibility="private")
        gr.api(self.api_generate, api_name="generate", concurrency_limit=1,
               concurrency_id=GENERATION_CONCURRENCY_ID)
        self.interrupt_btn.click(self._interrupt, queue=False, api_visibility="private")
        self.skip_btn.click(self._skip, queue=False, api_visibility="private")

        quiet = dict(show_progress="hidden", api_visibility="private", trigger_mode="always_last")
        f["prompt"].change(self._prompt_changed, inputs=[f["prompt"]],
                           outputs=[self.prompt_tokens, self.lora_slot_names, *self.lora_sliders], **quiet)
        f["negative_prompt"].change(self._tokens, inputs=[f["negative_prompt"]], outputs=[self.negative_tokens],
                                    **quiet)
        self.blocks.load(self._on_load, inputs=[f["prompt"], f["negative_prompt"], f["checkpoint"]],
                         outputs=[self.prompt_tokens, self.negative_tokens, self.notice, self.lora_slot_names,
                                  *self.lora_sliders], show_progress="hidden", api_visibility="private")
        for i, slider in enumerate(self.lora_sliders):
            slider.release(self._slider_moved(i), inputs=[f["prompt"], self.lora_slot_names, slider],
                           outputs=[f["prompt"]], show_progress="hidden", api_visibility="private")
        cost_fields = {n: f[n] for n in ESTIMATE_FIELDS}
        for n in ESTIMATE_FIELDS:
            f[n].change(self._estimate, inputs_kwargs=cost_fields, outputs=[self.estimate_md], **quiet)
        f["checkpoint"].change(self._notice, inputs=[f["checkpoint"]], outputs=[self.notice], **quiet)

        private = dict(api_visibility="private")
        self.refresh_ckpt.click(self._refresh_checkpoints, inputs=[f["checkpoint"]], outputs=[f["checkpoint"]],
                                **private)
        self.refresh_vae.click(self._refresh_vaes, inputs=[f["vae"]], outputs=[f["vae"]], **private)
        self.swap_btn.click(lambda w, h_: (h_, w), inputs=[f["width"], f["height"]],
                            outputs=[f["width"], f["height"]], show_progress="hidden", **private)
        self.random_seed_btn.click(lambda: -1, outputs=[f["seed"]], show_progress="hidden", **private)
        for btn in (self.last_seed_btn, self.reuse_seed_btn):
            btn.click(self._reuse_seed, inputs=[self.result, self.selected, f["seed"]], outputs=[f["seed"]],
                      show_progress="hidden", **private)
        self.clear_btn.click(lambda: ("", ""), outputs=[f["prompt"], f["negative_prompt"]],
                             show_progress="hidden", **private)
        self.apply_styles_btn.click(self._apply_styles, inputs=[f["prompt"], f["negative_prompt"], self.styles],
                                    outputs=[f["prompt"], f["negative_prompt"], self.styles],
                                    show_progress="hidden", **private)

        # Fill handlers never raise: a failed paste warns and changes nothing, so no field gets an error badge.
        fill_outputs = [*fields, self.hires_panel]
        fill = dict(show_progress="hidden", **private)
        self.preset_cards.click(self._preset_clicked, inputs=[self.preset_cards, self.preset_ids, f["checkpoint"]],
                                outputs=fill_outputs, **fill)
        self.save_preset_btn.click(self._save_preset, inputs=[self.preset_title], inputs_kwargs=f,
                                   outputs=[self.preset_cards, self.preset_ids], **private)
        self.paste_btn.click(self._paste, inputs=[f["prompt"], self.result, self.selected], outputs=fill_outputs,
                             **fill)
        self.to_txt2img_btn.click(self._send_to_txt2img, inputs=[self.result, self.selected],
                                  outputs=fill_outputs, **fill)

        self.lora_search.change(self._filter_loras, inputs=[self.lora_search],
                                outputs=[self.lora_cards, self.lora_names], **quiet)
        self.refresh_loras.click(self._refresh_loras, inputs=[self.lora_search],
                                 outputs=[self.lora_cards, self.lora_names], **private)
        self.lora_cards.click(self._lora_clicked, inputs=[self.lora_cards, self.lora_names, f["prompt"]],
                              outputs=[f["prompt"]], **private)

        self.gallery.select(self._gallery_selected, inputs=[self.result], outputs=[self.infotext, self.selected],
                            show_progress="hidden", **private)
        self.to_pnginfo_btn.click(self._send_to_pnginfo, inputs=[self.result, self.selected],
                                  outputs=[self.png_file, self.png_info, self.tabs], **private)
        self.png_file.change(self._png_info, inputs=[self.png_file], outputs=[self.png_info], **private)
        self.png_info.change(lambda text: h.infotext_keys(self.service, text), inputs=[self.png_info],
                             outputs=[self.png_keys], **private)
        self.png_to_generate.click(self._png_to_generate, inputs=[self.png_info],
                                   outputs=[*fill_outputs, self.tabs], **fill)

    # -- handlers --------------------------------------------------------------------------------------------
    # No gr.Progress() here on purpose: gradio would draw its overlay on every output again, over the preview.
    def _generate(self, request: gr.Request, progress=None, **values):
        yield from self._run(request, progress, values, confirmed=False)

    def _generate_confirmed(self, request: gr.Request, progress=None, **values):
        yield from self._run(request, progress, values, confirmed=True)

    def _run(self, request, progress, values: dict, *, confirmed: bool):
        """The run, with its error shown under the output instead of raised: a raised gr.Error would leave
        gradio's red "Error" badge on every output until the next run."""
        try:
            yield from self._run_inner(request, progress, values, confirmed=confirmed)
        except gr.Error as e:
            gr.Warning(e.message)
            yield {**self._idle_outputs(), self.run_error: gr.update(value=f"**Error:** {e.message}", visible=True)}

    def _run_inner(self, request, progress, values: dict, *, confirmed: bool):
        styles = values.pop("styles", None) or []
        if styles:
            values = dict(values)
            with h.user_errors():
                values["prompt"], values["negative_prompt"] = apply_styles(
                    values.get("prompt") or "", values.get("negative_prompt") or "", list(styles),
                    self.service.list_styles())
        params = h.build_params(values)
        cost = estimate(params, self.rate)
        if cost.far_over and not confirmed:
            text = (f"**This run is far over the usual:** {cost.reason}. {cost.text()}. "
                    "Press *Generate anyway* to run it, or lower the size, batch size or steps.")
            gr.Warning(text.replace("**", "").replace("*", ""))
            yield {self.confirm_box: gr.update(visible=True), self.confirm_md: text,
                   self.run_error: gr.update(value="", visible=False)}
            return
        session = getattr(request, "session_hash", None) or "anonymous"
        control = Control()
        self._controls[session] = control
        last_shown, pending, shown_any = 0.0, None, False
        eta = EtaTracker(params, self.rate)
        preview_size = h.preview_size(params)
        yield {self.confirm_box: gr.update(visible=False), self.gallery: gr.update(visible=False),
               self.run_error: gr.update(value="", visible=False),
               self.preview: gr.update(value=None, visible=True),
               self.progress_html: gr.update(value=h.progress_html("Starting…", 0.0), visible=True)}
        try:
            events = h.stream_generation(self.service, params, control)
            with h.user_errors():
                while True:
                    try:
                        ev = next(events)
                    except StopIteration as stop:
                        result = stop.value
                        break
                    text = h.progress_text(ev, eta.update(ev))
                    if progress is not None:
                        progress((ev.step, ev.total), desc=text, unit="steps")
                    now = time.monotonic()
                    pending = ev.preview if ev.preview is not None else pending
                    if now - last_shown >= PREVIEW_EVERY_S or pending is not None and not shown_any:
                        last_shown = now
                        out = {self.progress_html: h.progress_html(text, eta.fraction(ev))}
                        if pending is not None:
                            out[self.preview] = gr.update(value=h.scaled_preview(pending, preview_size),
                                                          visible=True)
                            pending, shown_any = None, True
                        yield out
        finally:
            if self._controls.get(session) is control:
                del self._controls[session]
        eta.finish()
        for w in result.warnings:
            gr.Warning(w)
        if result.interrupted:
            gr.Info(f"Interrupted: {len(result.images)} image(s) kept (the last one stops where it was "
                    "interrupted).")
        state = h.result_state(result)
        _, _, info = h.selected(state, 0)
        yield {**self._idle_outputs(), self.gallery: gr.update(value=h.gallery_value(state), visible=True),
               self.infotext: info, self.seeds_md: h.seeds_markdown(state), self.result: state, self.selected: 0}

    def _idle_outputs(self) -> dict:
        return {self.gallery: gr.update(visible=True), self.preview: gr.update(value=None, visible=False),
                self.progress_html: gr.update(value="", visible=False),
                self.run_error: gr.update(value="", visible=False)}

    def _estimate(self, **values) -> str:
        try:
            params = h.params_from_fields(values)
        except CreationMixError as e:
            return f"⚠ {e}"
        cost = estimate(params, self.rate)
        return cost.text() + (f" — far over the usual: {cost.reason}" if cost.far_over else "")

    def _notice(self, checkpoint: str | None):
        text = h.checkpoint_notice(self.service, checkpoint)
        return gr.update(value=text or "", visible=bool(text))

    def _style_names(self) -> list[str]:
        return [s.name for s in self._startup_list(self.service.list_styles, "styles")]

    def _apply_styles(self, prompt: str, negative: str, names: list[str] | None):
        if not names:
            gr.Info("Select one or more styles first.")
            return prompt, negative, names
        with h.user_errors():
            p, n = apply_styles(prompt or "", negative or "", list(names), self.service.list_styles())
        return p, n, []

    def _control(self, request: gr.Request) -> Control | None:
        return self._controls.get(getattr(request, "session_hash", None) or "anonymous")

    def _interrupt(self, request: gr.Request) -> None:
        if c := self._control(request):
            c.interrupt()

    def _skip(self, request: gr.Request) -> None:
        if c := self._control(request):
            c.skip()

    async def api_generate(self, prompt: str, negative_prompt: str = "", steps: int = 20, sampler: str = "DPM++ 2M",
                           schedule: str = "Automatic", cfg_scale: float = 7.0, seed: int = -1, width: int = 512,
                           height: int = 512, batch_size: int = 1, batch_count: int = 1, clip_skip: int = 1,
                           enable_hires: bool = False, hires_scale: float = 2.0, hires_resize_x: int = 0,
                           hires_resize_y: int = 0, hires_steps: int = 0, hires_upscaler: str = "Latent",
                           hires_sampler: str = "", hires_prompt: str = "", hires_negative_prompt: str = "",
                           denoising_strength: float = 0.7, rng: str = "GPU", emphasis: str = "Original",
                           prompt_syntax: str = "A1111", checkpoint: str = "", vae: str = "Automatic") -> dict:
        """txt2img with A1111 parameter names. Returns {"images": [PNG paths on the server], "seeds": [...],
        "infotexts": [...], "warnings": [...], "interrupted": bool}. A cancelled call (gradio_client's
        `Job.cancel()`) interrupts the run at its next step."""
        values = {k: v for k, v in locals().items() if k in FIELD_NAMES}
        with h.user_errors():
            h.check_api_types(values, API_GENERATE_TYPES)
        params = h.build_params(values)
        control = Control()
        return await h.run_cancellable(lambda: self._api_result(params, control), control)

    def _api_result(self, params, control: Control) -> dict:
        with h.user_errors():
            result = self.service.generate(params, progress=None, control=control)
        return {"images": [str(p) for p in result.paths], "seeds": list(result.seeds),
                "infotexts": list(result.infotexts), "warnings": list(result.warnings),
                "interrupted": result.interrupted}

    def _tokens(self, text: str) -> str:
        return h.token_label(self.service, text)

    def _slider_updates(self, prompt: str) -> list:
        slots = h.lora_slots(prompt, MAX_LORA_SLIDERS)
        names = [s[0] if s else None for s in slots]
        ups = [gr.update(visible=True, label=f"<lora:{s[0]}>", value=s[1]) if s else gr.update(visible=False)
               for s in slots]
        return [names, *ups]

    def _prompt_changed(self, prompt: str) -> list:
        return [self._tokens(prompt), *self._slider_updates(prompt)]

    def _on_load(self, prompt: str, negative: str, checkpoint: str | None = None) -> list:
        return [self._tokens(prompt), self._tokens(negative), self._notice(checkpoint),
                *self._slider_updates(prompt)]

    @staticmethod
    def _slider_moved(i: int):
        def moved(prompt: str, names: list, value: float) -> str:
            return h.slider_to_prompt(prompt, names[i] if names and i < len(names) else None, value)
        return moved

    def _refresh_checkpoints(self, current: str | None):
        with h.user_errors():
            choices = self.service.list_checkpoints()
        value = current if current in choices else (choices[0] if choices else None)
        return gr.update(choices=choices, value=value)

    def _refresh_vaes(self, current: str):
        with h.user_errors():
            choices = self._vae_choices(self.service.list_vaes())
        return gr.update(choices=choices, value=current if current in choices else "Automatic")

    def _reuse_seed(self, state: dict | None, index: int | None, current: Any):
        _, seed, _ = h.selected(state, index)
        if seed is None:
            gr.Info("Nothing generated yet: no seed to reuse.")
            return current
        return seed

    def _fill(self, values: dict[str, Any], warnings: list[str]) -> dict:
        for w in warnings:
            gr.Warning(w)
        out: dict = {self.f[k]: v for k, v in values.items()}
        if values.get("enable_hires"):
            out[self.hires_panel] = gr.Accordion(open=True)
        # Nothing to set: still a {component: update} dict (gradio reads a bare {} as one missing value).
        return out or {self.hires_panel: gr.update()}

    @staticmethod
    def _fill_or_warn(get) -> tuple[dict[str, Any], list[str]]:
        """`get()`'s (values, warnings); its error becomes a warning and no update. Raising would put gradio's
        red "Error" badge on every output field until they are next set."""
        try:
            return get()
        except gr.Error as e:
            gr.Warning(e.message)
            return {}, []

    def preset_values(self, index: int | None, ids: list[str],
                      current_checkpoint: str | None) -> tuple[dict[str, Any], list[str]]:
        if index is None or not ids or not 0 <= index < len(ids):
            raise gr.Error("Unknown preset card; press refresh.", print_exception=False)
        with h.user_errors():
            preset = next((p for p in self.service.list_presets() if p.id == ids[index]), None)
        if preset is None:
            raise gr.Error(f"Preset {ids[index]!r} no longer exists.", print_exception=False)
        return h.preset_fields(self.service, preset, current_checkpoint)

    def _preset_clicked(self, index: int, ids: list[str], current_checkpoint: str | None) -> dict:
        return self._fill(*self._fill_or_warn(lambda: self.preset_values(index, ids, current_checkpoint)))

    def _presets_update(self):
        with h.user_errors():
            presets = self.service.list_presets()
        for p in presets:
            self.allow(p.thumbnail)
        return gr.Dataset(samples=h.preset_samples(presets)), [p.id for p in presets]

    def _save_preset(self, title: str, **values):
        params = h.build_params(values)
        if not (title or "").strip():
            raise gr.Error("Give the preset a title first.", print_exception=False)
        with h.user_errors():
            path = self.service.save_preset(params, title.strip())
        gr.Info(f"Saved preset {title.strip()!r} to {path}")
        return self._presets_update()

    def paste_values(self, prompt: str | None, state: dict | None = None,
                     index: int | None = None) -> tuple[dict[str, Any], list[str]]:
        """A1111's ↙: the infotext in the prompt box, or (box empty) the selected/last generation's."""
        text = prompt or ""
        if not text.strip():
            _, _, text = h.selected(state, index)
            if not text:
                raise gr.Error("Nothing to read: paste an A1111 infotext into the Prompt box (the text under an "
                               "image, or from PNG Info), or generate an image first.", print_exception=False)
        return h.infotext_fields(self.service, text)

    def _paste(self, prompt: str | None, state: dict | None = None, index: int | None = None) -> dict:
        return self._fill(*self._fill_or_warn(lambda: self.paste_values(prompt, state, index)))

    def _send_to_txt2img(self, state: dict | None, index: int | None) -> dict:
        def get():
            _, _, text = h.selected(state, index)
            if not text:
                raise gr.Error("Nothing generated yet.", print_exception=False)
            return h.infotext_fields(self.service, text)
        return self._fill(*self._fill_or_warn(get))

    def _lora_list(self, query: str):
        with h.user_errors():
            cards = self.service.list_loras()
        self.loras = cards
        for c in cards:
            self.allow(c.preview)
        shown = h.filter_loras(cards, query)
        return gr.Dataset(samples=h.lora_samples(shown)), [c.name for c in shown]

    def _filter_loras(self, query: str):
        shown = h.filter_loras(self.loras, query)
        return gr.Dataset(samples=h.lora_samples(shown)), [c.name for c in shown]

    def _refresh_loras(self, query: str):
        return self._lora_list(query)

    def _lora_clicked(self, index: int, names: list[str], prompt: str) -> str:
        if index is None or not names or not 0 <= index < len(names):
            raise gr.Error("Unknown LoRA card; press refresh.", print_exception=False)
        card = next((c for c in self.loras if c.name == names[index]), None)
        if card is None:
            raise gr.Error(f"LoRA {names[index]!r} is no longer listed; press refresh.", print_exception=False)
        return h.click_lora(prompt, card)

    def _gallery_selected(self, state: dict | None, evt: gr.SelectData):
        _, _, info = h.selected(state, evt.index)
        return info, evt.index

    def _send_to_pnginfo(self, state: dict | None, index: int | None):
        path, _, _ = h.selected(state, index)
        if path is None:
            raise gr.Error("Nothing generated yet.", print_exception=False)
        return path, h.image_info(self.service, path), gr.Tabs(selected="pnginfo")

    def _png_info(self, path: str | None) -> str:
        return h.image_info(self.service, path)

    def _png_to_generate(self, text: str) -> dict:
        def get():
            if not text or text == h.NO_PARAMETERS or text.endswith(h.NOT_AN_IMAGE):
                raise gr.Error("No generation parameters to send.", print_exception=False)
            return h.infotext_fields(self.service, text)
        values, warnings = self._fill_or_warn(get)
        out = self._fill(values, warnings)
        if values:
            out[self.tabs] = gr.Tabs(selected="generate")
        return out


def build_ui(service: ServiceAPI, **kw) -> tuple[gr.Blocks, Studio]:
    studio = Studio(service, **kw)
    return studio.build(), studio
