"""The LoRA folders: what is there, what each file says about itself, and safe name resolution.

Listing never loads tensors: a safetensors header (8-byte length + JSON) is read by hand, so a folder of
hundreds of LoRAs lists in milliseconds and a broken file shows up as an entry with `error` set instead of
breaking the listing. Tensors are read only by `load_lora_file`, when a LoRA is applied.
"""
from __future__ import annotations

import difflib
import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import LoraError, PathError
from ..hashing import lora_hash
from ..safetensors_header import HeaderProblem, read_header
from ..paths import LORA_EXTS, check_relative_name

log = logging.getLogger(__name__)

# A header larger than this is not a LoRA header (real ones are < 1 MB even with tag frequencies).
TOP_TAGS = 10


def read_safetensors_header(path: Path) -> tuple[dict[str, dict], dict[str, str]]:
    """(tensor entries {key: {"dtype", "shape", "data_offsets"}}, __metadata__) without reading tensor data.

    Raises LoraError for anything that is not a complete safetensors header (short file, absurd length, bad
    JSON, offsets past the end of the file)."""
    try:
        h = read_header(path)
    except OSError as e:
        raise LoraError(f"cannot read LoRA file {path.name}: {e}") from e
    except HeaderProblem as p:
        f = p.facts
        if p.kind == "short":
            raise LoraError(f"LoRA file {path.name} is truncated ({f['size']} bytes, no safetensors header)") from None
        if p.kind == "length":
            # Its "length" is the file's first 8 bytes: shown as a number they would leak what a symlink
            # points at (the start of /etc/passwd, say), so only the size is named.
            raise LoraError(f"LoRA file {path.name} is not a safetensors file or is corrupt (its header length "
                            f"does not fit a file of {f['size']} bytes)") from None
        if p.kind == "json":
            raise LoraError(f"LoRA file {path.name} is corrupt: its safetensors header is not valid JSON "
                            f"({f['detail']})") from None
        raise LoraError(f"LoRA file {path.name} is truncated or corrupt: tensor {f['key']!r} lies past the end "
                        f"of the file") from None
    return h.entries, h.metadata


def _int(value) -> int | None:
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return None


def _float(value) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def top_tags(tag_frequency: dict[str, dict[str, int]], n: int = TOP_TAGS) -> list[str]:
    """Most frequent training tags over all dataset folders (kohya's ss_tag_frequency), most frequent first."""
    counts: Counter = Counter()
    for folder in tag_frequency.values():
        if isinstance(folder, dict):
            for tag, count in folder.items():
                c = _int(count)
                if c:
                    counts[str(tag).strip()] += c
    return [t for t, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if t][:n]


def _sd_version_from_base(base: str | None) -> str | None:
    b = (base or "").lower()
    if b.startswith("sdxl"):
        return "SDXL"
    if b.startswith("sd_v2") or b.startswith("sd2"):
        return "SD2"
    if b.startswith("sd_v1") or b.startswith("sd1"):
        return "SD1"
    return None


@dataclass
class LoraInfo:
    """One LoRA file and what it says about itself. Cheap to build: no tensor is read."""

    path: Path
    name: str  # how a prompt addresses it: the stem, or `subdir/stem` when the stem is not unique
    rel: str  # `subdir/stem` relative to its LoRA folder, always unique within that folder
    metadata: dict[str, str] = field(default_factory=dict)  # raw safetensors __metadata__
    tensor_count: int = 0
    # A1111 user-metadata sidecar <stem>.json
    sidecar_weight: float | None = None  # the sidecar's "preferred weight"; A1111 writes 0 for "not set": None
    activation_text: str = ""
    negative_text: str = ""
    sidecar_sd_version: str | None = None
    preview: Path | None = None
    civitai_words: tuple[str, ...] = ()  # Civitai-Helper's <stem>.civitai.info "trainedWords" (read, never written)
    error: str | None = None  # set when the file is unreadable; applying it raises LoraError with this text
    _hash: str | None = field(default=None, repr=False)

    @property
    def stem(self) -> str:
        return self.path.stem

    @property
    def output_name(self) -> str | None:
        return self.metadata.get("ss_output_name") or None

    @property
    def epoch(self) -> int | None:
        """kohya's ss_epoch: the epoch this file was saved at (the final file: the last epoch)."""
        return _int(self.metadata.get("ss_epoch"))

    @property
    def steps(self) -> int | None:
        """kohya's ss_steps: training steps done when this file was saved."""
        return _int(self.metadata.get("ss_steps"))

    @property
    def network_dim(self) -> int | None:
        return _int(self.metadata.get("ss_network_dim"))

    @property
    def network_alpha(self) -> float | None:
        return _float(self.metadata.get("ss_network_alpha"))

    @property
    def base_model_version(self) -> str | None:
        return self.metadata.get("ss_base_model_version") or None

    @property
    def sd_model_name(self) -> str | None:
        return self.metadata.get("ss_sd_model_name") or None

    @property
    def tag_frequency(self) -> dict[str, dict[str, int]]:
        raw = self.metadata.get("ss_tag_frequency")
        if not raw:
            return {}
        try:
            data = json.loads(raw)
        except json.JSONDecodeError:
            return {}
        return data if isinstance(data, dict) else {}

    @property
    def trigger_tags(self) -> list[str]:
        return top_tags(self.tag_frequency)

    @property
    def sd_version(self) -> str:
        """SD1 / SD2 / SDXL / Unknown: the sidecar's word first (the user set it), else kohya's base version."""
        if self.sidecar_sd_version and self.sidecar_sd_version != "Unknown":
            return self.sidecar_sd_version
        return _sd_version_from_base(self.base_model_version) or "Unknown"

    @property
    def preferred_weight(self) -> float:
        """The weight `<lora:name>` means and a card click inserts: the sidecar's, else 1."""
        return self.sidecar_weight if self.sidecar_weight is not None else 1.0

    default_weight = preferred_weight

    @property
    def base_model(self) -> str:
        """Short family label for cards and search ("SD1", "SD2", "SDXL"), "" when unknown."""
        v = self.sd_version
        return "" if v == "Unknown" else v

    @property
    def hash(self) -> str:
        """AutoV3 short hash (A1111's "Lora hashes"), computed on first use and cached on disk by hashing.py."""
        if self._hash is None:
            self._hash = lora_hash(self.path)
        return self._hash


def _read_sidecar(info: LoraInfo) -> None:
    side = info.path.with_suffix(".json")
    if not side.is_file():
        return
    try:
        data = json.loads(side.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        log.warning("ignoring unreadable LoRA sidecar %s: %s", side, e)
        return
    if not isinstance(data, dict):
        return
    w = _float(data.get("preferred weight"))
    info.sidecar_weight = w if w else None
    info.activation_text = str(data.get("activation text") or "")
    info.negative_text = str(data.get("negative text") or "")
    info.sidecar_sd_version = str(data["sd version"]) if data.get("sd version") else None


def _read_civitai_info(info: LoraInfo) -> None:
    side = info.path.with_name(info.path.stem + ".civitai.info")
    if not side.is_file():
        return
    try:
        data = json.loads(side.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        log.warning("ignoring unreadable Civitai-Helper file %s: %s", side, e)
        return
    words = data.get("trainedWords") if isinstance(data, dict) else None
    if isinstance(words, list):
        info.civitai_words = tuple(str(w).strip() for w in words if isinstance(w, str) and w.strip())
# A1111 1.10 ui_extra_networks.find_preview: for each allowed extension, `<stem>.<ext>` then
# `<stem>.preview.<ext>`. (A1111 iterates a set, so its extension order is not fixed; png first is ours.)
PREVIEW_EXTENSIONS = ("png", "jpg", "jpeg", "webp", "gif")


def _find_preview(path: Path) -> Path | None:
    for suffix in (s for ext in PREVIEW_EXTENSIONS for s in (f".{ext}", f".preview.{ext}")):
        cand = path.with_name(path.stem + suffix)
        if cand.is_file():
            return cand
    return None


def _check_kind(tensors: dict[str, dict], name: str) -> None:
    """Flag, at listing time, files we will refuse anyway (LoHa, LoKr, ..., SDXL/SD2): the card shows why."""
    from .formats import BASE_LABEL, detect_format

    fmt = detect_format(tensors, f"LoRA {name}")
    if fmt.base in ("SDXL", "SD2"):
        raise LoraError(f"LoRA {name} was made for {BASE_LABEL[fmt.base]}, CreationMix runs SD 1.5 checkpoints")


def read_lora_info(path: Path, name: str, rel: str) -> LoraInfo:
    info = LoraInfo(path=path, name=name, rel=rel)
    if path.suffix.lower() == ".safetensors":
        try:
            tensors, info.metadata = read_safetensors_header(path)
            info.tensor_count = len(tensors)
            _check_kind(tensors, name)
        except LoraError as e:
            info.error = str(e)
    _read_sidecar(info)
    _read_civitai_info(info)
    info.preview = _find_preview(path)
    return info


class LoraLibrary:
    """Every LoRA file under the given folders (recursively), addressable by stem or `subdir/stem`.

    A stem found more than once (in different subfolders or folders) is listed in `duplicates`; the bare stem
    means the first one (first folder, then sorted path) and every copy stays reachable as `subdir/stem`."""

    def __init__(self, dirs, *, exts: tuple[str, ...] = LORA_EXTS) -> None:
        if isinstance(dirs, (str, Path)):
            dirs = [dirs]
        self.dirs: list[Path] = [Path(d) for d in dirs]
        self.exts = exts
        self.items: list[LoraInfo] = []
        self.duplicates: list[tuple[str, list[Path]]] = []
        self.warnings: list[str] = []
        self._by_name: dict[str, LoraInfo] = {}
        self._by_rel: dict[str, LoraInfo] = {}
        self._by_alias: dict[str, LoraInfo] = {}
        self.refresh()

    def refresh(self) -> None:
        found: list[tuple[Path, str]] = []
        for root in self.dirs:
            if not root.is_dir():
                continue
            files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in self.exts)
            for p in files:
                found.append((p, p.relative_to(root).with_suffix("").as_posix()))
        stems: dict[str, list[Path]] = {}
        for p, _ in found:
            stems.setdefault(p.stem, []).append(p)
        self.duplicates = [(s, ps) for s, ps in stems.items() if len(ps) > 1]
        self.warnings = [f"LoRA name {s!r} is used by {len(ps)} files ({', '.join(str(p) for p in ps)}); "
                         f"<lora:{s}:...> means the first, write the sub-folder path for the others"
                         for s, ps in self.duplicates]
        for w in self.warnings:
            log.warning(w)
        dup = {s for s, _ in self.duplicates}
        self.items, self._by_name, self._by_rel, self._by_alias = [], {}, {}, {}
        for p, rel in found:
            info = read_lora_info(p, rel if p.stem in dup else p.stem, rel)
            self.items.append(info)
            self._by_rel.setdefault(rel, info)
            self._by_name.setdefault(p.stem, info)
            if info.output_name:
                self._by_alias.setdefault(info.output_name, info)

    def scan(self) -> list[LoraInfo]:
        """Re-read the folders and return every entry (broken files included, with `error` set)."""
        self.refresh()
        return list(self.items)

    def names(self) -> list[str]:
        return [i.name for i in self.items]

    def series(self) -> list:
        """kohya epoch series among the listed files (lora.series.LoraSeries), without rescanning."""
        from .series import group_series
        return group_series(self.items)

    def __iter__(self):
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def __contains__(self, name: str) -> bool:
        try:
            self.resolve(name)
        except (LoraError, PathError):
            return False
        return True

    def resolve(self, name: str) -> LoraInfo:
        """A prompt's LoRA name -> LoraInfo, only inside the LoRA folders.

        Tries: `subdir/stem` (with or without extension), bare stem, kohya's ss_output_name (A1111's alias),
        then case-insensitively. Traversal, absolute paths and drive letters raise PathError; an unknown name
        raises LoraError listing the closest names."""
        norm = check_relative_name(name, "LoRA name")
        found = self._lookup(norm)
        if found is None:  # a file added since the last scan: users drop LoRAs in while the app runs
            self.refresh()
            found = self._lookup(norm)
        if found is not None:
            return found
        stem = norm[: -len(Path(norm).suffix)] if Path(norm).suffix.lower() in self.exts else norm
        candidates = sorted(set(self._by_name) | set(self._by_rel) | set(self._by_alias))
        close = difflib.get_close_matches(stem, candidates, n=5, cutoff=0.5)
        where = ", ".join(str(d) for d in self.dirs) or "no LoRA folder"
        hint = f"; closest: {', '.join(close)}" if close else (
            f"; available: {', '.join(candidates[:20])}" if candidates else "; the LoRA folders are empty")
        raise LoraError(f"LoRA {name!r} not found in {where}{hint}")

    def _lookup(self, norm: str) -> LoraInfo | None:
        stem = norm
        if Path(norm).suffix.lower() in self.exts:
            stem = norm[: -len(Path(norm).suffix)]
        for table, key in ((self._by_rel, stem), (self._by_name, stem), (self._by_alias, norm)):
            if key in table:
                return table[key]
        lowered = stem.lower()
        for table in (self._by_rel, self._by_name, self._by_alias):
            for key, info in table.items():
                if key.lower() == lowered:
                    return info
        return None
