"""Command line: `creationmix txt2img|presets|pnginfo|xyz|previews ...` (also `python -m creationmix`).

An edge over the service that compose.build_service makes. stdout carries only results (paths of files
written, infotext); stderr stays empty on success except `warning: ...` lines the user must see; every error
is one line and a non-zero exit. Only the CLI modules turn domain errors into exit codes.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .errors import CreationMixError
from .params import GenerationParams

# flag -> (GenerationParams field, type). One table: the CLI never special-cases a parameter.
PARAM_FLAGS: dict[str, tuple[str, type]] = {
    "--prompt": ("prompt", str),
    "--negative-prompt": ("negative_prompt", str),
    "--steps": ("steps", int),
    "--sampler": ("sampler", str),
    "--schedule": ("schedule", str),
    "--cfg-scale": ("cfg_scale", float),
    "--seed": ("seed", int),
    "--width": ("width", int),
    "--height": ("height", int),
    "--batch-size": ("batch_size", int),
    "--batch-count": ("batch_count", int),
    "--clip-skip": ("clip_skip", int),
    "--rng": ("rng", str),
    "--subseed": ("subseed", int),
    "--subseed-strength": ("subseed_strength", float),
    "--seed-resize-from-w": ("seed_resize_from_w", int),
    "--seed-resize-from-h": ("seed_resize_from_h", int),
    "--eta-noise-seed-delta": ("eta_noise_seed_delta", int),
    "--ensd": ("eta_noise_seed_delta", int),
    "--emphasis": ("emphasis", str),
    "--prompt-syntax": ("prompt_syntax", str),
    "--hires-scale": ("hires_scale", float),
    "--hires-resize-x": ("hires_resize_x", int),
    "--hires-resize-y": ("hires_resize_y", int),
    "--hires-steps": ("hires_steps", int),
    "--hires-upscaler": ("hires_upscaler", str),
    "--hires-sampler": ("hires_sampler", str),
    "--hires-prompt": ("hires_prompt", str),
    "--hires-negative-prompt": ("hires_negative_prompt", str),
    "--denoising-strength": ("denoising_strength", float),
    "--checkpoint": ("checkpoint", str),
    "--vae": ("vae", str),
    "--hires-schedule": ("hires_schedule", str),
    "--eta": ("eta", float),
    "--eta-ddim": ("eta_ddim", float),
    "--s-churn": ("s_churn", float),
    "--s-tmin": ("s_tmin", float),
    "--s-tmax": ("s_tmax", float),
    "--s-noise": ("s_noise", float),
    "--sigma-min": ("sigma_min", float),
    "--sigma-max": ("sigma_max", float),
    "--rho": ("rho", float),
    "--beta-alpha": ("beta_alpha", float),
    "--beta-beta": ("beta_beta", float),
    "--ngms": ("s_min_uncond", float),
    "--pad-conds": ("pad_conds", lambda v: _switch("--pad-conds", v)),
    "--pad-conds-v0": ("pad_conds_v0", lambda v: _switch("--pad-conds-v0", v)),
    "--downcast-alphas-cumprod": ("downcast_alphas_cumprod", lambda v: _switch("--downcast-alphas-cumprod", v)),
    "--token-merging-ratio": ("token_merging_ratio", float),
    "--token-merging-ratio-hr": ("token_merging_ratio_hr", float),
}


class _ArgError(CreationMixError):
    pass


def _switch(flag: str, value: str) -> bool:
    if value.lower() in ("true", "1", "yes", "on"):
        return True
    if value.lower() in ("false", "0", "no", "off"):
        return False
    raise _ArgError(f"{flag}: {value!r} is not true or false")


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one clear line, exit 2, as argparse does but without the usage dump
        raise _ArgError(message)


def add_folder_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", default=None, help="our folders (models/, outputs/...); default: here")
    p.add_argument("--a1111-dir", default=None, help="read an A1111 install's model folders")


def add_device_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default=None, help="auto (default), cpu, cuda, cuda:N, mps")
    p.add_argument("--precision", default=None, help="auto (default: fp16 on CUDA, fp32 elsewhere), fp16, fp32")


def add_param_args(p: argparse.ArgumentParser) -> None:
    for flag, (field, typ) in PARAM_FLAGS.items():
        p.add_argument(flag, dest=field, type=typ, default=None, help=FILE_HELP.get(flag))
    p.add_argument("--hires", dest="enable_hires", action="store_true", default=None, help="enable hires fix")
    p.add_argument("--no-hires", dest="enable_hires", action="store_false")
    p.add_argument("--params", default=None, help="a file with an A1111 infotext block that sets everything")
    p.add_argument("--preset", default=None, help="a preset card id (see `presets`)")


FILE_HELP = {"--checkpoint": "a name in models/Stable-diffusion, or a checkpoint file anywhere",
             "--vae": "Automatic, None, a name in models/VAE, or a VAE file anywhere"}


def param_overrides(args: argparse.Namespace) -> dict:
    """The GenerationParams fields given explicitly on the command line (operator files by their file name)."""
    fields = [f for f, _ in PARAM_FLAGS.values()] + ["enable_hires"]
    out = {f: getattr(args, f) for f in fields if getattr(args, f, None) is not None}
    for field in ("checkpoint", "vae"):
        if isinstance(out.get(field), Path):
            out[field] = out[field].name
    return out


def resolve_file_args(args: argparse.Namespace) -> argparse.Namespace:
    """The operator's file and folder flags: an existing path anywhere, else a name in the configured folders.
    Turns `args.checkpoint` / `args.vae` into a Path when they name a file; checks the folders exist."""
    from .compose import file_option, folder_option
    if getattr(args, "checkpoint", None) is not None:
        args.checkpoint = file_option(args.checkpoint, "--checkpoint")
    if getattr(args, "vae", None) not in (None, "Automatic", "None", ""):
        args.vae = file_option(args.vae, "--vae")
    args.data_dir = folder_option(args.data_dir, "--data-dir") if args.data_dir is not None else Path(".")
    if getattr(args, "a1111_dir", None) is not None:
        args.a1111_dir = folder_option(args.a1111_dir, "--a1111-dir")
    if getattr(args, "out", None) is not None:
        args.out = Path(args.out).expanduser()
    return args


def service_options(args: argparse.Namespace, **kw):
    from .compose import ServiceOptions
    return ServiceOptions(data_dir=args.data_dir, a1111_dir=args.a1111_dir, device=args.device,
                          precision=args.precision, checkpoint=getattr(args, "checkpoint", None),
                          vae=getattr(args, "vae", None) if isinstance(getattr(args, "vae", None), Path) else None,
                          tiled_vae=getattr(args, "tiled_vae", False), outputs_dir=getattr(args, "out", None), **kw)


def params_from_args(args: argparse.Namespace, lora: str | None = None) -> GenerationParams:
    """Preset, then --params, then explicit flags: later sources override earlier ones. A preset with a LoRA
    slot gets `lora` in its slot when given (a sweep's LoRA), else its default LoRA."""
    from .presets_resolve import resolve_recipe
    text = None
    if getattr(args, "params", None):
        path = Path(args.params).expanduser()
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as e:
            raise _ArgError(f"cannot read --params file {path}: {e.strerror}") from e
        except UnicodeDecodeError as e:
            # Strict, not A1111's lenient reading: a guessed decoding would put wrong characters in the prompt.
            raise _ArgError(f"cannot read --params file {path}: not UTF-8 text (byte {e.start}: "
                            f"{e.object[e.start:e.start + 1]!r}); save it as UTF-8") from None
    params, warnings = resolve_recipe(preset=getattr(args, "preset", None), infotext=text,
                                      overrides=param_overrides(args), lora=lora)
    print_warnings(warnings)  # said when the recipe is loaded, before any work
    return params


def print_warnings(warnings) -> None:
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)


def cmd_txt2img(args) -> int:
    resolve_file_args(args)
    params = params_from_args(args)  # validates before any model is loaded
    from .compose import build_folders, build_service
    options = service_options(args)
    # A mistyped model name fails now, in a fraction of a second, not after torch and diffusers have loaded.
    folders = build_folders(options)
    checkpoint = params.checkpoint or options.checkpoint_name
    if checkpoint:
        folders.resolve_checkpoint(checkpoint)
    folders.vae_choice(params.vae)
    service = build_service(options)
    result = service.generate(params, progress=_tqdm_progress() if args.progress else None)
    print_warnings(result.warnings)
    for path in result.paths:
        print(path)
    return 0


def _tqdm_progress():
    from tqdm import tqdm
    bars: dict = {}

    def progress(ev):
        key = (ev.image_index, ev.pass_name)
        bar = bars.get(key)
        if bar is None:
            bar = bars[key] = tqdm(total=ev.total, desc=f"{ev.pass_name} {ev.image_index + 1}/{ev.image_count}",
                                   file=sys.stderr, leave=False)
        bar.update(ev.step - bar.n)
        if ev.step >= ev.total:
            bar.close()

    return progress


def cmd_presets(args) -> int:
    from .presets import PRESETS_DIR, load_presets
    presets, errors = load_presets(PRESETS_DIR)
    for p in presets:
        print(f"{p.id}\t{p.title}")
    for e in errors:
        print(f"warning: {e}", file=sys.stderr)
    return 0


def cmd_pnginfo(args) -> int:
    """The raw text on stdout (as stored, for scripts), warnings for keys pasting it would ignore on stderr;
    with --keys, after a blank line, which keys it applies, keeps as source information and ignores."""
    from .infotext import parse_infotext
    from .pnginfo import read_parameters
    text = read_parameters(args.file)
    if not text:
        raise _ArgError(f"{args.file}: no generation parameters in this image")
    print(text)
    try:
        parsed = parse_infotext(text)
    except CreationMixError as e:
        print(f"warning: cannot be used as a recipe: {e}", file=sys.stderr)
        return 0
    print_warnings(parsed.warnings)
    if args.keys:
        print(f"\n{parsed.report()}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="creationmix", description="A1111-faithful SD 1.5 previews")
    parser.add_argument("-v", "--verbose", action="store_true", help="log to stderr (third-party notices too)")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    t = sub.add_parser("txt2img", help="generate images (A1111 txt2img + hires fix)")
    add_param_args(t)
    add_folder_args(t)
    add_device_args(t)
    t.add_argument("--out", default=None, help="outputs folder (default DATA_DIR/outputs)")
    t.add_argument("--tiled-vae", action="store_true", help="decode the VAE in tiles (less memory)")
    t.add_argument("--progress", action="store_true", help="progress bars on stderr")
    t.set_defaults(func=cmd_txt2img)
    p = sub.add_parser("presets", help="list preset card ids")
    p.set_defaults(func=cmd_presets)
    i = sub.add_parser("pnginfo", help="print the infotext of an image")
    i.add_argument("file", type=Path)
    i.add_argument("--keys", action="store_true", help="also list the keys applied / kept / ignored")
    i.set_defaults(func=cmd_pnginfo)
    from .cli_jobs import add_previews_parser, add_xyz_parser
    add_xyz_parser(sub)
    add_previews_parser(sub)
    from .cli_epochs import add_epochs_parser
    add_epochs_parser(sub)
    from .samplers_cli import add_samplers_parser
    add_samplers_parser(sub)
    from .cli_upscale import add_upscale_parser
    add_upscale_parser(sub, add_folder_args, add_device_args)
    return parser


def run() -> int:
    """The `creationmix` console script (see startup_gc: no GC during start-up, no heap scan at exit)."""
    from .startup_gc import run_entry
    return run_entry(main)


def _misplaced_option_hint(argv: list[str], message: str) -> str:
    """`creationmix --data-dir X txt2img`: argparse only says "invalid choice: 'X'"; say where the option goes."""
    first = next((a for a in argv if a not in ("-v", "--verbose")), "")
    if first.startswith("--") and first != "--help" and ("invalid choice" in message or "unrecognized" in message):
        option = first.split("=", 1)[0]
        return f"; {option} is an option of a command and goes after it: creationmix txt2img {option} ..."
    return ""


def main(argv: list[str] | None = None) -> int:
    from .logs import configure
    try:
        args = build_parser().parse_args(argv)
        # Quiet by default: results on stdout, one line per warning or error on stderr, logs only with -v.
        configure(verbose=args.verbose)
        return args.func(args)
    except _ArgError as e:
        print(f"error: {e}{_misplaced_option_hint(sys.argv[1:] if argv is None else argv, str(e))}", file=sys.stderr)
        return 2
    except CreationMixError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
