"""The composition root: the one place that turns options into a working Service.

The web UI launcher, every CLI subcommand and the HTTP API build their service here, so folders, device,
the operator's files and the "which checkpoint" default mean the same thing everywhere. Torch-free to import.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .errors import PathError
from .paths import Folders, with_operator_files
from .presets import PRESETS_DIR
from .service import Service


@dataclass(frozen=True)
class ServiceOptions:
    """How to build a Service. `checkpoint` / `vae` are a *name* inside the configured folders (str) or a file
    the local operator pointed at (Path, anywhere; it becomes known by its file name). `lora_dir` adds one
    LoRA folder, searched first."""

    data_dir: Path = Path(".")
    a1111_dir: Path | None = None
    device: str | None = None
    precision: str | None = None
    checkpoint: str | Path | None = None
    vae: str | Path | None = None
    tiled_vae: bool = False
    lora_dir: Path | None = None
    outputs_dir: Path | None = None
    presets_dir: Path | None = None
    demo_if_empty: bool = False  # the app builds a random demo model in an empty install; the CLI errors
    create_folders: bool = False  # the app creates models/... in its data dir; the CLI leaves the cwd alone
    remember_checkpoint: bool = False  # the app remembers the user's last checkpoint across restarts

    def __post_init__(self):
        for name in ("checkpoint", "vae"):
            v = getattr(self, name)
            if v is not None and not isinstance(v, (str, Path)):
                raise TypeError(f"ServiceOptions.{name} must be a name (str) or a file (Path), got {v!r}")

    @property
    def vae_name(self) -> str | None:
        """The VAE as a GenerationParams.vae value (an operator file is known by its file name)."""
        return self.vae.name if isinstance(self.vae, Path) else self.vae

    @property
    def checkpoint_name(self) -> str | None:
        return self.checkpoint.name if isinstance(self.checkpoint, Path) else self.checkpoint


def build_folders(options: ServiceOptions) -> Folders:
    folders = Folders(Path(options.data_dir), Path(options.a1111_dir) if options.a1111_dir else None)
    return with_operator_files(folders, lora_dir=options.lora_dir,
                               checkpoint=options.checkpoint if isinstance(options.checkpoint, Path) else None,
                               vae=options.vae if isinstance(options.vae, Path) else None)


def build_service(options: ServiceOptions | None = None) -> Service:
    options = options or ServiceOptions()
    return Service(build_folders(options), device=options.device, precision=options.precision,
                   checkpoint=options.checkpoint_name, presets_dir=options.presets_dir or PRESETS_DIR,
                   demo_if_empty=options.demo_if_empty, tiled_vae=options.tiled_vae,
                   outputs_dir=options.outputs_dir, create_folders=options.create_folders,
                   remember_checkpoint=options.remember_checkpoint)


# -- the operator's command-line values --------------------------------------------------------------------------
def file_option(value: str | Path | None, kind: str) -> str | Path | None:
    """A command-line file value: an existing file anywhere (`~` expanded) is the operator's file (a Path);
    anything else is a name for the configured folders (a str, checked there with the folder rule)."""
    if value is None or isinstance(value, Path):
        return value
    path = Path(value).expanduser()
    if path.is_file():
        return path.resolve()
    if path.is_absolute() or value.startswith("~") or ".." in Path(value.replace("\\", "/")).parts:
        raise PathError(f"{kind} {value}: no such file")
    return value


def folder_option(value: str | Path | None, kind: str, roots: list[Path] = ()) -> Path | None:
    """A command-line folder value: an existing folder anywhere, else a subfolder of one of `roots`."""
    if value is None:
        return None
    path = Path(value).expanduser()
    if path.is_dir():
        return path.resolve()
    if not path.is_absolute() and ".." not in path.parts:
        for root in roots:
            if Path(root, path).is_dir():
                return Path(root, path).resolve()
    where = f" (nor inside {', '.join(str(r) for r in roots)})" if roots else ""
    raise PathError(f"{kind} {value}: no such folder{where}")
