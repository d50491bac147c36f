"""`creationmix upscale IMAGE --upscaler NAME --scale 2`: A1111's Extras "Scale by" on one image (an edge module:
argparse glue only; the work is creationmix.upscalers.runner)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .errors import InvalidParameter

HELP_UPSCALER = ("None, Lanczos, Nearest, an A1111 name (R-ESRGAN 4x+, R-ESRGAN 4x+ Anime6B, ESRGAN_4x, ...) or "
                 "a model file's stem in models/ESRGAN, models/RealESRGAN, ..., models/upscale_models")


def add_upscale_parser(sub, *common) -> argparse.ArgumentParser:
    """`common`: functions adding the shared flag groups (folders, device) to the new parser."""
    u = sub.add_parser("upscale", help="upscale an image (A1111 Extras), keeping its generation parameters")
    u.add_argument("image", type=Path)
    u.add_argument("--upscaler", required=True, help=HELP_UPSCALER)
    u.add_argument("--scale", type=float, default=2.0, help="upscale by (A1111 rounds the size down to x8)")
    u.add_argument("--out", type=Path, default=None, help="output folder (default DATA_DIR/outputs/extras-images)")
    u.add_argument("--tile", type=int, default=192, help="model tile size in px, 0 = whole image (A1111: 192)")
    u.add_argument("--tile-overlap", type=int, default=8, help="tile overlap in px (A1111: 8)")
    for add in common:
        add(u)
    u.set_defaults(func=cmd_upscale)
    return u


def cmd_upscale(args) -> int:
    from PIL import Image, UnidentifiedImageError

    from .devices import pick_device, pick_dtype
    from .output import save_numbered_png
    from .compose import ServiceOptions, build_folders
    from .pnginfo import read_parameters
    from .upscalers.runner import PixelUpscalers, UpscaleSettings
    from .upscalers.table import LATENT_MODES, check_upscaler_name

    settings = UpscaleSettings(tile=args.tile, tile_overlap=args.tile_overlap)
    name = check_upscaler_name(args.upscaler)
    if name in LATENT_MODES:
        raise InvalidParameter(f"{name!r} is a latent upscaler (hires fix only); use None, Lanczos, Nearest or a "
                               f"model upscaler")
    try:
        with Image.open(args.image) as im:
            im.load()
            image = im.convert("RGB")
    except FileNotFoundError:
        raise InvalidParameter(f"{args.image}: no such file") from None
    except (UnidentifiedImageError, OSError) as e:
        raise InvalidParameter(f"{args.image} is not a readable image ({type(e).__name__})") from None
    parameters = read_parameters(args.image)
    folders = build_folders(ServiceOptions(data_dir=Path(args.data_dir or "."),
                                           a1111_dir=Path(args.a1111_dir) if args.a1111_dir else None))
    device = pick_device(args.device)
    ups = PixelUpscalers(folders, device, pick_dtype(args.precision, device), settings)
    out = ups.upscale(image, args.scale, name)
    scale_text = f"{args.scale:g}"
    extra = {"postprocessing": f"Postprocess upscale by: {scale_text}, Postprocess upscaler: {name}"}
    folder = args.out or Path(folders.outputs_dir, "extras-images")
    print(save_numbered_png(out, folder, args.image.stem, parameters, extra_text=extra))
    if parameters is None:
        print(f"warning: {args.image.name} has no generation parameters to keep", file=sys.stderr)
    return 0
