"""A1111's folder layout and safe name resolution.

Names that come from the outside world (prompts, infotext, UI fields) resolve only inside the configured
folders: `..`, absolute paths and drive letters are refused (ComfyUI's folder_paths rule).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from .errors import PathError

CHECKPOINT_EXTS = (".safetensors", ".ckpt")
VAE_EXTS = (".safetensors", ".pt", ".ckpt")
LORA_EXTS = (".safetensors", ".pt", ".ckpt")
EMBEDDING_EXTS = (".pt", ".bin", ".safetensors")
# A1111 picks `<checkpoint stem>.vae.*` beside a checkpoint as its VAE: such files are not checkpoints.
SIDECAR_VAE_SUFFIXES = (".vae.safetensors", ".vae.pt", ".vae.ckpt")
# Upscaler model folders: A1111's (models/ESRGAN, ...) and ComfyUI's models/upscale_models.
UPSCALER_SUBDIRS = ("ESRGAN", "RealESRGAN", "SwinIR", "DAT", "HAT", "upscale_models")

_DRIVE = re.compile(r"^[A-Za-z]:")
# File systems refuse longer names (NAME_MAX 255 bytes, PATH_MAX 4096) with a bare OSError: refuse them first.
MAX_NAME_PART = 255
MAX_NAME = 1024


def short(name: str, keep: int = 60) -> str:
    """A name for an error message: never thousands of characters of it."""
    return name if len(name) <= keep else f"{name[:keep]}... ({len(name)} characters)"


def check_name_length(name: str, kind: str = "name") -> str:
    parts = name.replace("\\", "/").split("/")
    if len(name) > MAX_NAME or any(len(p.encode("utf-8", "surrogatepass")) > MAX_NAME_PART for p in parts):
        raise PathError(f"{kind} {short(name)!r}: name is too long ({len(name)} characters; "
                        f"at most {MAX_NAME_PART} bytes per file or folder name, {MAX_NAME} in all)")
    return name


@dataclass(frozen=True)
class Folders:
    """Where models are read from and outputs written to. `a1111_dir` is read-only: outputs stay in data_dir."""

    data_dir: Path = Path(".")
    a1111_dir: Path | None = None

    def _roots(self, *rel: str) -> list[Path]:
        roots = [Path(self.data_dir, *rel)]
        if self.a1111_dir is not None:
            roots.append(Path(self.a1111_dir, *rel))
        return roots

    @property
    def checkpoint_dirs(self) -> list[Path]:
        return self._roots("models", "Stable-diffusion")

    @property
    def lora_dirs(self) -> list[Path]:
        return self._roots("models", "Lora")

    @property
    def vae_dirs(self) -> list[Path]:
        return self._roots("models", "VAE")

    @property
    def embedding_dirs(self) -> list[Path]:
        return self._roots("embeddings")

    def upscaler_dirs(self, sub: str) -> list[Path]:
        """models/<sub>/ for one of UPSCALER_SUBDIRS, ours first, then the A1111 install's."""
        if sub not in UPSCALER_SUBDIRS:
            raise ValueError(f"unknown upscaler folder {sub!r}")
        return self._roots("models", sub)

    @property
    def outputs_dir(self) -> Path:
        return Path(self.data_dir, "outputs")

    @property
    def cache_dir(self) -> Path:
        return Path(self.data_dir, ".cache")

    def list_checkpoints(self) -> list[Path]:
        return [p for p in list_files(self.checkpoint_dirs, CHECKPOINT_EXTS)
                if not p.name.lower().endswith(SIDECAR_VAE_SUFFIXES)]

    def list_vaes(self) -> list[Path]:
        return list_files(self.vae_dirs, VAE_EXTS)

    def resolve_checkpoint(self, name: str) -> Path:
        return resolve_file(name, self.checkpoint_dirs, CHECKPOINT_EXTS, "checkpoint")

    def resolve_vae(self, name: str) -> Path:
        return resolve_file(name, self.vae_dirs, VAE_EXTS, "VAE")

    def vae_choice(self, name: str) -> Path | None:
        """A GenerationParams.vae value -> the file it names; None for "Automatic" / "None" (no file)."""
        if name in ("Automatic", "None", ""):
            return None
        return self.resolve_vae(name)

    def ensure(self) -> None:
        """Create our own folders (never the A1111 install's)."""
        for d in (self.checkpoint_dirs[0], self.lora_dirs[0], self.vae_dirs[0], self.embedding_dirs[0],
                  self.outputs_dir):
            d.mkdir(parents=True, exist_ok=True)


def check_relative_name(name: str, kind: str = "name") -> str:
    """Refuse names that could leave a folder. Returns the name with `\\` normalised to `/`."""
    if not isinstance(name, str) or not name.strip():
        raise PathError(f"empty {kind}")
    check_name_length(name, kind)
    norm = name.replace("\\", "/")
    if norm.startswith("/") or _DRIVE.match(norm):
        raise PathError(f"{kind} {name!r} is an absolute path; only names inside the configured folders are allowed")
    if any(part == ".." for part in norm.split("/")):
        raise PathError(f"{kind} {name!r} contains '..'; only names inside the configured folders are allowed")
    return norm


def list_files(roots: list[Path], exts: tuple[str, ...]) -> list[Path]:
    """Every file with one of `exts` under the roots, recursively, sorted, first root first."""
    out: list[Path] = []
    for root in roots:
        if root.is_dir():
            out.extend(sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in exts))
    return out


def resolve_file(name: str, roots: list[Path], exts: tuple[str, ...], kind: str) -> Path:
    """Find `name` (a file name, a stem, or `subdir/stem`) inside one of the roots.

    Raises PathError for traversal and FileNotFoundError-like PathError listing what exists."""
    norm = check_relative_name(name, kind)
    # Symlinks the user put inside a folder are followed on purpose (models on another drive are common);
    # what is refused is a *name* that walks out of the folder.
    for root in roots:
        cands = [root / norm] if Path(norm).suffix.lower() in exts else [root / (norm + e) for e in exts]
        for cand in cands:
            if cand.is_file():
                return cand
    # Bare stem anywhere below a root (A1111 finds files in subfolders by name).
    stem = Path(norm).name
    if "/" not in norm:
        for p in list_files(roots, exts):
            if p.stem == Path(stem).stem or p.name == stem:
                return p
    known = sorted({p.name for p in list_files(roots, exts)})
    listing = ", ".join(known[:20]) if known else "none"
    where = ", ".join(str(r) for r in roots)
    raise PathError(f"{kind} {name!r} not found in {where}; available: {listing}")


@dataclass(frozen=True)
class OperatorFolders(Folders):
    """The configured folders plus what the local operator named on the command line (or in ServiceOptions):
    checkpoint / VAE files anywhere and one more LoRA folder, searched first.

    An operator file is known by its file name (and stem), so GenerationParams and infotexts keep carrying names.
    Names from the outside world still resolve only inside folders; these files are the operator's grant."""

    extra_lora_dir: Path | None = None
    checkpoint_files: tuple[Path, ...] = ()
    vae_files: tuple[Path, ...] = ()

    @property
    def lora_dirs(self) -> list[Path]:
        extra = [Path(self.extra_lora_dir)] if self.extra_lora_dir is not None else []
        return extra + Folders.lora_dirs.fget(self)

    def list_checkpoints(self) -> list[Path]:
        return _with_files(self.checkpoint_files, Folders.list_checkpoints(self))

    def list_vaes(self) -> list[Path]:
        return _with_files(self.vae_files, Folders.list_vaes(self))

    def resolve_checkpoint(self, name: str) -> Path:
        return _named_file(name, self.checkpoint_files) or Folders.resolve_checkpoint(self, name)

    def resolve_vae(self, name: str) -> Path:
        return _named_file(name, self.vae_files) or Folders.resolve_vae(self, name)


def _with_files(files: tuple[Path, ...], listed: list[Path]) -> list[Path]:
    seen = {Path(f).resolve() for f in files}
    return [Path(f) for f in files] + [p for p in listed if p.resolve() not in seen]


def _named_file(name: str, files: tuple[Path, ...]) -> Path | None:
    for f in files:
        if name in (Path(f).name, Path(f).stem):
            return Path(f)
    return None


def with_operator_files(folders: Folders, *, lora_dir: Path | None = None, checkpoint: Path | None = None,
                        vae: Path | None = None) -> Folders:
    """`folders` plus an explicit LoRA folder and checkpoint / VAE files (paths the operator gave; they must
    exist). A LoRA folder already inside a configured one adds nothing: its names resolve there anyway."""
    if lora_dir is not None:
        lora_dir = Path(lora_dir)
        if not lora_dir.is_dir():
            raise PathError(f"LoRA folder {lora_dir} is not a folder")
        real = lora_dir.resolve()
        if any(d.exists() and (real == d.resolve() or d.resolve() in real.parents) for d in folders.lora_dirs):
            lora_dir = None
    for f, kind in ((checkpoint, "checkpoint"), (vae, "VAE")):
        if f is not None and not Path(f).is_file():
            raise PathError(f"{kind} file {f} not found")
    if lora_dir is None and checkpoint is None and vae is None:
        return folders
    base = dict(data_dir=folders.data_dir, a1111_dir=folders.a1111_dir)
    if isinstance(folders, OperatorFolders):
        base.update(extra_lora_dir=folders.extra_lora_dir, checkpoint_files=folders.checkpoint_files,
                    vae_files=folders.vae_files)
    if lora_dir is not None:
        base["extra_lora_dir"] = lora_dir
    if checkpoint is not None:
        base["checkpoint_files"] = (Path(checkpoint),) + tuple(base.get("checkpoint_files", ()))
    if vae is not None:
        base["vae_files"] = (Path(vae),) + tuple(base.get("vae_files", ()))
    return OperatorFolders(**base)
