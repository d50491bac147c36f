"""UI logic that does not depend on the layout: named field values in, named updates out.

Everything here talks to the service through `ServiceAPI` only, and turns domain errors into `gr.Error` so the
page shows the engine's message and keeps working.
"""
from __future__ import annotations

import contextlib
import logging
import queue
import threading
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import gradio as gr

from ..errors import CreationMixError, InvalidParameter
from ..params import GenerationParams
from ..jobs import Control, GenerationResult, ProgressEvent
from ..service_api import LoraCard, PresetCard, ServiceAPI
from . import lora_tags
from .fields import fields_from_params, params_from_fields

log = logging.getLogger("creationmix.ui")

NOT_AN_IMAGE = "not an image"
NO_PARAMETERS = "No generation parameters found in this image."


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """CreationMixError -> gr.Error with the engine's own message; anything else -> a short gr.Error + log."""
    try:
        yield
    except gr.Error:
        raise
    except CreationMixError as e:
        raise gr.Error(str(e), print_exception=False) from e
    except Exception as e:  # the page must survive a bug: say so and keep serving
        log.exception("unexpected error in the UI")
        raise gr.Error(f"Unexpected error ({type(e).__name__}: {e}); see the server log.") from e


_TYPE_WORDS = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}


def check_api_types(values: Mapping[str, Any], types: Mapping[str, type]) -> None:
    """JSON types as declared: a number sent as a string ("64") or a bool as a number is refused, not coerced.
    An int is a fine float; None stands for "the default" only where the field allows it (left to the params)."""
    for name, want in types.items():
        if name not in values or values[name] is None:
            continue
        v = values[name]
        ok = (isinstance(v, bool) if want is bool else
              isinstance(v, (int, float)) and not isinstance(v, bool) if want is float else
              isinstance(v, int) and not isinstance(v, bool) if want is int else isinstance(v, want))
        if not ok:
            raise InvalidParameter(f"{name} must be {_TYPE_WORDS[want]}, got {type(v).__name__} {v!r:.40}")


async def run_cancellable(fn, control: Control):
    """Run the blocking `fn` on a worker thread; if the awaiting request is cancelled (gradio's /cancel, a
    client's Job.cancel()), interrupt it through `control` so it stops at the next step instead of finishing
    (and saving) unseen while the queue waits."""
    import asyncio

    task = asyncio.get_running_loop().run_in_executor(None, fn)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        control.interrupt()
        with contextlib.suppress(BaseException):  # hold the one-at-a-time slot until the run has stopped
            await asyncio.shield(task)
        raise


def build_params(values: Mapping[str, Any]) -> GenerationParams:
    with user_errors():
        return params_from_fields(values)


def token_label(service: ServiceAPI, text: str) -> str:
    try:
        used, cap = service.token_count(text or "")
    except CreationMixError:
        return ""
    return f"{used}/{cap}"


# -- presets / infotext ------------------------------------------------------------------------------------
def fields_for(service: ServiceAPI, params: GenerationParams) -> tuple[dict[str, Any], list[str]]:
    """Widget values for `params`, minus model names this install does not have (each gives a warning)."""
    values = fields_from_params(params)
    warnings = []
    ckpt = values.get("checkpoint")
    if ckpt is not None and ckpt not in service.list_checkpoints():
        warnings.append(f"Checkpoint {ckpt!r} is not installed; keeping the current one.")
        del values["checkpoint"]
    vae = values.get("vae")
    if vae not in ("Automatic", "None") and vae not in service.list_vaes():
        warnings.append(f"VAE {vae!r} is not installed; using Automatic.")
        values["vae"] = "Automatic"
    return values, warnings


def preset_fields(service: ServiceAPI, preset: PresetCard,
                  current_checkpoint: str | None) -> tuple[dict[str, Any], list[str]]:
    with user_errors():
        values, warnings = fields_for(service, preset.params)
        warning = service.check_preset(preset.id, values.get("checkpoint", current_checkpoint))
    if warning:
        warnings.insert(0, warning)
    return values, warnings


def infotext_fields(service: ServiceAPI, text: str) -> tuple[dict[str, Any], list[str]]:
    if not (text or "").strip():
        raise gr.Error("Paste an A1111 infotext first (the text under an image, or from PNG Info).",
                       print_exception=False)
    with user_errors():
        parsed = service.read_infotext(text)
        values, warnings = fields_for(service, parsed.params)
    return values, list(parsed.warnings) + warnings


def checkpoint_notice(service: ServiceAPI, checkpoint: str | None) -> str | None:
    """A non-blocking note when the selected checkpoint is not CreationMix V1 (None when it is, or unknown)."""
    if not checkpoint:
        return None
    try:
        return service.checkpoint_notice(checkpoint)
    except CreationMixError as e:
        return f"Could not check {checkpoint}: {e}"


def preset_samples(presets: list[PresetCard]) -> list[list[Any]]:
    return [[str(p.thumbnail) if p.thumbnail else None, p.title, p.description] for p in presets]


# -- LoRA ----------------------------------------------------------------------------------------------------
def filter_loras(cards: list[LoraCard], query: str) -> list[LoraCard]:
    q = (query or "").strip().lower()
    if not q:
        return list(cards)
    return [c for c in cards if q in " ".join((c.name, *c.trigger_tags, c.base_model)).lower()]


def lora_samples(cards: list[LoraCard]) -> list[list[Any]]:
    return [[str(c.preview) if c.preview else None, c.name, ", ".join(c.trigger_tags),
             f"⚠ {c.error}" if c.error else c.base_model] for c in cards]


def click_lora(prompt: str, card: LoraCard) -> str:
    if card.error:
        raise gr.Error(f"LoRA {card.name!r} cannot be used: {card.error}", print_exception=False)
    return lora_tags.toggle_lora(prompt, card.name, card.preferred_weight)


def lora_slots(prompt: str, n_slots: int) -> list[tuple[str, float] | None]:
    """One (name, weight) per slider slot for the LoRAs in the prompt; None hides the slot."""
    found = lora_tags.list_lora_weights(prompt)[:n_slots]
    return found + [None] * (n_slots - len(found))


def slider_to_prompt(prompt: str, name: str | None, weight: float | None) -> str:
    if not name or weight is None:
        return prompt
    return lora_tags.set_lora_weight(prompt, name, float(weight))


# -- PNG Info ------------------------------------------------------------------------------------------------
def image_info(service: ServiceAPI, path: str | Path | None) -> str:
    if not path:
        return ""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.verify()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        return f"{Path(path).name}: {NOT_AN_IMAGE}"
    with user_errors():
        text = service.read_image_info(Path(path))
    return text or NO_PARAMETERS


# -- generation ----------------------------------------------------------------------------------------------
_DONE = object()


def stream_job(fn: Callable[..., Any], control: Control, **kw) -> Iterator:
    """Run `fn(progress=..., control=..., **kw)` in a worker thread, yielding its progress events; returns its
    result (re-raises its error).

    If the consumer goes away (page closed, generator closed), the job is interrupted and waited for, so the
    one-at-a-time queue slot is not released while the GPU is still busy."""
    events: queue.Queue = queue.Queue()
    box: dict[str, Any] = {}

    def work() -> None:
        try:
            box["result"] = fn(progress=events.put, control=control, **kw)
        except BaseException as e:  # handed to the consumer thread
            box["error"] = e
        finally:
            events.put(_DONE)

    worker = threading.Thread(target=work, name="creationmix-job", daemon=True)
    worker.start()
    try:
        while (ev := events.get()) is not _DONE:
            yield ev
    finally:
        if worker.is_alive():
            control.interrupt()
            worker.join()
    if "error" in box:
        raise box["error"]
    return box["result"]


def stream_generation(service: ServiceAPI, params: GenerationParams,
                      control: Control) -> Iterator[ProgressEvent]:
    """service.generate as a stream of ProgressEvents (see stream_job); returns the GenerationResult."""
    return stream_job(service.generate, control, params=params)


def progress_text(ev: ProgressEvent, eta_s: float | None = None) -> str:
    """`eta_s`: the whole run's ETA (estimate.EtaTracker); without it, the engine's for the current pass."""
    from .estimate import format_eta

    text = f"{'Hires pass' if ev.pass_name == 'hires' else 'First pass'}: step {ev.step}/{ev.total}"
    if ev.image_count > 1:
        text += f", image {ev.image_index + 1}/{ev.image_count}"
    eta = eta_s if eta_s is not None else ev.eta_s
    if eta is not None:
        text += f", ETA {format_eta(eta)}"
    return text


def progress_html(text: str, fraction: float | None) -> str:
    """The one progress line of a run: a bar and A1111's text (pass, step, image, ETA over the whole run)."""
    import html

    pct = 0 if fraction is None else max(0, min(100, round(fraction * 100)))
    return (f'<div class="cm-progress" data-percent="{pct}"><div class="cm-progress-bar" style="width:{pct}%">'
            f'</div><span class="cm-progress-text">{html.escape(text)}</span></div>')


def preview_size(params: GenerationParams) -> tuple[int, int]:
    """Display size of the live preview: the image's aspect, 256 to 512 on its long side (gradio does not
    enlarge a small image, and a 64x64 test run would show an 8x8 preview)."""
    w, h = params.width, params.height
    k = min(512, max(256, max(w, h))) / max(w, h)
    return max(1, int(w * k)), max(1, int(h * k))


def scaled_preview(image, size: tuple[int, int]):
    """The latent preview is 1/8 of the image: scale it up here, gradio's image shows small images unscaled."""
    from PIL import Image

    if image.size == size:
        return image
    return image.resize(size, Image.Resampling.NEAREST)


def result_state(result: GenerationResult) -> dict[str, list]:
    return {"paths": [str(p) for p in result.paths], "seeds": list(result.seeds),
            "infotexts": list(result.infotexts)}


def gallery_value(state: dict[str, list] | None) -> list[tuple[str, str]]:
    if not state:
        return []
    return [(p, f"seed {s}") for p, s in zip(state["paths"], state["seeds"])]


def seeds_markdown(state: dict[str, list] | None) -> str:
    if not state or not state["seeds"]:
        return ""
    return "Seeds: " + ", ".join(str(s) for s in state["seeds"])


def selected(state: dict[str, list] | None, index: int | None) -> tuple[str | None, int | None, str]:
    """(path, seed, infotext) of the selected output, falling back to the first one."""
    if not state or not state["paths"]:
        return None, None, ""
    i = index if index is not None and 0 <= index < len(state["paths"]) else 0
    return state["paths"][i], state["seeds"][i], state["infotexts"][i]


def infotext_keys(service: ServiceAPI, text: str | None) -> str:
    """Markdown beside PNG Info's raw text: which keys pasting would apply, keep as source info, or ignore."""
    if not text or text == NO_PARAMETERS or text.endswith(NOT_AN_IMAGE):
        return ""
    try:
        report = service.read_infotext(text).report()
    except CreationMixError as e:
        return f"**Cannot be used as a recipe:** {e}"
    return "\n".join(f"- {line}" for line in report.split("\n"))
