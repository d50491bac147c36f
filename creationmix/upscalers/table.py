"""The one table of upscaler names, as A1111 1.10 spells them. Torch-free: params and the UI import it.

Kinds: the six latent modes (interpolate the latent), A1111's PIL upscalers (`None`, `Lanczos`, `Nearest`), and
model files. A1111's built-in model names map to the files A1111 would download (nothing is downloaded here: a
missing file is an error saying which file to put where); any other model file is named by its stem.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import InvalidParameter, ModelError, PathError
from ..paths import UPSCALER_SUBDIRS, Folders, check_relative_name, list_files

# A1111's latent upscale modes (shared.latent_upscale_modes): name -> (interpolate mode, antialias).
LATENT_MODES: dict[str, tuple[str, bool]] = {
    "Latent": ("bilinear", False),
    "Latent (antialiased)": ("bilinear", True),
    "Latent (bicubic)": ("bicubic", False),
    "Latent (bicubic antialiased)": ("bicubic", True),
    "Latent (nearest)": ("nearest", False),
    "Latent (nearest-exact)": ("nearest-exact", False),
}
# modules/upscaler.py: UpscalerNone, UpscalerLanczos, UpscalerNearest.
PIL_UPSCALERS: tuple[str, ...] = ("None", "Lanczos", "Nearest")
MODEL_EXTS = (".pth", ".pt", ".safetensors")


@dataclass(frozen=True)
class BuiltinModel:
    folder: str  # models/<folder>/ in A1111's layout
    files: tuple[str, ...]  # file names A1111 downloads to (first) or users commonly have
    url: str  # where A1111 downloads it from; shown in the error, never fetched


_RE = "https://github.com/xinntao/Real-ESRGAN/releases/download/"
_DAT = "https://huggingface.co/w-e-w/DAT/resolve/main/experiments/pretrained_models/DAT/"
# modules/realesrgan_model.py, esrgan_model.py, dat_model.py, extensions-builtin/SwinIR (A1111 1.10).
BUILTIN_MODELS: dict[str, BuiltinModel] = {
    "R-ESRGAN General 4xV3": BuiltinModel("RealESRGAN", ("realesr-general-x4v3.pth",),
                                          _RE + "v0.2.5.0/realesr-general-x4v3.pth"),
    "R-ESRGAN General WDN 4xV3": BuiltinModel("RealESRGAN", ("realesr-general-wdn-x4v3.pth",),
                                              _RE + "v0.2.5.0/realesr-general-wdn-x4v3.pth"),
    "R-ESRGAN AnimeVideo": BuiltinModel("RealESRGAN", ("realesr-animevideov3.pth",),
                                        _RE + "v0.2.5.0/realesr-animevideov3.pth"),
    "R-ESRGAN 4x+": BuiltinModel("RealESRGAN", ("RealESRGAN_x4plus.pth",), _RE + "v0.1.0/RealESRGAN_x4plus.pth"),
    "R-ESRGAN 4x+ Anime6B": BuiltinModel("RealESRGAN", ("RealESRGAN_x4plus_anime_6B.pth",),
                                         _RE + "v0.2.2.4/RealESRGAN_x4plus_anime_6B.pth"),
    "R-ESRGAN 2x+": BuiltinModel("RealESRGAN", ("RealESRGAN_x2plus.pth",), _RE + "v0.2.1/RealESRGAN_x2plus.pth"),
    # A1111 saves the KAIR ESRGAN.pth download as ESRGAN_4x.pth (file_name=f"{model_name}.pth").
    "ESRGAN_4x": BuiltinModel("ESRGAN", ("ESRGAN_4x.pth", "ESRGAN.pth"),
                              "https://github.com/cszn/KAIR/releases/download/v1.0/ESRGAN.pth"),
    "SwinIR 4x": BuiltinModel("SwinIR", ("SwinIR_4x.pth",),
                              "https://github.com/JingyunLiang/SwinIR/releases/download/v0.0/"
                              "003_realSR_BSRGAN_DFOWMFC_s64w8_SwinIR-L_x4_GAN.pth"),
    # A1111 < 1.6 wrote this name into infotexts.
    "SwinIR_4x": BuiltinModel("SwinIR", ("SwinIR_4x.pth",),
                              "https://github.com/JingyunLiang/SwinIR/releases/download/v0.0/"
                              "003_realSR_BSRGAN_DFOWMFC_s64w8_SwinIR-L_x4_GAN.pth"),
    "DAT x2": BuiltinModel("DAT", ("DAT_x2.pth",), _DAT + "DAT_x2.pth"),
    "DAT x3": BuiltinModel("DAT", ("DAT_x3.pth",), _DAT + "DAT_x3.pth"),
    "DAT x4": BuiltinModel("DAT", ("DAT_x4.pth",), _DAT + "DAT_x4.pth"),
}

# Every name the table knows by itself (a model file's stem is accepted on top of these).
UPSCALER_NAMES: tuple[str, ...] = (*LATENT_MODES, *PIL_UPSCALERS, *BUILTIN_MODELS)


@dataclass(frozen=True)
class UpscalerEntry:
    name: str
    kind: str  # "latent" | "pil" | "model"
    path: Path | None = None


def check_upscaler_name(name) -> str:
    """Any name of the table, or something that can be a model file's stem inside the upscaler folders.

    Whether such a file exists is checked when the engine runs (it may be copied in after the recipe is pasted)."""
    if not isinstance(name, str) or not name.strip():
        raise InvalidParameter(f"hires upscaler must be a name, got {name!r}; valid: {_valid_text()}")
    if name in UPSCALER_NAMES:
        return name
    if "\n" in name or "\r" in name:
        raise InvalidParameter(f"unknown hires upscaler {name!r}; valid: {_valid_text()}")
    try:
        check_relative_name(name, "hires upscaler")
    except PathError as e:
        raise InvalidParameter(f"{e}; valid: {_valid_text()}") from None
    return name


def _valid_text() -> str:
    return (", ".join((*LATENT_MODES, *PIL_UPSCALERS)) + ", A1111's model names (" + ", ".join(BUILTIN_MODELS)
            + ") or the name of a model file in models/{" + ",".join(UPSCALER_SUBDIRS) + "}")


def _model_files(folders: Folders, sub: str | None = None) -> list[tuple[str, Path]]:
    subs = [sub] if sub else list(UPSCALER_SUBDIRS)
    out = []
    for s in subs:
        out.extend((s, p) for p in list_files(folders.upscaler_dirs(s), MODEL_EXTS))
    return out


def _builtin_for(sub: str, path: Path) -> str | None:
    for name, b in BUILTIN_MODELS.items():
        if b.folder == sub and path.name.lower() in (f.lower() for f in b.files) and name != "SwinIR_4x":
            return name
    return None


def list_upscalers(folders: Folders) -> list[UpscalerEntry]:
    """What the hires dropdown offers, in A1111's order: latent modes, None/Lanczos/Nearest, then the model files
    found (a built-in's file in its A1111 folder under A1111's name, any other by its stem), sorted by name."""
    entries = [UpscalerEntry(n, "latent") for n in LATENT_MODES]
    entries += [UpscalerEntry(n, "pil") for n in PIL_UPSCALERS]
    models: dict[str, UpscalerEntry] = {}
    for sub, path in _model_files(folders):
        name = _builtin_for(sub, path) or path.stem
        models.setdefault(name, UpscalerEntry(name, "model", path))
    return entries + sorted(models.values(), key=lambda e: e.name.lower())


def find_model_file(name: str, folders: Folders) -> Path:
    """The model file a (non-latent, non-PIL) upscaler name stands for. ModelError saying what to put where."""
    builtin = BUILTIN_MODELS.get(name)
    if builtin is not None:
        wanted = {f.lower() for f in builtin.files}
        # Its own A1111 folder first, then any upscaler folder (ComfyUI users keep all in upscale_models/).
        for sub in (builtin.folder, *[s for s in UPSCALER_SUBDIRS if s != builtin.folder]):
            for _, path in _model_files(folders, sub):
                if path.name.lower() in wanted:
                    return path
        where = " or ".join(str(d) for d in folders.upscaler_dirs(builtin.folder))
        raise ModelError(f"upscaler {name!r} needs the file {builtin.files[0]}: download it from {builtin.url} and "
                         f"put it in {where} (CreationMix never downloads models)")
    check_relative_name(name, "upscaler")
    norm = name.replace("\\", "/")
    target = Path(norm)
    for _, path in _model_files(folders):
        if path.stem == target.name or path.name == target.name:
            if "/" not in norm or path.as_posix().endswith(norm if target.suffix else norm + path.suffix):
                return path
    found = sorted({p.name for _, p in _model_files(folders)})
    dirs = ", ".join(str(d) for s in UPSCALER_SUBDIRS for d in folders.upscaler_dirs(s))
    raise ModelError(f"upscaler {name!r} not found: no model file {target.name}{{{','.join(MODEL_EXTS)}}} in {dirs}; "
                     f"model files there: {', '.join(found[:20]) if found else 'none'}; other upscalers: "
                     f"{', '.join((*LATENT_MODES, *PIL_UPSCALERS))}")
