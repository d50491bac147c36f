"""A1111 prompt styles: `styles.csv` (columns name, prompt, negative_prompt) read from the data dir and from
`--a1111-dir`, applied as A1111 applies them. Torch-free.

A1111's rule (modules/styles.py merge_prompts): a style text with `{prompt}` has the prompt put in its place;
otherwise the style is appended after ", " (an empty side is left out). Styles apply in the order selected.
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

from .errors import InvalidParameter

STYLES_FILE = "styles.csv"


@dataclass(frozen=True)
class Style:
    name: str
    prompt: str = ""
    negative_prompt: str = ""
    source: Path | None = None


def merge_prompt(style_text: str, prompt: str) -> str:
    if "{prompt}" in style_text:
        return style_text.replace("{prompt}", prompt)
    return ", ".join(p for p in (prompt.strip(), style_text.strip()) if p)


def read_styles_csv(path: Path) -> list[Style]:
    """The styles in one A1111 styles.csv. A missing file gives none; a file without a `name` column is an error."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        return []
    except OSError as e:
        raise InvalidParameter(f"cannot read styles file {path}: {e.strerror}") from None
    reader = csv.DictReader(io.StringIO(text), skipinitialspace=True)
    if reader.fieldnames is None:
        return []
    if "name" not in reader.fieldnames:
        raise InvalidParameter(f"{path}: no 'name' column (expected A1111's name,prompt,negative_prompt)")
    out = []
    for row in reader:
        name = (row.get("name") or "").strip()
        if name:
            out.append(Style(name, row.get("prompt") or "", row.get("negative_prompt") or "", Path(path)))
    return out


def load_styles(dirs: list[Path]) -> list[Style]:
    """Styles from `<dir>/styles.csv` for each dir in order; the first dir wins on a repeated name."""
    seen: dict[str, Style] = {}
    for d in dirs:
        for s in read_styles_csv(Path(d) / STYLES_FILE):
            seen.setdefault(s.name, s)
    return list(seen.values())


def apply_styles(prompt: str, negative: str, names: list[str], styles: list[Style]) -> tuple[str, str]:
    by_name = {s.name: s for s in styles}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise InvalidParameter(f"unknown style(s) {', '.join(unknown)}; available: "
                               f"{', '.join(by_name) or 'none (put a styles.csv in the data dir)'}")
    for n in names:
        prompt = merge_prompt(by_name[n].prompt, prompt)
        negative = merge_prompt(by_name[n].negative_prompt, negative)
    return prompt, negative
