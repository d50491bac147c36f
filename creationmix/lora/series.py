"""kohya training runs as one entry: `<output_name>-000001` ... `-000010` plus the final `<output_name>`.

sd-scripts names an epoch checkpoint `EPOCH_FILE_NAME = "{}-{:06d}"` and the last one plain `<output_name>`,
and writes `ss_epoch` / `ss_steps` / `ss_output_name` into every header. The file names decide what belongs
together (they are what the user sees and renames); the header numbers, when present, label the epochs.
Torch-free: the UI lists series.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from ..errors import LoraError

EPOCH_NAME = re.compile(r"^(?P<base>.+)-(?P<num>\d{6})$")
FINAL_WORDS = ("final", "last")


@dataclass(frozen=True)
class EpochEntry:
    info: object  # lora.library.LoraInfo
    epoch: int | None  # None: a final file whose header does not say
    steps: int | None
    final: bool = False

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def path(self) -> Path:
        return self.info.path

    @property
    def tag(self) -> str:
        """Short, file-name safe id of this entry (cell file names, `--publish` keys)."""
        return "final" if self.final else f"e{self.epoch:06d}"

    @property
    def label(self) -> str:
        """Grid row label: `epoch 3 (1200 steps)`, `final: epoch 10 (4000 steps)`."""
        head = "final" + (f": epoch {self.epoch}" if self.epoch is not None else "") if self.final \
            else f"epoch {self.epoch}"
        return head + (f" ({self.steps} steps)" if self.steps is not None else "")


@dataclass
class LoraSeries:
    name: str  # the output name shared by the files
    folder: Path
    epochs: list[EpochEntry] = field(default_factory=list)  # by epoch, the final file last

    @property
    def final(self) -> EpochEntry | None:
        return next((e for e in self.epochs if e.final), None)

    @property
    def names(self) -> list[str]:
        return [e.name for e in self.epochs]

    def find(self, key: str | int) -> EpochEntry:
        """An entry by epoch number (`3`, `000003`, `e000003`), `final`/`last`, or its LoRA name."""
        text = str(key).strip()
        if text.lower() in FINAL_WORDS:
            if self.final is not None:
                return self.final
            return self.epochs[-1]
        num = text[1:] if text[:1].lower() == "e" and text[1:].isdigit() else text
        if num.isdigit():
            n = int(num)
            for e in self.epochs:
                if not e.final and e.epoch == n:
                    return e
            if self.final is not None and self.final.epoch == n:
                return self.final
        for e in self.epochs:
            if text in (e.name, e.path.stem):
                return e
        have = ", ".join(e.tag if e.final else str(e.epoch) for e in self.epochs)
        raise LoraError(f"series {self.name!r} has no epoch {text!r}; it has: {have}")


def _int(value) -> int | None:
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return None


def group_series(items: Iterable) -> list[LoraSeries]:
    """The kohya series among LoraInfo entries: files `<base>-NNNNNN` in one folder (with `<base>` itself as the
    final file when present). A folder with only the plain file is no series."""
    groups: dict[tuple[Path, str], list[tuple[object, int | None]]] = {}
    plain: dict[tuple[Path, str], object] = {}
    for info in items:
        if getattr(info, "error", None):
            continue
        m = EPOCH_NAME.match(info.path.stem)
        if m:
            groups.setdefault((info.path.parent, m["base"]), []).append((info, int(m["num"])))
        else:
            plain.setdefault((info.path.parent, info.path.stem), info)
    out = []
    for (folder, base), members in groups.items():
        entries = [EpochEntry(info, _int(info.metadata.get("ss_epoch")) or num, _int(info.metadata.get("ss_steps")))
                   for info, num in members]
        final = plain.get((folder, base))
        if final is not None:
            entries.append(EpochEntry(final, _int(final.metadata.get("ss_epoch")),
                                      _int(final.metadata.get("ss_steps")), final=True))
        entries.sort(key=lambda e: (e.final, e.epoch if e.epoch is not None else 0, e.name))
        out.append(LoraSeries(name=base, folder=folder, epochs=entries))
    out.sort(key=lambda s: (s.name.lower(), str(s.folder)))
    return out


def find_series(library, key: str) -> LoraSeries:
    """A series by its name (the output name) or by the name of any of its files, only inside the LoRA folders."""
    series = group_series(library.scan())
    for s in series:
        if s.name == key:
            return s
    info = library.resolve(key)  # PathError / LoraError for names outside the folders or unknown
    for s in series:
        if any(e.path == info.path for e in s.epochs):
            return s
    names = ", ".join(s.name for s in series) or "none"
    raise LoraError(f"LoRA {key!r} is not part of a kohya epoch series (<name>-000001 ...); series found: {names}")
