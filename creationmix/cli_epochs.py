"""`python -m creationmix epochs SERIES ...` (registered by creationmix/cli.py): the CLI edge of creationmix.epochs.

SERIES is a kohya output folder (any existing folder: the local operator's path), one file of a series, or a
series name in the configured LoRA folders. stdout lists the files (cells, grids, published preview and
sidecar), one per line; warnings and the summary go to stderr. Ctrl-C keeps finished cells and exits 130.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .errors import InvalidParameter


def _series_key(value: str) -> tuple[str, Path | None]:
    """(series name, LoRA folder to add) for SERIES: a folder or file path adds its folder."""
    from .lora.library import LoraLibrary

    target = Path(value).expanduser()
    if target.is_file():
        return target.stem, target.parent.resolve()
    if target.is_dir():
        found = [s for s in LoraLibrary([target]).series() if s.folder.resolve() == target.resolve()]
        if len(found) != 1:
            names = ", ".join(s.name for s in found) or "none"
            raise InvalidParameter(f"{target}: expected one kohya series (<name>-000001.safetensors ...) in the "
                                   f"folder, found {names}; name one file of the series instead")
        return found[0].name, target.resolve()
    if target.is_absolute() or "/" in value or "\\" in value:
        raise InvalidParameter(f"SERIES {value}: not a folder, a LoRA file or a series name")
    return value, None


def cmd_epochs(args) -> int:
    from .cli import param_overrides, print_warnings, resolve_file_args
    from .cli_jobs import _service, tqdm_job_progress

    resolve_file_args(args)
    if args.prompts is not None and not Path(args.prompts).expanduser().is_file():
        raise InvalidParameter(f"--prompts {args.prompts}: no such file")
    key, lora_dir = _series_key(args.series)
    service = _service(args, lora_dir=lora_dir)
    epochs = [e.strip() for e in args.epochs.split(",") if e.strip()] if args.epochs else None
    progress, close = tqdm_job_progress(unit="img") if not args.no_progress else (None, lambda: None)
    try:
        result = service.run_epoch_grid(
            key, prompts_file=Path(args.prompts).expanduser() if args.prompts else None, preset_id=args.preset,
            strengths=args.strengths, seeds=args.seeds, epochs=epochs, overrides=param_overrides(args),
            publish=args.publish, force=args.force, preview_name=args.preview_name,
            out_dir=Path(args.out) / "lora-epochs" if args.out else None, progress=progress)
    finally:
        close()
    print_warnings(result.warnings)
    for path in result.files:
        print(path)
    print(result.summary(), file=sys.stderr)
    if result.published is not None:
        print(result.published.summary(), file=sys.stderr)
    if result.interrupted:
        print("interrupted: finished cells were kept; run again to resume", file=sys.stderr)
        return 130
    return 1 if result.count("failed") and not result.count("done") and not result.count("skipped") else 0


def add_epochs_parser(sub) -> argparse.ArgumentParser:
    """Register `epochs` on the subparsers object of creationmix/cli.py's build_parser."""
    from .cli import PARAM_FLAGS, add_device_args, add_folder_args
    p = sub.add_parser("epochs", help="a kohya run's epochs x LoRA strengths, one grid per sample prompt",
                       description="Renders every epoch of a kohya series (<name>-000001 ... <name>) at each "
                                   "strength with A1111 semantics; each cell is its own PNG; a re-run skips the "
                                   "cells already there. --publish writes the winner's preview and A1111 sidecar.")
    p.add_argument("series", metavar="SERIES", help="kohya output folder, one file of the series, or a series name")
    p.add_argument("--prompts", default=None,
                   help="sample prompts: kohya .txt/.toml/.json or OneTrainer samples.json "
                        "(default: the run's sample/prompt.txt)")
    p.add_argument("--preset", default=None, help="preset card filling what the prompts leave out (hires fix, "
                                                  "clip skip, negative); alone, its own prompt is used")
    p.add_argument("--strengths", default="0.6,0.8,1.0", help="LoRA strengths, comma separated")
    p.add_argument("--seeds", type=int, default=1, help="this many consecutive seeds per prompt (one grid each)")
    p.add_argument("--epochs", default=None, help="only these epochs, e.g. 4,8,final (default: all)")
    p.add_argument("--publish", default=None, metavar="EPOCH:STRENGTH",
                   help="write that cell as <stem>.preview.png and the A1111 <stem>.json sidecar")
    p.add_argument("--force", action="store_true", help="publish over an existing preview and sidecar values")
    p.add_argument("--preview-name", choices=("preview", "png"), default="preview",
                   help="preview file: <stem>.preview.png (default) or <stem>.png (A1111's own name)")
    p.add_argument("--out", default=None, help="outputs folder (default DATA_DIR/outputs); grids in lora-epochs/")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (drawn only on a terminal)")
    for flag, (field, typ) in PARAM_FLAGS.items():
        if field != "prompt":
            p.add_argument(flag, dest=field, type=typ, default=None, help=argparse.SUPPRESS)
    p.add_argument("--hires", dest="enable_hires", action="store_true", default=None, help=argparse.SUPPRESS)
    p.add_argument("--no-hires", dest="enable_hires", action="store_false", help=argparse.SUPPRESS)
    add_folder_args(p)
    add_device_args(p)
    p.set_defaults(func=cmd_epochs)
    return p
