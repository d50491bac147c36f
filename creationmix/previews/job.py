"""LoRA library previews: `<stem>.preview.png` next to each LoRA, from a preset card's LoRA slot.

For each LoRA (a whole folder, a selection, or the ones without a preview) the card's `<lora:{lora}:{weight}>`
slot is filled with the LoRA at its sidecar's preferred weight (else 1), optionally with its activation text
(else its top training tags) appended to the prompt, and the image is written next to the LoRA with the full
infotext in its PNG `parameters` chunk. Writes are atomic (temp file + rename) and never replace an existing
preview unless asked, so a re-run resumes where the last one stopped. A LoRA the engine refuses (corrupt,
LoHa, SDXL: LoraError) is reported and skipped. At the end: a contact sheet (PNG + static HTML) of the whole
selection with names and strengths, and a summary of done / skipped / failed with reasons.
"""
from __future__ import annotations

import dataclasses
import html
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from ..errors import CreationMixError, Interrupted, InvalidParameter
from ..params import GenerationParams
from ..jobs import Control, ProgressEvent
from ..jobs import JobProgress

PREVIEW_SUFFIX = ".preview.png"
TOP_TAGS = 3
SHEET_NAME = "contact-sheet"


def preview_path(lora_file: Path) -> Path:
    return Path(lora_file).with_name(Path(lora_file).stem + PREVIEW_SUFFIX)


@dataclass
class PreviewOutcome:
    name: str  # as the prompt addresses it
    lora_file: Path
    preview: Path | None = None
    status: str = "pending"  # done | skipped | failed | pending (not reached: interrupted)
    weight: float | None = None
    reason: str = ""
    seconds: float = 0.0
    worker: str = ""  # which renderer made it (a Ray worker's id on a cluster)
    warnings: list[str] = field(default_factory=list)  # e.g. LoRA layers this checkpoint lacks


@dataclass
class PreviewReport:
    outcomes: list[PreviewOutcome]
    sheet_png: Path | None = None
    sheet_html: Path | None = None
    summary_json: Path | None = None
    interrupted: bool = False
    warnings: list[str] = field(default_factory=list)

    def by_status(self, status: str) -> list[PreviewOutcome]:
        return [o for o in self.outcomes if o.status == status]

    @property
    def done(self) -> list[PreviewOutcome]:
        return self.by_status("done")

    @property
    def skipped(self) -> list[PreviewOutcome]:
        return self.by_status("skipped")

    @property
    def failed(self) -> list[PreviewOutcome]:
        return self.by_status("failed")

    @property
    def written(self) -> list[Path]:
        out = [o.preview for o in self.done if o.preview is not None]
        return out + [p for p in (self.sheet_png, self.sheet_html, self.summary_json) if p is not None]

    def summary(self) -> str:
        lines = [f"{len(self.done)} done, {len(self.skipped)} skipped, {len(self.failed)} failed"
                 + (f", {len(self.by_status('pending'))} not reached (interrupted)" if self.interrupted else "")]
        for o in self.skipped:
            lines.append(f"  skipped {o.name}: {o.reason}")
        for o in self.failed:
            lines.append(f"  failed  {o.name}: {o.reason}")
        for o in self.outcomes:
            lines += [f"  warning {o.name}: {w}" for w in o.warnings]
        workers = sorted({o.worker for o in self.done if o.worker})
        if len(workers) > 1 or any(w != "local" for w in workers):
            lines.append("per worker:")
            for w in workers:
                mine = [o for o in self.done if o.worker == w]
                busy = sum(o.seconds for o in mine)
                rate = 60.0 * len(mine) / busy if busy else 0.0
                lines.append(f"  {w}: {len(mine)} previews, {rate:.1f} LoRAs/min")
        return "\n".join(lines)


# -- what to render -------------------------------------------------------------------------------------------------
def select_loras(library, *, lora_dir: Path | None = None, names: Sequence[str] | None = None,
                 missing_only: bool = False) -> list:
    """LoraInfo entries of the library: those under `lora_dir` (default: all), or the named ones (resolved by
    the library, so only inside the LoRA folders), optionally only those without any preview image yet."""
    if names:
        picked = []
        for n in names:
            info = library.resolve(n)
            if info not in picked:
                picked.append(info)
    else:
        picked = list(library)
        if lora_dir is not None:
            root = Path(lora_dir).resolve()
            picked = [i for i in picked if root == i.path.resolve().parent or root in i.path.resolve().parents]
    if missing_only:
        picked = [i for i in picked if i.preview is None and not preview_path(i.path).exists()]
    return picked


def trigger_text(info, top: int = TOP_TAGS) -> str:
    """What `append_triggers` adds: the sidecar's activation text, else the LoRA's top training tags."""
    if getattr(info, "activation_text", ""):
        return info.activation_text.strip()
    return ", ".join(info.trigger_tags[:top])


def preview_params(preset, info, *, append_triggers: bool = False, overrides: dict[str, Any] | None = None,
                   weight: float | None = None) -> GenerationParams:
    """The card with the LoRA in its slot (sidecar's preferred weight, else 1) and the overrides applied."""
    w = weight if weight is not None else info.default_weight
    params = preset.fill_lora(info.name, w)
    if append_triggers:
        extra = trigger_text(info)
        if extra:
            params = params.replace(prompt=f"{params.prompt.rstrip().rstrip(',')}, {extra}")
    if overrides:
        params = params.replace(**overrides)
    return params.replace(batch_size=1, batch_count=1)


# -- writing ----------------------------------------------------------------------------------------------------------
def write_png_no_clobber(image, path: Path, parameters: str | None, *, overwrite: bool = False,
                         compress_level: int = 6) -> bool:
    """Whole file or nothing (fsio): replaced when `overwrite`, else created only if absent.

    Returns False, leaving the existing file alone, when `path` exists and `overwrite` is False."""
    from PIL.PngImagePlugin import PngInfo

    from ..fsio import write_atomic, write_new

    info = PngInfo()
    if parameters:
        info.add_text("parameters", parameters)

    def png(fh):
        image.save(fh, format="PNG", pnginfo=info, compress_level=compress_level)
    if overwrite:
        write_atomic(path, png, what="PNG")
        return True
    return write_new(path, png, what="PNG")


def _atomic_text(path: Path, text: str, what: str) -> Path:
    from ..fsio import write_atomic
    return write_atomic(path, text, what=what)


# -- running ----------------------------------------------------------------------------------------------------------
def run_previews(engine, preset, *, loras: Sequence | None = None, lora_dir: Path | None = None,
                 names: Sequence[str] | None = None, missing_only: bool = False, overwrite: bool = False,
                 append_triggers: bool = False, overrides: dict[str, Any] | None = None,
                 sheet_dir: Path | None = None, progress: Callable[[JobProgress], None] | None = None,
                 control: Control | None = None, renderer=None) -> PreviewReport:
    """Render previews for the selection (see select_loras) and write the contact sheet and summary.

    `engine` is a creationmix.engine.Engine (its LoRA library decides what names mean); `preset` a presets.Preset
    with a LoRA slot. `renderer` decides where images are made (default: this engine, one after the other; see
    previews/ray_runner.py for a cluster); planning, the resume rule and every file written stay here, so a
    distributed run writes the same files as a local one. Interrupting keeps every finished preview; the sheet
    and summary are still written."""
    if not preset.has_lora_slot:
        raise InvalidParameter(f"preset {preset.id!r} has no LoRA slot (<lora:{{lora}}:{{weight}}>) to render "
                               f"previews with; use a card such as lora-preview")
    control = control or Control()
    renderer = renderer or LocalRenderer(engine)
    library = renderer.lora_library
    library.refresh()
    if loras is None:
        loras = select_loras(library, lora_dir=lora_dir, names=names, missing_only=missing_only)
    # Check every card before the first image (a bad override fails the job, not 200 LoRAs one by one).
    tasks: list[PreviewTask] = []
    outcomes = []
    for info in loras:
        outcome = PreviewOutcome(name=info.name, lora_file=info.path, weight=info.default_weight)
        outcomes.append(outcome)
        try:
            params = preview_params(preset, info, append_triggers=append_triggers, overrides=overrides)
        except InvalidParameter:
            raise
        except CreationMixError as e:  # e.g. a name the slot cannot hold
            outcome.status, outcome.reason = "failed", str(e)
            continue
        tasks.append(PreviewTask(info, params, outcome, preview_path(info.path)))

    report = PreviewReport(outcomes=outcomes)
    total = len(tasks)
    state = {"done": 0, "current": ""}

    def finished(label: str) -> None:
        state["done"] += 1
        if progress is not None:
            progress(JobProgress(state["done"], total, label=label))

    def relay(ev: ProgressEvent, label: str) -> None:
        if progress is not None:
            progress(JobProgress(state["done"], total, ev, label=label))

    pending = []
    for task in tasks:
        if task.target.exists() and not overwrite:
            o = task.outcome
            o.status, o.preview = "skipped", task.target
            o.reason = f"{task.target.name} exists (use overwrite to render it again)"
            o.weight = _weight_in(task.target, task.info.name, o.weight)
            finished(task.info.name)
        else:
            pending.append(task)

    for task, res in renderer.render(pending, relay=relay, control=control):
        if isinstance(res, _Stop):
            report.interrupted = True
            break
        outcome = task.outcome
        if isinstance(res, CreationMixError):  # LoraError (corrupt, LoHa, SDXL ...), PathError: this LoRA only
            outcome.status, outcome.reason = "failed", str(res)
        elif res is None:
            outcome.status, outcome.reason = "skipped", "skipped by the user"
        else:
            report.warnings += [w for w in res.warnings if w not in report.warnings]
            outcome.warnings = list(res.warnings)
            if write_png_no_clobber(res.image, task.target, res.infotext, overwrite=overwrite):
                outcome.status, outcome.preview = "done", task.target
            else:  # another run wrote it meanwhile: theirs stays
                outcome.status, outcome.preview = "skipped", task.target
                outcome.reason = f"{task.target.name} appeared meanwhile"
            outcome.seconds = res.seconds
            outcome.worker = res.worker
        finished(task.info.name)

    if sheet_dir is not None:
        write_contact_sheet(report, Path(sheet_dir), title=f"LoRA previews — preset {preset.id}")
    return report


@dataclass
class PreviewTask:
    """One LoRA to render: what the card makes of it and where its preview goes."""
    info: Any  # lora.library.LoraInfo
    params: GenerationParams
    outcome: PreviewOutcome
    target: Path


@dataclass
class Rendered:
    """What a renderer hands back for one task: the image and its infotext (the driver writes the file)."""
    image: Any  # PIL image
    infotext: str
    seconds: float = 0.0
    warnings: tuple[str, ...] = ()
    worker: str = ""


class _Stop:
    """Yielded by a renderer when the job must stop (interrupt, Ctrl-C): nothing after it is rendered."""


STOP = _Stop()


class LocalRenderer:
    """Renders on one engine, one LoRA after the other.

    `render` yields (task, result): a Rendered, a CreationMixError for a LoRA the engine refused, None when the
    user skipped it, or STOP (then the iteration ends)."""

    name = "local"

    def __init__(self, engine):
        self.engine = engine

    @property
    def lora_library(self):
        return self.engine.lora_library

    def render(self, tasks, *, relay, control: Control):
        tasks = list(tasks)
        for i, task in enumerate(tasks):
            if control.interrupted.is_set():
                yield task, STOP
                return
            start = time.perf_counter()
            try:
                if task.info.error:
                    from ..errors import LoraError
                    raise LoraError(task.info.error)
                # The next LoRA's file is read and checked while this one samples (see LoraManager.prefetch).
                if hasattr(self.engine, "prefetch_loras"):
                    self.engine.prefetch_loras(tasks[i + 1].params if i + 1 < len(tasks) else None)
                res = self.engine.generate(task.params, save=False, control=control,
                                           progress=lambda ev, label=task.info.name: relay(ev, label))
            except (KeyboardInterrupt, Interrupted):
                yield task, STOP
                return
            except CreationMixError as e:
                yield task, e
                continue
            if res.interrupted or not res.images:
                if res.interrupted or control.interrupted.is_set():
                    yield task, STOP
                    return
                yield task, None
                continue
            yield task, Rendered(res.images[0], res.infotexts[0], time.perf_counter() - start,
                                 tuple(res.warnings), self.name)


def _weight_in(preview: Path, name: str, default: float | None) -> float | None:
    """The weight an existing preview was made with, read from its infotext (for the sheet's caption)."""
    try:
        from ..lora.tags import extract_prompt_loras
        from ..pnginfo import read_parameters
        text = read_parameters(preview) or ""
        _, _, reqs = extract_prompt_loras(text.split("\n", 1)[0])
    except Exception:  # an unreadable old preview only loses its caption weight
        return default
    for r in reqs:
        if r.name == name and r.te_weight is not None:
            return r.te_weight
    return default


# -- contact sheet ----------------------------------------------------------------------------------------------
def _fmt_weight(w: float | None) -> str:
    if w is None:
        return ""
    from ..lora.tags import format_weight
    return format_weight(w)


def _open_image(path: Path | None):
    if path is None or not path.is_file():
        return None
    from PIL import Image
    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except OSError:
        return None


def write_contact_sheet(report: PreviewReport, folder: Path, *, title: str = "LoRA previews",
                        thumb: int = 192) -> PreviewReport:
    """contact-sheet.png, contact-sheet.html (relative links to the previews) and summary.json in `folder`."""
    from ..xyz.grid import contact_sheet

    folder.mkdir(parents=True, exist_ok=True)
    entries = []
    for o in report.outcomes:
        status = {"done": "", "skipped": "", "failed": "FAILED", "pending": "not done"}[o.status]
        caption = [o.name, f"weight {_fmt_weight(o.weight)}" + (f" — {status}" if status else "")]
        entries.append((_open_image(o.preview) if o.status in ("done", "skipped") else None, caption))
    sheet = contact_sheet(entries, thumb=thumb, title=f"{title} — {report.summary().splitlines()[0]}")
    png = folder / f"{SHEET_NAME}.png"
    # zlib level 1: the sheet is a throw-away overview, and at level 6 its encode was most of a 5-LoRA job's
    # bookkeeping (19 of 41 ms); previews keep PIL's default, as A1111 saves them.
    write_png_no_clobber(sheet, png, None, overwrite=True, compress_level=1)
    report.sheet_png = png
    report.sheet_html = _atomic_text(folder / f"{SHEET_NAME}.html", _html(report, folder, title), "contact sheet")
    summary = {"done": len(report.done), "skipped": len(report.skipped), "failed": len(report.failed),
               "interrupted": report.interrupted,
               "items": [{**{k: v for k, v in dataclasses.asdict(o).items() if k not in ("lora_file", "preview")},
                          "lora_file": str(o.lora_file), "preview": str(o.preview) if o.preview else None}
                         for o in report.outcomes]}
    report.summary_json = _atomic_text(folder / "summary.json", json.dumps(summary, indent=2) + "\n", "summary")
    return report


def _rel(path: Path, folder: Path) -> str:
    try:
        return Path(os.path.relpath(path.resolve(), folder.resolve())).as_posix()
    except ValueError:  # another drive (Windows)
        return path.resolve().as_uri()


def _html(report: PreviewReport, folder: Path, title: str) -> str:
    esc = html.escape
    cards = []
    for o in report.outcomes:
        if o.preview is not None and o.status in ("done", "skipped"):
            img = f'<img src="{esc(_rel(o.preview, folder))}" alt="{esc(o.name)}" loading="lazy">'
        else:
            img = '<div class="missing"></div>'
        note = f'<div class="reason">{esc(o.reason)}</div>' if o.status in ("failed", "pending") or o.reason else ""
        cards.append(f'<figure class="{o.status}">{img}<figcaption><b>{esc(o.name)}</b> '
                     f'<span>weight {esc(_fmt_weight(o.weight))} · {esc(o.status)}</span>{note}</figcaption></figure>')
    head = esc(report.summary().splitlines()[0])
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>
<style>
body{{font-family:sans-serif;margin:1em;background:#fafafa}}
main{{display:flex;flex-wrap:wrap;gap:12px}}
figure{{margin:0;width:200px;background:#fff;border:1px solid #ddd;padding:6px}}
figure img,.missing{{width:200px;height:200px;object-fit:contain;background:#e0e0e0;display:block}}
figure.failed{{border-color:#c33}} .reason{{color:#a33;font-size:12px;word-break:break-word}}
figcaption{{font-size:13px;word-break:break-all}} figcaption span{{color:#666;display:block}}
</style></head>
<body><h1>{esc(title)}</h1><p>{head}</p>
<main>
{chr(10).join(cards)}
</main></body></html>
"""


def service_lora_previews(service, preset_id: str, *, names: Sequence[str] | None = None, overwrite: bool = False,
                          append_triggers: bool = False, overrides: dict[str, Any] | None = None,
                          progress=None, control: Control | None = None, lora_dir: Path | None = None,
                          missing_only: bool = False, sheet_dir: Path | None = None, ray=None) -> PreviewReport:
    """What `Service.run_lora_previews` delegates to (the UI's LoRA previews tab, the CLI, the API): every LoRA of
    the configured folders (or of `lora_dir`, or the named ones); contact sheet in outputs/lora-previews/.
    `ray` (a previews.ray_runner.RaySettings) renders on a Ray cluster instead of this process's engine."""
    from ..presets_resolve import load_preset_by_id
    preset = load_preset_by_id(preset_id, service.presets_dir)
    renderer = None
    if ray is not None:
        from .ray_runner import RayRenderer
        renderer = RayRenderer(service, ray)
    return run_previews(None if renderer else service.engine, preset, renderer=renderer, lora_dir=lora_dir, names=names or None, missing_only=missing_only,
                        overwrite=overwrite, append_triggers=append_triggers, overrides=dict(overrides or {}),
                        sheet_dir=Path(sheet_dir or Path(service.outputs_dir, "lora-previews")),
                        progress=progress, control=control)
