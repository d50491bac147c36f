"""The A1111-compatible HTTP API (`/sdapi/v1/...`) and CreationMix's own job routes (`/creationmix/v1/...`).

Every route sits behind the same HTTP Basic check when credentials are configured (A1111 leaves /loras and
/refresh-loras open; we do not). Errors leave as JSON via `errors.py`'s table.
"""
from __future__ import annotations

import base64
import binascii
import datetime as _dt
import io
import json
import logging
import secrets
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from fastapi import APIRouter, Depends, Request
from fastapi.exceptions import HTTPException, RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from fastapi.security import HTTPBasic, HTTPBasicCredentials

from .. import __version__
from ..errors import CreationMixError, InvalidParameter, QueueFull
from ..jobs import Control
from ..params import DEFAULT_SCHEDULE, LATENT_UPSCALERS, SCHEDULES, UPSCALERS, GenerationParams
from ..sampler_options import SCHEDULE_DEFAULT_RHO
from . import mapping
from .backend import Backend, memory
from .errors import ApiError, error_body, status_of
from .jobs import JobStore
from .models import (JobCreated, PNGInfoRequest, PNGInfoResponse, PreviewsRequest, ProgressResponse,
                     TextToImageResponse, Txt2ImgRequest)
from .options import Options, OptionsUpdate

log = logging.getLogger("creationmix.api")


class _ErrorRoute(APIRoute):
    """Domain errors become their JSON answer here, on our routes only (gradio's app keeps its handlers)."""

    def get_route_handler(self) -> Callable:
        handler = super().get_route_handler()

        async def route(request: Request):
            try:
                return await handler(request)
            except (HTTPException, RequestValidationError):
                raise
            except ApiError as e:
                headers = {"Retry-After": "5"} if e.status == 503 else None
                return JSONResponse(error_body("ApiError", e.detail, e.field), status_code=e.status, headers=headers)
            except CreationMixError as e:
                status = status_of(e)
                headers = {"Retry-After": "5"} if isinstance(e, QueueFull) else None
                return JSONResponse(error_body(type(e).__name__, str(e)), status_code=status, headers=headers)
            except Exception as e:
                log.exception("unexpected error in %s %s", request.method, request.url.path)
                return JSONResponse(error_body(type(e).__name__, f"Unexpected error ({type(e).__name__}: {e}); "
                                                                 "see the server log."), status_code=500)

        return route


def _auth_dependency(credentials: Sequence[tuple[str, str]] | None):
    if not credentials:
        return []
    table = dict(credentials)
    basic = HTTPBasic(auto_error=False)

    def check(given: HTTPBasicCredentials | None = Depends(basic)) -> None:
        if given is not None and given.username in table and secrets.compare_digest(
                given.password.encode(), table[given.username].encode()):
            return
        raise HTTPException(status_code=401, detail="Incorrect username or password",
                            headers={"WWW-Authenticate": "Basic"})

    return [Depends(check)]


# -- images --------------------------------------------------------------------------------------------------------
def encode_png(image, parameters: str | None) -> str:
    """The PNG exactly as outputs/ gets it (same writer options, `parameters` chunk), base64."""
    from ..output import png_info
    buf = io.BytesIO()
    image.save(buf, format="PNG", pnginfo=png_info(parameters))
    return base64.b64encode(buf.getvalue()).decode("ascii")


def decode_image_b64(text: str, field: str = "image") -> bytes:
    text = (text or "").strip()
    if text.startswith("data:"):
        text = text.split(",", 1)[-1]
    if text.startswith(("http://", "https://")):
        raise ApiError(422, "image URLs are not fetched; send the image as base64", field=field)
    try:
        return base64.b64decode(text, validate=False)
    except (binascii.Error, ValueError) as e:
        raise ApiError(422, f"{field} is not valid base64 ({e})", field=field) from e


def infotext_pairs(text: str) -> dict[str, str]:
    """A1111's parse_generation_parameters output shape: Prompt, Negative prompt, every key, Size-1/Size-2."""
    from ..infotext import NEGATIVE_PREFIX, RE_PARAM, unquote
    lines = text.strip().split("\n")
    idx = next((i for i in range(len(lines) - 1, -1, -1) if len(RE_PARAM.findall(lines[i])) >= 3), None)
    head = lines if idx is None else lines[:idx]
    out: dict[str, str] = {}
    prompt, negative, neg = [], [], False
    for line in head:
        line = line.strip()
        if line.startswith(NEGATIVE_PREFIX):
            neg, line = True, line[len(NEGATIVE_PREFIX):].strip()
        (negative if neg else prompt).append(line)
    out["Prompt"], out["Negative prompt"] = "\n".join(prompt), "\n".join(negative)
    for line in ([] if idx is None else lines[idx:]):
        for k, v in RE_PARAM.findall(line):
            v = unquote(v)
            out[k] = v
            if k in ("Size", "Hires resize") and "x" in v:
                a, _, b = v.partition("x")
                out[f"{k}-1"], out[f"{k}-2"] = a, b
    return out


# -- txt2img ---------------------------------------------------------------------------------------------------------
_CORE_KEYS = {"Steps", "Sampler", "CFG scale", "Seed", "Size", "Model hash", "Model", "VAE hash", "VAE", "Version",
              "Clip skip", "Denoising strength"}


def build_info(req: Txt2ImgRequest, params: GenerationParams, result, effective: dict[str, Any],
               started: float, backend: Backend) -> dict[str, Any]:
    """A1111's Processed.js() keys, from what actually ran (the images' own infotexts)."""
    infotexts = list(result.infotexts)
    meta: dict[str, str] = {}
    extra: dict[str, str] = {}
    if infotexts:
        meta = backend.parse_infotext(infotexts[0]).meta
        extra = {k: v for k, v in infotext_pairs(infotexts[0]).items()
                 if k not in _CORE_KEYS and k not in ("Prompt", "Negative prompt") and not k.endswith(("-1", "-2"))}
    seeds = list(result.seeds)
    n = len(seeds)
    subseed = req.subseed if req.subseed is not None else -1
    return {
        "prompt": params.prompt, "all_prompts": [params.prompt] * n,
        "negative_prompt": params.negative_prompt, "all_negative_prompts": [params.negative_prompt] * n,
        "seed": seeds[0] if seeds else params.seed, "all_seeds": seeds,
        "subseed": subseed, "all_subseeds": [subseed + i if subseed >= 0 else -1 for i in range(n)],
        "subseed_strength": req.subseed_strength or 0,
        "width": params.width, "height": params.height,
        "sampler_name": params.sampler, "scheduler": params.sampler_schedule,
        "cfg_scale": params.cfg_scale, "steps": params.steps, "batch_size": params.batch_size,
        "restore_faces": False, "face_restoration_model": None,
        "sd_model_name": meta.get("Model"), "sd_model_hash": meta.get("Model hash"),
        "sd_vae_name": meta.get("VAE"), "sd_vae_hash": meta.get("VAE hash"),
        "seed_resize_from_w": req.seed_resize_from_w if req.seed_resize_from_w is not None else -1,
        "seed_resize_from_h": req.seed_resize_from_h if req.seed_resize_from_h is not None else -1,
        "denoising_strength": params.denoising_strength if params.enable_hires else None,
        "extra_generation_params": extra,
        "index_of_first_image": 0, "infotexts": infotexts, "styles": [],
        "job_timestamp": _dt.datetime.fromtimestamp(started).strftime("%Y%m%d%H%M%S"),
        "clip_skip": params.clip_skip, "is_using_inpainting_conditioning": False,
        "version": meta.get("Version", f"CreationMix {__version__}"),
        "interrupted": bool(result.interrupted), "warnings": list(result.warnings),
        "paths": [str(p) for p in result.paths],
    }


# -- progress --------------------------------------------------------------------------------------------------------
def progress_body(queue, skip_current_image: bool) -> dict[str, Any]:
    job = queue.current() if queue is not None else None
    idle_state = {"skipped": False, "interrupted": False, "stopping_generation": False, "job": "",
                  "job_count": 0, "job_timestamp": "0", "job_no": 0, "sampling_step": 0, "sampling_steps": 0,
                  "queued": queue.waiting() if queue is not None else 0}
    if job is None:
        return {"progress": 0.0, "eta_relative": 0.0, "state": idle_state, "current_image": None, "textinfo": None}
    ev = job.event
    if job.kind in ("previews", "sweep", "plot"):  # jobs of many images report JobProgress
        job_count = max(job.images_total, 1)
        job_no = job.images_done
    else:
        passes = 2 if job.hires else 1  # A1111 counts the hires pass as a job of its own
        job_count = max(job.image_count * passes, 1)
        job_no = (ev.image_index * passes + (1 if ev.pass_name == "hires" else 0)) if ev else 0
    step, steps = (ev.step, ev.total) if ev else (0, 0)
    progress = 0.01 + job_no / job_count + ((step / steps) / job_count if steps else 0.0)
    elapsed = time.time() - (job.started_at or time.time())
    eta = elapsed / progress - elapsed
    state = dict(idle_state, skipped=job.control.skipped.is_set(), interrupted=job.control.interrupted.is_set(),
                 job=job.kind, job_count=job_count, job_no=job_no, sampling_step=step, sampling_steps=steps,
                 job_timestamp=_dt.datetime.fromtimestamp(job.started_at or time.time()).strftime("%Y%m%d%H%M%S"))
    image = None
    if job.preview is not None and not skip_current_image:
        image = encode_png(job.preview, None)
    text = None
    if ev is not None:
        text = f"{'Hires pass' if ev.pass_name == 'hires' else 'First pass'}: step {step}/{steps}"
        if job.label:
            text = f"{job.label}: {text}"
    return {"progress": min(progress, 1.0), "eta_relative": max(eta, 0.0), "state": state,
            "current_image": image, "textinfo": text}


# -- previews jobs ---------------------------------------------------------------------------------------------------
def _outcome(o) -> dict[str, Any]:
    return {"name": o.name, "lora_file": str(o.lora_file), "preview": str(o.preview) if o.preview else None,
            "status": o.status, "weight": o.weight, "reason": o.reason, "seconds": round(o.seconds, 3)}


def job_body(job) -> dict[str, Any]:
    body: dict[str, Any] = {"id": job.id, "kind": job.kind, "status": job.status, "error": job.error,
                            "created": job.created, "finished": job.finished}
    p = job.progress
    body["progress"] = {"done": p.done if p else 0, "total": p.total if p else 0, "label": p.label if p else "",
                        "step": p.event.step if p and p.event else 0, "steps": p.event.total if p and p.event else 0}
    r = job.result
    if r is not None:
        body["result"] = {"summary": r.summary(), "interrupted": r.interrupted, "warnings": list(r.warnings),
                          "outcomes": [_outcome(o) for o in r.outcomes],
                          "sheet_png": str(r.sheet_png) if r.sheet_png else None,
                          "sheet_html": str(r.sheet_html) if r.sheet_html else None,
                          "summary_json": str(r.summary_json) if r.summary_json else None}
    return body


def _lora_metadata(meta: dict[str, str]) -> dict[str, Any]:
    """A1111 decodes JSON-looking safetensors metadata values (ss_tag_frequency, ...) into objects."""
    out: dict[str, Any] = {}
    for k, v in meta.items():
        if isinstance(v, str) and v[:1] in "{[":
            try:
                out[k] = json.loads(v)
                continue
            except ValueError:
                pass
        out[k] = v
    return out


NEEDS_INNER_MODEL = frozenset({"Uniform", "SGM Uniform"})  # A1111 Scheduler.need_inner_model


def create_router(service, *, credentials: Sequence[tuple[str, str]] | None = None,
                  cmd_flags: dict[str, Any] | None = None) -> APIRouter:
    backend = Backend(service)
    options = Options(backend)
    jobs = JobStore()
    router = APIRouter(route_class=_ErrorRoute, dependencies=_auth_dependency(credentials))
    sd = "/sdapi/v1"
    queue = backend.queue()

    def resolve(option: str, value: Any) -> Any:
        if option == "sd_model_checkpoint":
            return backend.resolve_checkpoint(value)
        if option == "sd_vae":
            return backend.resolve_vae(value)
        return value

    @router.post(f"{sd}/txt2img", response_model=TextToImageResponse, tags=["sdapi"])
    def txt2img(req: Txt2ImgRequest):
        params, effective = mapping.to_params(req, options.for_request(), resolve)
        started = time.time()
        keep = req.override_settings_restore_afterwards is False
        one_off = "sd_model_checkpoint" in (req.override_settings or {}) and not keep
        result = backend.generate(params, save=bool(req.save_images), control=Control(), select=not one_off)
        if req.override_settings and keep:
            options.update({k: v for k, v in req.override_settings.items() if k in mapping.OPTION_TARGETS},
                           load=False)
        images = [encode_png(im, text) for im, text in zip(result.images, result.infotexts)] \
            if req.send_images is not False else []
        info = build_info(req, params, result, effective, started, backend)
        return {"images": images, "parameters": req.model_dump(), "info": json.dumps(info)}

    @router.get(f"{sd}/progress", response_model=ProgressResponse, tags=["sdapi"])
    def progress(skip_current_image: bool = False):
        return progress_body(queue, skip_current_image)

    @router.post(f"{sd}/interrupt", tags=["sdapi"])
    def interrupt():
        """Stops the running job (whoever started it); images already finished are kept (and saved)."""
        job = queue.current()
        if job is not None:
            job.control.interrupt()
        return {}

    @router.post(f"{sd}/skip", tags=["sdapi"])
    def skip():
        job = queue.current()
        if job is not None:
            job.control.skip()
        return {}

    @router.get(f"{sd}/options", tags=["sdapi"])
    def get_options():
        return options.all()

    @router.post(f"{sd}/options", tags=["sdapi"])
    def set_options(update: OptionsUpdate):
        options.update(update.model_dump(exclude_unset=True))
        return None

    @router.get(f"{sd}/sd-models", tags=["sdapi"])
    def sd_models():
        return [{"title": e.title, "model_name": e.model_name, "hash": e.shorthash, "sha256": e.sha256,
                 "filename": str(e.path), "config": None} for e in backend.checkpoints()]

    @router.post(f"{sd}/refresh-checkpoints", tags=["sdapi"])
    def refresh_checkpoints():
        """Listings read the folders on every call; kept for clients that call it."""
        backend.checkpoints()
        return None

    @router.get(f"{sd}/sd-vae", tags=["sdapi"])
    def sd_vae():
        return [{"model_name": rel, "filename": str(p)} for rel, p in backend.vaes()]

    @router.post(f"{sd}/refresh-vae", tags=["sdapi"])
    def refresh_vae():
        return None

    @router.get(f"{sd}/samplers", tags=["sdapi"])
    def samplers():
        return [{"name": s, "aliases": [],
                 "options": {"scheduler": DEFAULT_SCHEDULE[s].lower()} if s in DEFAULT_SCHEDULE else {}}
                for s in backend.samplers()]

    @router.get(f"{sd}/schedulers", tags=["sdapi"])
    def schedulers():
        return [{"name": mapping.scheduler_name(s), "label": s, "aliases": None,
                 "default_rho": SCHEDULE_DEFAULT_RHO.get(s, -1.0),
                 "need_inner_model": s in NEEDS_INNER_MODEL} for s in SCHEDULES]

    @router.get(f"{sd}/upscalers", tags=["sdapi"])
    def upscalers():
        """Pixel upscalers for hires fix (latent ones are in /latent-upscale-modes)."""
        return [{"name": u, "model_name": None, "model_path": None, "model_url": None, "scale": None}
                for u in UPSCALERS if u not in LATENT_UPSCALERS]

    @router.get(f"{sd}/latent-upscale-modes", tags=["sdapi"])
    def latent_upscale_modes():
        return [{"name": u} for u in LATENT_UPSCALERS]

    @router.get(f"{sd}/loras", tags=["sdapi"])
    def loras():
        return [{"name": i.name, "alias": i.output_name or i.name, "path": str(i.path),
                 "metadata": _lora_metadata(i.metadata), **({"error": i.error} if i.error else {})}
                for i in backend.loras()]

    @router.post(f"{sd}/refresh-loras", tags=["sdapi"])
    def refresh_loras():
        backend.loras(refresh=True)
        return None

    @router.get(f"{sd}/embeddings", tags=["sdapi"])
    def embeddings():
        loaded = backend.embeddings()
        skipped = getattr(service.engine.embeddings, "skipped", {}) or {}
        return {"loaded": loaded, "skipped": {name: {"step": None, "sd_checkpoint": None, "sd_checkpoint_name": None,
                                                     "shape": 0, "vectors": 0, "error": why}
                                              for name, why in skipped.items()}}

    @router.get(f"{sd}/scripts", tags=["sdapi"])
    def scripts():
        return {"txt2img": [], "img2img": []}

    for path in ("script-info", "extensions", "prompt-styles", "hypernetworks", "face-restorers",
                 "realesrgan-models"):
        router.add_api_route(f"{sd}/{path}", (lambda: []), methods=["GET"], tags=["sdapi"],
                             name=path.replace("-", "_"), summary=f"{path}: none in CreationMix")

    @router.get(f"{sd}/cmd-flags", tags=["sdapi"])
    def cmd_flags_route():
        return dict(cmd_flags or {})

    @router.get(f"{sd}/memory", tags=["sdapi"])
    def memory_route():
        return memory()

    @router.post(f"{sd}/png-info", response_model=PNGInfoResponse, tags=["sdapi"])
    def png_info(req: PNGInfoRequest):
        from PIL import Image
        from ..pnginfo import read_parameters
        data = decode_image_b64(req.image)
        text = read_parameters(data) or ""
        with Image.open(io.BytesIO(data)) as im:
            items = {k: v for k, v in im.info.items() if isinstance(k, str) and isinstance(v, str)
                     and k != "parameters"}
        return {"info": text, "items": items, "parameters": infotext_pairs(text) if text else {}}

    # -- CreationMix jobs -----------------------------------------------------------------------------------------------
    @router.post("/creationmix/v1/previews", response_model=JobCreated, tags=["creationmix"])
    def start_previews(req: PreviewsRequest):
        """LoRA-library previews (`<stem>.preview.png` beside each LoRA) as a job; poll /creationmix/v1/jobs/{id}."""
        if req.preset not in {p.id for p in service.list_presets()}:
            raise ApiError(404, f"unknown preset {req.preset!r}; available: "
                                f"{', '.join(p.id for p in service.list_presets())}", field="preset")
        try:
            GenerationParams().replace(**req.overrides)
        except (InvalidParameter, TypeError) as e:
            raise ApiError(422, f"overrides: {e}", field="overrides") from e
        for key in ("checkpoint", "vae"):
            if key in req.overrides:
                req.overrides[key] = (backend.resolve_checkpoint if key == "checkpoint" else backend.resolve_vae)(
                    req.overrides[key])
        library = None
        for name in req.names or ():
            from ..lora.library import LoraLibrary
            library = library or LoraLibrary(service.folders.lora_dirs)
            try:
                library.resolve(name)
            except CreationMixError as e:
                raise ApiError(404, str(e), field="names") from e
        job = jobs.start("previews", lambda progress, control: backend.run_previews(
            req.preset, names=req.names, overwrite=req.overwrite, append_triggers=req.append_triggers,
            overrides=dict(req.overrides), progress=progress, control=control))
        return {"id": job.id, "status": job.status}

    @router.get("/creationmix/v1/jobs/{job_id}", tags=["creationmix"])
    def get_job(job_id: str):
        return job_body(jobs.get(job_id))

    @router.post("/creationmix/v1/jobs/{job_id}/interrupt", tags=["creationmix"])
    def interrupt_job(job_id: str):
        job = jobs.get(job_id)
        job.control.interrupt()
        return job_body(job)

    return router
