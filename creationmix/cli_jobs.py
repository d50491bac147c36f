"""`creationmix xyz ...` and `creationmix previews ...` (registered by creationmix/cli.py): CLI edges over the
service's X/Y/Z and LoRA-library preview jobs.

stdout lists the files written, one per line; a tqdm bar over the whole job goes to stderr. Ctrl-C stops after
keeping every finished image (cells, previews), still writes the grids / contact sheet, and exits 130.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .cli import (PARAM_FLAGS, add_device_args, add_folder_args, add_param_args, param_overrides,
                  params_from_args, print_warnings, resolve_file_args, service_options)
from .errors import InvalidParameter

AXIS_HELP = ("axis type: Seed, Steps, CFG Scale, Sampler, Checkpoint name, Denoising, Hires upscale, Hires fix, "
             "Clip skip, Prompt S/R, LoRA, LoRA strength")


def tqdm_job_progress(total: int | None = None, unit: str = "img"):
    """A tqdm bar over the whole job (images), its postfix the current step. Returns (callback, close).

    Drawn only when stderr is a terminal (tqdm's disable=None): a script or a log file gets the paths on stdout
    and nothing on stderr but warnings and errors, as every command promises."""
    from tqdm import tqdm
    bar = tqdm(total=total, unit=unit, file=sys.stderr, dynamic_ncols=True, disable=None)

    def progress(jp) -> None:
        if bar.total != jp.total:
            bar.total = jp.total
            bar.refresh()
        if jp.done != bar.n:
            bar.update(jp.done - bar.n)
        if jp.event is not None:
            ev = jp.event
            bar.set_postfix_str(f"{jp.label + ' ' if jp.label else ''}{ev.pass_name} {ev.step}/{ev.total}",
                                refresh=False)
            bar.refresh()
        elif jp.label:
            bar.set_postfix_str(jp.label)

    return progress, bar.close


def _service(args, **kw):
    from .compose import build_service
    return build_service(service_options(args, **kw))


# -- xyz -----------------------------------------------------------------------------------------------------------
def cmd_xyz(args) -> int:
    from .xyz.plot import parse_axes, plan_strength_sweep, plan_xyz

    resolve_file_args(args)
    base = params_from_args(args, lora=args.sweep)
    service = _service(args)
    check = dict(**service.plot_checks(), allow_large=args.allow_large, max_batch=args.max_batch)
    if args.sweep:
        if any((args.x_type, args.y_type, args.z_type)):
            raise InvalidParameter("--sweep makes its own axes (strength x seed); leave out --x/--y/--z-type")
        seeds: int | list[int] = args.seeds
        if args.seed_list:
            from .xyz.axes import parse_axis
            seeds = list(parse_axis("Seed", args.seed_list, name="Y").values)
        plan = plan_strength_sweep(base, args.sweep, args.strengths, seeds, **check)
    else:
        axes = parse_axes([(args.x_type, args.x_values, args.x_target), (args.y_type, args.y_values, args.y_target),
                           (args.z_type, args.z_values, args.z_target)])
        if all(a is None for a in axes):
            raise InvalidParameter("give at least one axis: --x-type TYPE --x-values VALUES")
        plan = plan_xyz(base, *axes, **check)
    progress, close = tqdm_job_progress(plan.image_count) if not args.no_progress else (None, lambda: None)
    try:
        result = service.run_plot(plan, progress=progress)
    finally:
        close()
    print_warnings(result.warnings)
    for path in result.written:
        print(path)
    if result.interrupted:
        print("interrupted: finished cells were kept", file=sys.stderr)
        return 130
    return 0


def add_xyz_parser(sub) -> argparse.ArgumentParser:
    """Register `xyz` on the subparsers object of creationmix/cli.py's build_parser."""
    x = sub.add_parser("xyz", help="X/Y/Z plot (A1111's xyz_grid) or a LoRA strength sweep (--sweep LORA)",
                       description="Axis values use A1111's syntax: a, b, \"c, d\"; 1-5; 1-9 (+2); 0.2-1.0 (+0.2); "
                                   "0-1 [5]. Cells run x fastest, then y, then z; one grid PNG per Z value.")
    add_param_args(x)
    add_folder_args(x)
    add_device_args(x)
    for a in "xyz":
        x.add_argument(f"--{a}-type", default=None, help=AXIS_HELP if a == "x" else None)
        x.add_argument(f"--{a}-values", default=None, help="values (A1111 syntax)" if a == "x" else None)
        x.add_argument(f"--{a}-target", default=None, metavar="LORA",
                       help="LoRA strength: which LoRA; LoRA: which tag of the prompt to swap" if a == "x" else None)
    x.add_argument("--sweep", metavar="LORA", default=None, help="LoRA strength sweep of this LoRA")
    x.add_argument("--strengths", default="0, 0.4, 0.6, 0.8, 1.0, 1.2", help="sweep strengths (A1111 syntax)")
    x.add_argument("--seeds", type=int, default=2, help="sweep: this many consecutive seeds from --seed")
    x.add_argument("--seed-list", default=None, help="sweep: explicit seeds (A1111 syntax), instead of --seeds")
    x.add_argument("--allow-large", action="store_true", help="allow more than 1000 cells")
    x.add_argument("--max-batch", type=int, default=None, help="largest batch of same-prompt seeds (default: fit)")
    x.add_argument("--out", default=None, help="outputs folder (default DATA_DIR/outputs)")
    x.add_argument("--no-progress", action="store_true", help="no progress bar (drawn only on a terminal)")
    x.set_defaults(func=cmd_xyz)
    return x


# -- previews ------------------------------------------------------------------------------------------------------
def cmd_previews(args) -> int:
    from .compose import folder_option
    from .paths import Folders

    ray = _ray_settings(args)  # before anything is built or drawn: a missing Ray is one error line
    resolve_file_args(args)
    lora_dir = folder_option(args.lora_dir, "--lora-dir", Folders(args.data_dir, args.a1111_dir).lora_dirs)
    service = _service(args, lora_dir=lora_dir)
    overrides = param_overrides(args)
    overrides.pop("prompt", None)  # the card's prompt holds the slot
    progress, close = tqdm_job_progress(unit="lora") if not args.no_progress else (None, lambda: None)
    try:
        report = service.run_lora_previews(args.preset, lora_dir=lora_dir, names=args.lora or None,
                                           missing_only=args.missing_only, overwrite=args.overwrite,
                                           append_triggers=args.triggers, overrides=overrides,
                                           sheet_dir=args.sheet_dir and Path(args.sheet_dir).expanduser(),
                                           progress=progress, ray=ray)
    finally:
        close()
    for path in report.written:
        print(path)
    if report.skipped or report.failed or report.interrupted or any(o.warnings for o in report.outcomes):
        # What was skipped, failed or warned about, each once; an all-done run says nothing on stderr.
        print(report.summary(), file=sys.stderr)
    if report.interrupted:
        return 130
    return 1 if report.failed and not report.done and not report.skipped else 0


def add_previews_parser(sub) -> argparse.ArgumentParser:
    """Register `previews` on the subparsers object of creationmix/cli.py's build_parser."""
    p = sub.add_parser("previews", help="render <stem>.preview.png for every LoRA of a folder",
                       description="Fills the preset card's LoRA slot with each LoRA (sidecar preferred weight, "
                                   "else 1). Existing previews are kept (a re-run resumes); failures are reported.")
    p.add_argument("--preset", default="lora-preview", help="a preset card with a LoRA slot (default lora-preview)")
    p.add_argument("--lora-dir", default=None,
                   help="LoRA folder: anywhere, or a subfolder of models/Lora (default: the configured ones)")
    p.add_argument("--lora", action="append", default=[], metavar="NAME", help="only this LoRA (repeatable)")
    p.add_argument("--missing-only", action="store_true", help="only LoRAs without any preview image")
    p.add_argument("--overwrite", action="store_true", help="render again over existing .preview.png files")
    p.add_argument("--triggers", action="store_true",
                   help="append the LoRA's activation text (else its top training tags) to the prompt")
    p.add_argument("--sheet-dir", default=None,
                   help="where the contact sheet and summary go (default DATA_DIR/outputs/lora-previews)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (drawn only on a terminal)")
    for flag, (field, typ) in PARAM_FLAGS.items():
        if field not in ("prompt",):
            p.add_argument(flag, dest=field, type=typ, default=None, help=argparse.SUPPRESS)
    p.add_argument("--hires", dest="enable_hires", action="store_true", default=None, help=argparse.SUPPRESS)
    p.add_argument("--no-hires", dest="enable_hires", action="store_false", help=argparse.SUPPRESS)
    p.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                   help="render on a Ray cluster: 'auto', 'ray://host:port', or no value for a local Ray "
                        "with this machine's devices (pip install 'creationmix[ray]')")
    p.add_argument("--ray-cpu-workers", type=int, default=0, metavar="N",
                   help="N CPU workers instead of one per GPU (GPU-less boxes, tests)")
    p.add_argument("--ray-ship-models", action="store_true",
                   help="send the checkpoint, VAE and embeddings to the workers (no shared filesystem)")
    add_folder_args(p)
    add_device_args(p)
    p.set_defaults(func=cmd_previews)
    return p


def _ray_settings(args):
    if args.ray is None:
        if args.ray_cpu_workers or args.ray_ship_models:
            raise InvalidParameter("--ray-cpu-workers and --ray-ship-models need --ray")
        return None
    from .previews.ray_runner import RaySettings, import_ray
    import_ray()  # says how to install Ray before any work starts
    if args.ray_cpu_workers < 0:
        raise InvalidParameter(f"--ray-cpu-workers must be 0 or more, got {args.ray_cpu_workers}")
    return RaySettings(address=None if args.ray == "local" else args.ray, cpu_workers=args.ray_cpu_workers,
                       shared_models=not args.ray_ship_models)
