"""A torch-free ServiceAPI for UI tests: same methods and errors as the real service, tiny PNG outputs.

generate() writes `outputs/txt2img-images/YYYY-MM-DD/NNNNN-SEED.png` with an A1111 `parameters` chunk, reports
progress with previews, honours Control, and raises InvalidParameter / ModelError like the engine.
"""
from __future__ import annotations

import datetime as _dt
import re
import threading
import time
from pathlib import Path
from typing import Callable

from PIL import Image, PngImagePlugin

from creationmix.errors import InvalidParameter, ModelError, PresetError
from creationmix.infotext import ParsedInfotext
from creationmix.params import GenerationParams
from creationmix.paths import Folders
from creationmix.jobs import Control, GenerationResult, ProgressEvent
from creationmix.service_api import LoraCard, PresetCard
from creationmix.styles import Style, load_styles

IN_GENERAL = GenerationParams(
    prompt="a cozy cabin in the woods, warm light, <lora:paper_cut:0.8>",
    negative_prompt="blurry, lowres",
    steps=20, sampler="DPM++ 2M", schedule="Karras", cfg_scale=6.5, seed=106059479,
    width=512, height=768, clip_skip=2,
    enable_hires=True, hires_scale=2.0, hires_steps=10, denoising_strength=0.45, hires_upscaler="Latent",
)
PORTRAIT = GenerationParams(prompt="portrait of a knight", steps=25, sampler="Euler a", seed=42,
                            width=512, height=512, checkpoint="missing_model.safetensors")


def format_infotext(p: GenerationParams, seed: int, model: str) -> str:
    parts = [("Steps", p.steps), ("Sampler", p.sampler), ("Schedule type", p.schedule), ("CFG scale", p.cfg_scale),
             ("Seed", seed), ("Size", f"{p.width}x{p.height}"), ("Model", model)]
    if p.clip_skip > 1:
        parts.append(("Clip skip", p.clip_skip))
    if p.enable_hires:
        parts += [("Denoising strength", p.denoising_strength), ("Hires upscale", p.hires_scale),
                  ("Hires steps", p.hires_steps), ("Hires upscaler", p.hires_upscaler)]
        if p.hires_resize_x or p.hires_resize_y:
            parts.append(("Hires resize", f"{p.hires_resize_x}x{p.hires_resize_y}"))
    if p.rng != "GPU":
        parts.append(("RNG", p.rng))
    text = p.prompt
    if p.negative_prompt:
        text += f"\nNegative prompt: {p.negative_prompt}"
    return text + "\n" + ", ".join(f"{k}: {v}" for k, v in parts)


def parse_infotext(text: str) -> GenerationParams:
    lines = (text or "").strip().splitlines()
    if not lines or not re.search(r"(^|, )Steps: ", lines[-1]):
        raise InvalidParameter("no generation parameters found (expected a line with 'Steps: ...')")
    kv = dict(re.findall(r"\s*([\w \-/]+):\s*([^,]+)(?:,|$)", lines[-1]))
    neg_i = next((i for i, l in enumerate(lines) if l.startswith("Negative prompt:")), None)
    prompt = "\n".join(lines[: neg_i if neg_i is not None else -1])
    neg = "\n".join(lines[neg_i:-1])[len("Negative prompt:"):].strip() if neg_i is not None else ""
    w, h = (int(x) for x in kv.get("Size", "512x512").split("x"))
    d = dict(prompt=prompt, negative_prompt=neg, steps=int(kv["Steps"]), sampler=kv.get("Sampler", "DPM++ 2M"),
             schedule=kv.get("Schedule type", "Automatic"), cfg_scale=float(kv.get("CFG scale", 7)),
             seed=int(kv.get("Seed", -1)), width=w, height=h, clip_skip=int(kv.get("Clip skip", 1)),
             rng=kv.get("RNG", "GPU"))
    if "Hires upscale" in kv or "Hires resize" in kv:
        d.update(enable_hires=True, hires_scale=float(kv.get("Hires upscale", 2)),
                 hires_steps=int(kv.get("Hires steps", 0)), hires_upscaler=kv.get("Hires upscaler", "Latent"),
                 denoising_strength=float(kv.get("Denoising strength", 0.7)))
    return GenerationParams(**d)


class FakeService:
    def __init__(self, folders: Folders | str | Path, *, step_delay: float = 0.0, banner: str | None = None):
        self.folders = folders if isinstance(folders, Folders) else Folders(Path(folders))
        self.folders.ensure()
        self.step_delay = step_delay
        self._banner = banner
        self.calls: list[GenerationParams] = []
        self._selected: str | None = None
        self.saved: list[tuple[GenerationParams, str]] = []
        self._lock = threading.Lock()
        lora_dir = self.folders.lora_dirs[0]
        self.preview = lora_dir / "paper_cut.preview.png"
        if not self.preview.exists():
            Image.new("RGB", (32, 32), (200, 120, 40)).save(self.preview)
        self.presets = [
            PresetCard("in-general", "In general", "A balanced starting point with hires fix", IN_GENERAL),
            PresetCard("portrait", "Portrait", "Needs a model you do not have", PORTRAIT),
        ]

    # -- lists ----------------------------------------------------------------------------------------------
    def list_checkpoints(self) -> list[str]:
        return ["tiny_demo.safetensors", "other.safetensors"]

    def list_vaes(self) -> list[str]:
        return ["vae-ft-mse.safetensors"]

    def list_upscalers(self) -> list[str]:
        from creationmix.upscalers.table import LATENT_MODES, PIL_UPSCALERS
        return [*LATENT_MODES, *PIL_UPSCALERS, "4x-UltraSharp", "R-ESRGAN 4x+ Anime6B"]

    def list_loras(self) -> list[LoraCard]:
        return [
            LoraCard("paper_cut", 0.8, ("papercut", "layered paper"), "SD 1.5", self.preview),
            LoraCard("watercolor", 1.0, ("watercolor",), "SD 1.5"),
            LoraCard("broken", 1.0, error="broken.safetensors is not a LoRA file"),
        ]

    def list_presets(self) -> list[PresetCard]:
        return list(self.presets)

    def save_preset(self, params: GenerationParams, title: str) -> Path:
        if not title.strip():
            raise PresetError("a preset needs a title")
        self.saved.append((params, title))
        pid = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")
        self.presets.append(PresetCard(pid, title, "saved from the UI", params))
        return Path(self.folders.data_dir, "presets", f"{pid}.toml")

    def check_preset(self, preset_id: str, checkpoint: str | None) -> str | None:
        card = next((c for c in self.presets if c.id == preset_id), None)
        if card is None:
            raise PresetError(f"unknown preset {preset_id!r}")
        want = card.params.checkpoint
        if want and want not in self.list_checkpoints():
            return f"This preset was made with {want}, which is not installed; results will differ."
        return None

    def checkpoint_notice(self, checkpoint: str) -> str | None:
        if checkpoint not in self.list_checkpoints():
            raise ModelError(f"checkpoint {checkpoint!r} not found")
        return None if "creationmix" in checkpoint.lower() else f"{checkpoint}: this is not CreationMix V1"

    def list_styles(self) -> list[Style]:
        return load_styles([self.folders.data_dir])

    # -- text -----------------------------------------------------------------------------------------------
    def parse_infotext(self, text: str) -> GenerationParams:
        return parse_infotext(text)

    def read_infotext(self, text: str) -> ParsedInfotext:
        known = {"Steps", "Sampler", "Schedule type", "CFG scale", "Seed", "Size", "Clip skip", "RNG", "Model",
                 "Denoising strength", "Hires upscale", "Hires steps", "Hires upscaler", "Hires resize"}
        keys = re.findall(r"\s*([\w \-/]+):\s*(?:[^,]+)(?:,|$)", (text or "").strip().splitlines()[-1])
        ignored = {k.strip(): "" for k in keys if k.strip() not in known}
        return ParsedInfotext(parse_infotext(text), {}, ignored, applied=tuple(k.strip() for k in keys
                                                                             if k.strip() in known))

    def read_image_info(self, path: Path) -> str | None:
        try:
            with Image.open(path) as im:
                im.load()
                return im.info.get("parameters") or (im.getexif().get(0x9286) if hasattr(im, "getexif") else None)
        except (OSError, SyntaxError, ValueError):
            raise InvalidParameter(f"{Path(path).name} is not an image") from None

    def token_count(self, text: str) -> tuple[int, int]:
        used = len(re.findall(r"\w+|[^\w\s]", re.sub(r"<lora:[^>]*>", "", text or "")))
        return used, max(75, -(-used // 75) * 75)

    def banner(self) -> str | None:
        return self._banner

    def selected_checkpoint(self) -> str | None:
        return self._selected

    # -- generation -----------------------------------------------------------------------------------------
    def _next_number(self, day_dir: Path) -> int:
        nums = [int(m.group(1)) for p in day_dir.glob("*.png") if (m := re.match(r"(\d+)-", p.name))]
        return max(nums, default=-1) + 1

    def generate(self, params: GenerationParams, progress: Callable[[ProgressEvent], None] | None = None,
                 control: Control | None = None) -> GenerationResult:
        if params.checkpoint and params.checkpoint not in self.list_checkpoints():
            raise ModelError(f"checkpoint {params.checkpoint!r} not found; available: "
                             + ", ".join(self.list_checkpoints()))
        if "<lora:broken" in params.prompt:
            raise InvalidParameter("LoRA 'broken' cannot be used: broken.safetensors is not a LoRA file")
        with self._lock:
            self.calls.append(params)
            p = params.with_seed_resolved()
            control = control or Control()
            day_dir = self.folders.outputs_dir / "txt2img-images" / _dt.date.today().isoformat()
            day_dir.mkdir(parents=True, exist_ok=True)
            paths, seeds, infos, images = [], [], [], []
            interrupted = False
            n_images = p.batch_count * p.batch_size
            passes = [("first", p.steps)] + ([("hires", p.hires_steps_effective)] if p.enable_hires else [])
            size = p.hires_size if p.enable_hires else (p.width, p.height)
            for i in range(n_images):
                control.skipped.clear()
                for pass_name, total in passes:
                    for step in range(1, total + 1):
                        if control.interrupted.is_set() or control.skipped.is_set():
                            break
                        if self.step_delay:
                            time.sleep(self.step_delay)
                        if progress:
                            prev = Image.new("RGB", (16, 16), (step * 10 % 255, 80, 160)) if step % 2 == 0 else None
                            progress(ProgressEvent(step, total, pass_name, i, n_images, prev,
                                                   eta_s=self.step_delay * (total - step)))
                if control.interrupted.is_set():
                    interrupted = True
                    break
                if control.skipped.is_set():
                    continue
                seed = p.seed + i
                info = format_infotext(p, seed, "tiny_demo")
                img = Image.new("RGB", size, (seed % 256, (seed >> 8) % 256, 90))
                meta = PngImagePlugin.PngInfo()
                meta.add_text("parameters", info)
                path = day_dir / f"{self._next_number(day_dir):05d}-{seed}.png"
                tmp = path.with_suffix(".tmp")
                img.save(tmp, format="PNG", pnginfo=meta)
                tmp.replace(path)
                paths.append(path), seeds.append(seed), infos.append(info), images.append(img)
            if params.checkpoint:
                self._selected = params.checkpoint
            return GenerationResult(tuple(paths), tuple(seeds), tuple(infos), tuple(images), interrupted=interrupted)

    # -- jobs: the real planning and grid drawing over this fake's images ------------------------------------
    def run_strength_sweep(self, params, lora, strengths, seeds=2, *, preset_id=None, overrides=None,
                           progress=None, control=None):
        from creationmix.xyz.plot import plan_strength_sweep, run_plot
        if preset_id is not None:
            card = next((c for c in self.presets if c.id == preset_id), None)
            if card is None:
                raise PresetError(f"unknown preset {preset_id!r}")
            params = card.params
        if params is None:
            raise InvalidParameter("a strength sweep needs parameters or a preset card")
        params = params.replace(**(overrides or {}))
        known = {c.name for c in self.list_loras() if not c.error}
        plan = plan_strength_sweep(params, lora, strengths, seeds, check_lora=lambda n: _known(n, known))
        return run_plot(_FakeEngine(self), plan, progress=progress, control=control)

    def run_lora_previews(self, preset_id, *, names=None, overwrite=False, append_triggers=False, overrides=None,
                          progress=None, control=None, lora_dir=None, missing_only=False, sheet_dir=None, ray=None):
        from creationmix.previews.job import PreviewOutcome, PreviewReport, write_contact_sheet
        if not any(c.id == preset_id for c in self.presets):
            raise PresetError(f"unknown preset {preset_id!r}")
        outcomes = []
        for card in self.list_loras():
            if names and card.name not in names:
                continue
            lora_file = self.folders.lora_dirs[0] / f"{card.name}.safetensors"
            if card.error:
                outcomes.append(PreviewOutcome(card.name, lora_file, status="failed", reason=card.error))
            else:
                outcomes.append(PreviewOutcome(card.name, lora_file, preview=card.preview, status="done"
                                               if card.preview else "skipped", weight=card.preferred_weight))
        report = PreviewReport(outcomes=outcomes)
        return write_contact_sheet(report, Path(sheet_dir or self.folders.outputs_dir / "lora-previews"))


    # -- LoRA epochs: one fake kohya run, rendered by the fake generate() --------------------------------------
    SERIES = "paper_run"

    def _series(self):
        from creationmix.lora.library import LoraInfo
        from creationmix.lora.series import group_series
        folder = self.folders.lora_dirs[0]
        infos = [LoraInfo(path=folder / f"{self.SERIES}{suffix}.safetensors", name=f"{self.SERIES}{suffix}",
                          rel=f"{self.SERIES}{suffix}", metadata={"ss_epoch": str(n), "ss_steps": str(n * 100)})
                 for n, suffix in ((1, "-000001"), (2, "-000002"), (3, ""))]
        return group_series(infos)[0]

    def list_lora_series(self):
        from creationmix.epochs.service import series_cards

        class _Lib:
            def series(_self):
                return [self._series()]
        return series_cards(_Lib())

    def run_epoch_grid(self, series, *, prompts_file=None, prompts_text=None, prompts_format="txt", preset_id=None,
                       strengths=(0.6, 0.8, 1.0), seeds=1, epochs=None, overrides=None, publish=None, force=False,
                       preview_name="preview", out_dir=None, progress=None, control=None):
        from creationmix.epochs.job import plan_epoch_grid, run_epoch_grid
        from creationmix.epochs.prompts import SamplePrompt, load_prompt_file, parse_prompt_text
        from creationmix.epochs.publish import publish as publish_cell
        from creationmix.epochs.service import PublishSpec
        from creationmix.errors import LoraError
        from creationmix.lora.tags import extract_lora_tags
        s = self._series()
        if series != s.name:
            raise LoraError(f"LoRA {series!r} is not part of a kohya epoch series; series found: {s.name}")
        warnings: list[str] = []
        if prompts_text is not None or prompts_file is not None:
            pf = (parse_prompt_text(prompts_text, f"prompts.{prompts_format}") if prompts_text is not None
                  else load_prompt_file(prompts_file))
            prompts, warnings = pf.prompts, pf.warnings
        elif preset_id is not None:
            card = next((c for c in self.presets if c.id == preset_id), None)
            if card is None:
                raise PresetError(f"unknown preset {preset_id!r}")
            p = card.params
            prompts = [SamplePrompt(0, extract_lora_tags(p.prompt)[0].strip(), p.negative_prompt, p.width, p.height,
                                    p.seed, p.steps, p.cfg_scale, p.sampler)]
        else:
            raise InvalidParameter("give a prompt file or a preset card")
        spec = PublishSpec.parse(publish) if publish is not None else None
        values = list(strengths) if not isinstance(strengths, str) else strengths
        plan = plan_epoch_grid(s, prompts, strengths=values, seeds=seeds, epochs=epochs, overrides=overrides,
                               out_dir=Path(out_dir or self.folders.outputs_dir / "lora-epochs"))
        result = run_epoch_grid(_FakeEngine(self), plan, progress=progress, control=control)
        result.warnings = warnings + result.warnings
        if spec is not None:
            grid = plan.prompts[0]
            cell = grid.cell(s.find(spec.epoch), round(spec.strength, 4), grid.seeds[0])
            if cell is None:
                raise InvalidParameter(f"publish {spec.epoch}:{spec.strength:g}: not a cell of this grid")
            result.published = publish_cell(cell, s, force=force, preview_name=preview_name)
        return result


def _known(name: str, known: set[str]) -> str:
    if name not in known:
        raise InvalidParameter(f"LoRA {name!r} not found; available: {', '.join(sorted(known))}")
    return name


class _FakeEngine:
    """What xyz.plot.run_plot needs of an engine, over the fake's generate()."""

    def __init__(self, service: "FakeService"):
        self.folders, self.model, self._svc = service.folders, None, service

    def generate(self, params, *, save=True, progress=None, control=None):
        return self._svc.generate(params, progress=progress, control=control)
