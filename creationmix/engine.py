"""The generation engine: A1111 txt2img + hires fix over the diffusers UNet with k-diffusion semantics.

`Engine.generate` reads as the script A1111 follows: resolve seeds -> load model -> apply LoRAs -> encode
prompts -> for each batch: prepare noise -> sample -> hires (upscale, re-noise, sample) -> decode -> save.
"""
from __future__ import annotations

import contextlib
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from . import __version__, startup_gc, worksize
from .civitai import civitai_hashes
from .devices import pick_device, pick_dtype
from .errors import Interrupted, ModelError, NansError
from .infotext import format_infotext
from .models.loader import LoadedModel, load_checkpoint
from .output import dated_folder, save_numbered_png
from .params import GenerationParams
from .paths import Folders
from .prompt.conditioning import build_conditioning
from .prompt.embeddings import EmbeddingLibrary, ti_hashes
from .prompt.encoder import PromptEncoder
from .lora.library import LoraLibrary
from .lora.manager import LoraManager
from .lora.tags import extract_lora_tags
from .sampling import SAMPLER_TABLE, ImageRNG, KDenoiser, sd15_alphas_cumprod
from .sampling.samplers import SamplingInterrupted
from .jobs import Control, GenerationResult, ProgressEvent
from .upscalers.runner import PixelUpscalers, UpscaleSettings
from .upscalers.table import LATENT_MODES
from .cfg import CFGModel, CFGState, stack_conds  # noqa: F401  (stack_conds re-exported)
from .tome import apply_token_merging, hires_ratio

log = logging.getLogger(__name__)

# A1111's "cheap approximation" latent -> RGB for live previews (sd_samplers_common.samples_to_images_tensor).
_PREVIEW_COEFS = torch.tensor([
    [0.298, 0.207, 0.208],
    [0.187, 0.286, 0.173],
    [-0.158, 0.189, 0.264],
    [-0.184, -0.271, -0.473],
])


class _Skipped(Exception):
    """The user skipped the current batch; go on with the next one."""


class _StopInBlock(Exception):
    """Interrupt seen between two UNet blocks: abandon the model call in progress."""


@contextlib.contextmanager
def interrupt_between_blocks(unet, control: Control):
    """Check the interrupt flag before every UNet block, so Interrupt takes effect within one block even when a
    single UNet call (a huge latent on CPU) lasts minutes, not only between sampler steps."""
    def check(_module, _args):
        if control.interrupted.is_set():
            raise _StopInBlock()

    blocks = [*getattr(unet, "down_blocks", ()), getattr(unet, "mid_block", None), *getattr(unet, "up_blocks", ())]
    handles = [b.register_forward_pre_hook(check) for b in blocks if b is not None]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


@dataclass
class _Pass:
    name: str
    total: int


def latent_preview(latent: torch.Tensor) -> Image.Image:
    rgb = torch.einsum("lxy,lr->rxy", latent[0].float().cpu(), _PREVIEW_COEFS)
    arr = ((rgb + 1.0) / 2.0).clamp(0, 1).mul(255).permute(1, 2, 0).numpy().astype(np.uint8)
    return Image.fromarray(arr)


def to_uint8_images(decoded: torch.Tensor) -> list[Image.Image]:
    """A1111 truncates (astype), it does not round: keep it so pixels match."""
    x = torch.clamp((decoded.float() + 1.0) / 2.0, 0.0, 1.0)
    arr = (255.0 * np.moveaxis(x.cpu().numpy(), 1, 3)).astype(np.uint8)
    return [Image.fromarray(a) for a in arr]


def hires_cond_steps(params: GenerationParams, spec, hires_spec) -> tuple[int, int]:
    """(base, hires) step counts for the hires pass's prompt schedules, as A1111's calculate_hr_conds passes
    them: base is the first pass's total steps (`firstpass_steps`), so `[cat:dog:25]` with 20 steps switches
    at hires step 25 - 20 = 5; hires is the hires pass's total steps."""
    return spec.total_steps(params.steps), hires_spec.total_steps(params.hires_steps_effective)


class Engine:
    """Owns the loaded model (one at a time) and runs generations. Not thread-safe: callers queue."""

    def __init__(self, folders: Folders, device: str | None = None, precision: str | None = None,
                 tiled_vae: bool = False, default_checkpoint: str | None = None,
                 upscale: UpscaleSettings | None = None):
        self.folders = folders
        self.default_checkpoint = default_checkpoint  # what a request without a checkpoint gets
        self.device = pick_device(device)
        self.dtype = pick_dtype(precision, self.device)
        self.tiled_vae = tiled_vae
        self.model: LoadedModel | None = None
        self._model_key: tuple | None = None
        self._model_args: tuple | None = None  # how the loaded model was loaded: to reload it after a failure
        self.loras: LoraManager | None = None
        self.lora_library = LoraLibrary(folders.lora_dirs)
        self.embeddings = EmbeddingLibrary(folders.embedding_dirs)
        self.encoder: PromptEncoder | None = None
        self._lock = threading.Lock()
        self.timings: dict[str, float] = {}
        self.upscalers = PixelUpscalers(folders, self.device, self.dtype, upscale)

    # -- model management ----------------------------------------------------------------------------------
    def list_checkpoints(self) -> list[Path]:
        return self.folders.list_checkpoints()

    def list_vaes(self) -> list[Path]:
        return self.folders.list_vaes()

    def checkpoint_path(self, name: str | None) -> Path:
        """The one "which checkpoint" rule: the name asked for; without one the default (configured, or the
        user's last choice), else the loaded model, else the first one listed."""
        if name is None:
            name = self.default_checkpoint
        if name is None:
            if self.model is not None:
                return self.model.path
            found = self.list_checkpoints()
            if not found:
                dirs = ", ".join(str(d) for d in self.folders.checkpoint_dirs)
                raise ModelError(f"no checkpoint found; put an SD 1.5 .safetensors file in {dirs}")
            return found[0]
        return self.folders.resolve_checkpoint(name)

    def vae_path(self, name: str) -> Path | None:
        return self.folders.vae_choice(name)

    def load(self, checkpoint: str | None = None, vae: str = "Automatic") -> LoadedModel:
        try:
            return self._load(checkpoint, vae)
        finally:  # a process started without GC (startup_gc.begin) collects normally from its first load on
            startup_gc.settled()

    def _load(self, checkpoint: str | None, vae: str) -> LoadedModel:
        path = self.checkpoint_path(checkpoint)
        vae_path = self.vae_path(vae)
        key = (str(Path(path).resolve()), str(vae_path) if vae_path else vae)
        if self._model_key == key and self.model is not None:
            return self.model
        previous = self._model_args if self.model is not None else None
        if self.device.type == "cuda" and previous is not None:
            # Two SD 1.5 models at once may not fit the GPU: free the old one first, reload it on failure.
            self.model = self.encoder = self.loras = None
            self._model_key = None
            torch.cuda.empty_cache()
        try:
            model = load_checkpoint(path, vae_path=vae_path, device=self.device, dtype=self.dtype,
                                    auto_vae=(vae == "Automatic"), cache_dir=self.folders.cache_dir)
        except BaseException:
            # A failed load (a corrupt VAE, say) must not leave the user without their working model, nor
            # send later requests without a checkpoint name to whatever file is listed first.
            if self.model is None and previous is not None:
                self._install(load_checkpoint(*previous[:1], **previous[1]), previous[2], previous)
            raise
        self._install(model, key, (path, dict(vae_path=vae_path, device=self.device, dtype=self.dtype,
                                              auto_vae=(vae == "Automatic"), cache_dir=self.folders.cache_dir),
                                   key))
        return model

    def _install(self, model: LoadedModel, key: tuple, args: tuple) -> None:
        self.model, self._model_key, self._model_args = model, key, args
        self.encoder = PromptEncoder(model.text_encoder, model.tokenizer, self.embeddings)
        self.loras = LoraManager(model.pipe, self.lora_library)

    def check_work_size(self, params: GenerationParams) -> None:
        """Refuse, before loading or allocating, a request whose activations cannot fit the device."""
        elem = torch.tensor([], dtype=self.dtype).element_size()
        # On CUDA an out-of-memory decode falls back to tiles (_vae_decode): only a tiled decode must fit.
        worksize.check(params.width, params.height, params.batch_size, elem, worksize.free_bytes(self.device),
                       tiled_vae=self.tiled_vae or self.device.type == "cuda",
                       hires_size=params.hires_size if params.enable_hires else None,
                       device_name=str(self.device))

    def warm_up(self, checkpoint: str | None = None) -> None:
        """Load the model a request without a checkpoint would get; a generate() meanwhile waits for it."""
        with self._lock:
            self.load(checkpoint)

    @property
    def ready(self) -> bool:
        return self.model is not None

    def prefetch_loras(self, params: GenerationParams | None) -> int:
        """A job's next request: start reading its LoRA files in the background (LoraManager.prefetch) while
        the current one samples. Nothing is loaded into the model; without a loaded model it does nothing."""
        if params is None or self.loras is None:
            return 0
        try:
            return self.loras.prefetch(self._lora_requests(params)[2])
        except Exception as e:  # noqa: BLE001  (a hint for later, never a reason to fail this image)
            log.debug("LoRA prefetch: %s", e)
            return 0

    # -- generation ----------------------------------------------------------------------------------------
    def generate(self, params: GenerationParams, *, progress: Callable[[ProgressEvent], None] | None = None,
                 control: Control | None = None, save: bool = True, preview_every: int = 0,
                 outputs_dir: Path | None = None) -> GenerationResult:
        with self._lock:
            return self._generate(params, progress, control or Control(), save, preview_every, outputs_dir)

    def _generate(self, params, progress, control, save, preview_every, outputs_dir) -> GenerationResult:
        params = params.with_seed_resolved()
        spec = SAMPLER_TABLE[params.sampler]
        hires_spec = SAMPLER_TABLE[params.hires_sampler or params.sampler]
        self.check_work_size(params)
        model = self.load(params.checkpoint, params.vae)
        if params.enable_hires:
            self.upscalers.check(params.hires_upscaler)

        prompt, negative, lora_meta = self._apply_loras(params)
        warnings = self.loras.active_warnings()
        cond = self._encode(prompt, negative, params, spec.total_steps(params.steps), None)
        hires_cond = None
        if params.enable_hires:
            hp = self._strip_tags(params.hires_prompt) if params.hires_prompt else prompt
            hn = self._strip_tags(params.hires_negative_prompt) if params.hires_negative_prompt else negative
            hires_cond = self._encode(hp, hn, params, *hires_cond_steps(params, spec, hires_spec))

        meta = self._infotext_meta(model, lora_meta, cond, hires_cond)
        folder = dated_folder(outputs_dir or self.folders.outputs_dir)
        denoiser = KDenoiser(self._unet_fn(model), self._alphas(params))
        self._cfg_state = CFGState()
        self.timings = {"first": 0.0, "hires": 0.0, "decode": 0.0}
        images, paths, seeds, infotexts = [], [], [], []
        interrupted = False
        for batch_no in range(params.batch_count):
            if control.interrupted.is_set():
                interrupted = True
                break
            control.skipped.clear()
            # A1111: seed + i per image, or with a variation strength one seed and variation seed + i.
            image_seeds = [params.image_seeds(batch_no * params.batch_size + i) for i in range(params.batch_size)]
            batch_seeds, batch_subseeds = [s for s, _ in image_seeds], [v for _, v in image_seeds]
            report = self._reporter(progress, batch_no, params.batch_count, preview_every)
            try:
                with self._timed("first"):
                    latent = self._first_pass(denoiser, spec, cond, params, batch_seeds, control, report,
                                              subseeds=batch_subseeds)
                if params.enable_hires:
                    with self._timed("hires"):
                        latent = self._hires_pass(denoiser, hires_spec, hires_cond, params, latent, batch_seeds,
                                                  control, report, warnings, subseeds=batch_subseeds)
                with self._timed("decode"):
                    batch_images = self._decode(model, latent, warnings)
            except _Skipped:
                continue
            except SamplingInterrupted as stop:
                # A1111 decodes the last denoised latent of the batch in progress and keeps it (its
                # "Save incomplete images"); the infotext is the one it would have had, as in A1111.
                interrupted = True
                with self._timed("decode"):
                    batch_images = self._decode(model, stop.latent, warnings)
                warnings.append(f"Interrupted at step {stop.step} of the {stop.pass_name} pass: the last "
                                f"{len(batch_images)} image(s) are incomplete.")
            except Interrupted:
                interrupted = True
                break
            finally:
                if params.enable_hires:
                    self.upscalers.finished()
            applied = self._cfg_state.applied(params)
            for seed, subseed, image in zip(batch_seeds, batch_subseeds, batch_images):
                text = format_infotext(applied.replace(seed=seed, subseed=subseed), meta)
                images.append(image)
                seeds.append(seed)
                infotexts.append(text)
                if save:
                    paths.append(save_numbered_png(image, folder, seed, text))
            if interrupted:
                break
        apply_token_merging(model.unet, 0.0)
        return GenerationResult(paths=tuple(paths), seeds=tuple(seeds), infotexts=tuple(infotexts),
                                images=tuple(images), interrupted=interrupted, warnings=tuple(warnings))

    @contextlib.contextmanager
    def _timed(self, name: str):
        """Wall time per named step, for bench/engine.py (synchronised so CUDA work is counted)."""
        start = time.perf_counter()
        try:
            yield
        finally:
            if self.device.type == "cuda":
                torch.cuda.synchronize()
            self.timings[name] = self.timings.get(name, 0.0) + time.perf_counter() - start

    # -- named steps ---------------------------------------------------------------------------------------
    def _strip_tags(self, text: str) -> str:
        return extract_lora_tags(text)[0]

    @staticmethod
    def _lora_requests(params: GenerationParams) -> tuple[str, str, list]:
        """Prompt and negative without their tags, and every LoRA the request uses (prompt, hires prompt,
        negative: the order activate() resolves duplicates in)."""
        prompt, requests = extract_lora_tags(params.prompt)
        negative, neg_requests = extract_lora_tags(params.negative_prompt)
        if params.enable_hires and params.hires_prompt:
            requests = requests + extract_lora_tags(params.hires_prompt)[1]
        return prompt, negative, requests + neg_requests

    def _apply_loras(self, params: GenerationParams) -> tuple[str, str, str]:
        prompt, negative, requests = self._lora_requests(params)
        self.loras.activate(requests)
        if self.loras.te_changed:
            # Adapter names are never reused, so (adapter, weight) pairs identify the encoder's weights exactly.
            self.encoder.set_te_state(self.loras.te_key)
        return prompt, negative, self.loras.lora_hashes()

    def _encode(self, prompt: str, negative: str, params: GenerationParams, steps: int, hires_steps):
        return build_conditioning(self.encoder, prompt, negative, steps, clip_skip=params.clip_skip,
                                  emphasis=params.emphasis, hires_steps=hires_steps, syntax=params.prompt_syntax)

    def _rng(self, params: GenerationParams, shape, seeds, subseeds=None) -> ImageRNG:
        return ImageRNG(shape, seeds, device=self.device, source=params.rng,
                        eta_noise_seed_delta=params.eta_noise_seed_delta, subseeds=subseeds,
                        subseed_strength=params.subseed_strength, seed_resize_from_h=params.seed_resize_from_h,
                        seed_resize_from_w=params.seed_resize_from_w)

    def _first_pass(self, denoiser, spec, cond, params, seeds, control, report, subseeds=None) -> torch.Tensor:
        shape = (4, params.height // 8, params.width // 8)
        rng = self._rng(params, shape, seeds, subseeds)
        plan = spec.plan(params.schedule, params.steps, denoiser, params=params)
        apply_token_merging(self.model.unet, params.token_merging_ratio)
        x = plan.start(rng.first())  # A1111: noise * sigmas[0]
        return self._sample(plan, cond, params, x, rng, control, report, "first")

    def _hires_pass(self, denoiser, spec, cond, params, latent, seeds, control, report,
                    warnings: list[str] | None = None, subseeds=None) -> torch.Tensor:
        width, height = params.hires_size
        if params.hires_upscaler in LATENT_MODES:
            mode, antialias = LATENT_MODES[params.hires_upscaler]
            latent = F.interpolate(latent, size=(height // 8, width // 8), mode=mode, antialias=antialias)
        else:
            with self._timed("upscale"):
                latent = self._upscale_pixels(latent, params, seeds, control, [] if warnings is None else warnings)
        # A1111 re-seeds every image with its own seed at the upscaled shape for the second pass (variation
        # and seed resize included).
        rng = self._rng(params, latent.shape[1:], seeds, subseeds)
        # A1111: "Use same scheduler" is the first pass's schedule type, resolved for the hires sampler.
        schedule = params.hires_schedule or params.schedule
        plan = spec.plan(schedule, params.hires_steps_effective, denoiser, denoise=params.denoising_strength,
                         params=params)
        apply_token_merging(self.model.unet, hires_ratio(params.token_merging_ratio, params.token_merging_ratio_hr))
        x = plan.start(rng.first(), init=latent)
        return self._sample(plan, cond, params, x, rng, control, report, "hires")

    @torch.no_grad()
    def _upscale_pixels(self, latent, params, seeds, control, warnings) -> torch.Tensor:
        """A1111's sample_hr_pass with a pixel upscaler: decode -> uint8 (truncated) -> images.resize_image to the
        hires size with the upscaler -> VAE encode."""
        width, height = params.hires_size

        def should_stop():
            return control.interrupted.is_set() or control.skipped.is_set()

        images = self._decode(self.model, latent, warnings)
        images = [self.upscalers.resize(im, width, height, params.hires_upscaler, should_stop) for im in images]
        if control.skipped.is_set():
            raise _Skipped()
        if control.interrupted.is_set():
            raise Interrupted("interrupted")
        return self._encode_images(self.model, images, seeds)

    def _encode_images(self, model: LoadedModel, images: list[Image.Image], seeds: list[int]) -> torch.Tensor:
        """images_tensor_to_samples: each image alone, scale * a *sample* of the VAE posterior (not its mean).

        LDM's DiagonalGaussianDistribution.sample draws torch.randn on the global CPU generator, which A1111's
        first-pass noise left seeded with the batch's last seed (rng.randn -> torch.manual_seed); nothing else
        draws from it in between, so the same seeded CPU stream is replayed here, image after image. (With RNG source
        NV, A1111 never seeds torch, so its draw there is not reproducible and ours is simply seeded the same way.)"""
        vae = model.vae
        arr = np.stack([np.asarray(im.convert("RGB")).astype(np.float32) / 255.0 for im in images])
        x = torch.from_numpy(np.moveaxis(arr, 3, 1).copy()).to(self.device, vae.dtype) * 2 - 1
        gen = torch.Generator("cpu").manual_seed(int(seeds[-1]))
        out = []
        try:
            vae.enable_tiling() if self.tiled_vae else vae.disable_tiling()
            for i in range(x.shape[0]):
                dist = vae.encode(x[i:i + 1], return_dict=False)[0]
                noise = torch.randn(dist.mean.shape, generator=gen).to(dist.mean.device, dist.mean.dtype)
                out.append((dist.mean + dist.std * noise).float() * vae.config.scaling_factor)
        finally:
            vae.disable_tiling()
        return torch.cat(out)

    def _sample(self, plan, cond, params, x, rng, control, report, pass_name):
        model_fn = CFGModel(plan.inner_model, cond, params.cfg_scale * plan.spec.cfg_scale_multiplier, x.shape[0],
                            s_min_uncond=params.s_min_uncond, empty=self._empty_cond(params),
                            pad_v0=params.pad_conds_v0, state=self._cfg_state)
        last = {"latent": x, "step": 0}

        def callback(i, total, x_i, denoised):
            if i == 0 and denoised is not None and not bool(torch.isfinite(denoised).all()):
                # One check (one sync) on the first step: a broken model gives NaN at once; later NaNs from
                # a sampler setting still reach the VAE check.
                raise NansError(
                    f"the UNet produced NaN/Inf values in the {pass_name} pass at step 1; the checkpoint "
                    f"{self.model.name} is probably broken (NaN/Inf weights){self._fp16_hint()}")
            last["latent"], last["step"] = denoised, i + 1
            report(i + 1, total, pass_name, denoised)

        def should_stop():
            if control.skipped.is_set():
                raise _Skipped()
            return control.interrupted.is_set()

        try:
            with interrupt_between_blocks(self.model.unet, control):
                return plan.run(model_fn, x, rng=rng, callback=callback, should_stop=should_stop)
        except _StopInBlock:
            stop = SamplingInterrupted(last["latent"], last["step"])
        except SamplingInterrupted as e:
            stop = SamplingInterrupted(e.latent, last["step"])  # counted in finished steps, as the UI shows them
        stop.pass_name = pass_name  # which pass the partial latent belongs to, for the user's message
        raise stop

    def _alphas(self, params: GenerationParams) -> torch.Tensor:
        ac = sd15_alphas_cumprod()
        if params.downcast_alphas_cumprod:  # A1111 < 1.7 / use_downcasted_alpha_bar: an fp16 alphas table
            ac = ac.half()
        return ac.to(self.device)

    def _empty_cond(self, params: GenerationParams):
        """A1111's cond_stage_model_empty_prompt (what "Pad conds" pads with), encoded only when needed."""
        if not params.pad_conds:
            return None
        return lambda: self.encoder.encode("", params.clip_skip, params.emphasis)

    def _unet_fn(self, model: LoadedModel):
        unet, dtype = model.unet, model.dtype

        def unet_fn(x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
            # t stays fractional float32: A1111 feeds the interpolated timestep, diffusers would round it.
            out = unet(x.to(dtype), t.float(), encoder_hidden_states=cond.to(dtype), return_dict=False)[0]
            return out.float()

        return torch.no_grad()(unet_fn)

    @torch.no_grad()
    def _decode(self, model: LoadedModel, latent: torch.Tensor, warnings: list[str]) -> list[Image.Image]:
        vae = model.vae
        scaled = latent / vae.config.scaling_factor
        decoded = self._vae_decode(vae, scaled, tiled=self.tiled_vae, warnings=warnings)
        if torch.isnan(decoded).any() and vae.dtype != torch.float32:
            # A1111 --no-half-vae behaviour: fp16 VAEs overflow on some latents; decode again in fp32.
            msg = "VAE produced NaNs in fp16; decoded again in fp32"
            log.warning(msg)
            warnings.append(msg)
            vae.to(torch.float32)
            try:
                decoded = self._vae_decode(vae, scaled, tiled=self.tiled_vae, warnings=warnings)
            finally:
                vae.to(model.dtype)
        if not bool(torch.isfinite(decoded).all()):
            vae_name = model.vae_name or f"the VAE inside {model.name}"
            cause = ("the latents were already NaN/Inf" if not bool(torch.isfinite(latent).all())
                     else f"{vae_name} is probably broken (NaN/Inf weights); try another VAE")
            raise NansError(f"the VAE produced NaN/Inf values (the image would be flat black): {cause}")
        return to_uint8_images(decoded)

    def _fp16_hint(self) -> str:
        return "; in fp16 it may also overflow: try --precision fp32" if self.dtype == torch.float16 else ""

    def _vae_decode(self, vae, scaled: torch.Tensor, *, tiled: bool, warnings: list[str]) -> torch.Tensor:
        """Whole-image decode, or tiled on request or when the whole image does not fit the device."""
        try:
            vae.enable_tiling() if tiled else vae.disable_tiling()
            return vae.decode(scaled.to(vae.dtype), return_dict=False)[0]
        except torch.cuda.OutOfMemoryError:
            if tiled:
                raise
            torch.cuda.empty_cache()
            msg = "VAE decode did not fit in GPU memory; decoded in tiles"
            log.warning(msg)
            warnings.append(msg)
            return self._vae_decode(vae, scaled, tiled=True, warnings=warnings)
        finally:
            vae.disable_tiling()

    def _reporter(self, progress, batch_no: int, batch_count: int, preview_every: int):
        start = time.monotonic()

        def report(step: int, total: int, pass_name: str, denoised: torch.Tensor | None):
            if progress is None:
                return
            preview = None
            if preview_every and denoised is not None and (step % preview_every == 0 or step == total):
                preview = latent_preview(denoised)
            elapsed = time.monotonic() - start
            eta = elapsed / step * (total - step) if step else None
            progress(ProgressEvent(step=step, total=total, pass_name=pass_name, image_index=batch_no,
                                   image_count=batch_count, preview=preview, eta_s=eta))

        return report

    def _infotext_meta(self, model: LoadedModel, lora_hashes: str, cond, hires_cond=None) -> dict[str, str]:
        """What describes this output, recomputed from what was loaded and used (never copied from a recipe)."""
        meta = {"Model hash": model.model_hash, "Model": Path(model.name).stem}
        if model.vae_name:
            meta["VAE hash"] = model.vae_hash
            meta["VAE"] = model.vae_name
        if lora_hashes:
            meta["Lora hashes"] = lora_hashes
        used = {**getattr(cond, "used_embeddings", {}), **getattr(hires_cond, "used_embeddings", {})}
        ti = ti_hashes(used)
        if ti:
            meta["TI hashes"] = ", ".join(f"{k}: {v}" for k, v in ti.items())
        active = self.loras.active if self.loras else []
        loras = {a.name.replace(":", "").replace(",", ""): a.info.hash for a in active}
        # Embedding.shorthash is sha256[:12]; civitai matches the first 10 digits.
        meta["Hashes"] = civitai_hashes(model.model_hash, model.vae_hash if model.vae_name else None, loras, ti)
        meta["Version"] = f"CreationMix {__version__}"
        return meta
