"""Grid images with A1111's look (modules/images.py draw_grid_annotations): white background, column labels
centred above, row labels centred in a left band 3/4 of a cell wide, words wrapped to the space they have and
a font shrunk until the longest line fits. Added here: a title band (the fixed parameters) and readable labels on
tiny cells (A1111's font is (w+h)/25 px, unreadable at 64x64, so we never go below MIN_FONT).

Cells may differ in size (a Hires upscale axis): each sits centred in a box as large as the largest cell.
A missing cell (interrupted or failed) is a light grey box. Torch-free.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageFont

BACKGROUND = (255, 255, 255)
TEXT = (0, 0, 0)
MISSING = (224, 224, 224)
MUTED = (120, 120, 120)
MIN_FONT = 11
_FONT_FILES = ("DejaVuSans.ttf", "LiberationSans-Regular.ttf", "Arial.ttf", "arial.ttf")


@functools.lru_cache(maxsize=64)
def get_font(size: int) -> ImageFont.ImageFont:
    size = max(1, int(size))
    for name in _FONT_FILES:
        try:
            return ImageFont.truetype(name, size)
        except OSError:
            continue
    return ImageFont.load_default(size=size)


_MEASURE = ImageDraw.Draw(Image.new("RGB", (1, 1)))


def text_width(text: str, font) -> float:
    return _MEASURE.textlength(text, font=font)


def text_height(font) -> int:
    box = _MEASURE.textbbox((0, 0), "Ag", font=font)
    return box[3] - box[1]


def wrap(text: str, font, width: float) -> list[str]:
    """A1111's wrap(): greedy by words; a word longer than the width gets a line of its own."""
    lines: list[str] = []
    for paragraph in str(text).split("\n"):
        current = ""
        for word in paragraph.split():
            cand = f"{current} {word}".strip()
            if not current or text_width(cand, font) <= width:
                current = cand
            else:
                lines.append(current)
                current = word
        lines.append(current)
    return lines or [""]


@dataclass
class _Block:
    lines: list[str]
    font: ImageFont.ImageFont
    line_h: int
    spacing: int

    @property
    def height(self) -> int:
        return len(self.lines) * self.line_h + (len(self.lines) - 1) * self.spacing


def _fit(text: str, width: float, fontsize: int) -> _Block:
    """Wrap at `fontsize`, then shrink (not below MIN_FONT - 3) until every line fits, as A1111 does."""
    size = fontsize
    while True:
        font = get_font(size)
        lines = wrap(text, font, width)
        if size <= MIN_FONT - 3 or all(text_width(line, font) <= width for line in lines):
            return _Block(lines, font, text_height(font), max(1, size // 4))
        size -= 1


def _draw_block(d: ImageDraw.ImageDraw, block: _Block, cx: float, top: float, fill=TEXT, align: str = "center",
                left: float = 0) -> None:
    y = top
    for line in block.lines:
        if align == "center":
            d.text((cx, y + block.line_h / 2), line, font=block.font, fill=fill, anchor="mm")
        else:
            d.text((left, y + block.line_h / 2), line, font=block.font, fill=fill, anchor="lm")
        y += block.line_h + block.spacing


def cell_box(images) -> tuple[int, int]:
    present = [im for im in images if im is not None]
    if not present:
        return 64, 64
    return max(im.width for im in present), max(im.height for im in present)


def draw_grid(cells: list[list[Image.Image | None]], col_labels: list[str], row_labels: list[str],
              title: str | None = None, margin: int = 0) -> Image.Image:
    """`cells[row][col]` with labels; empty label lists (or all-empty labels) leave their band out."""
    rows = len(cells)
    cols = len(cells[0]) if rows else 0
    w, h = cell_box([im for row in cells for im in row])
    fontsize = max(MIN_FONT, (w + h) // 25)
    has_cols = any(s.strip() for s in col_labels)
    has_rows = any(s.strip() for s in row_labels)
    pad_left = 0
    if has_rows:
        # A1111: 3/4 of a cell. At tiny sizes make room for the longest word instead.
        longest = max(text_width(word, get_font(fontsize)) for s in row_labels for word in (s.split() or [""]))
        pad_left = max(w * 3 // 4, min(int(longest) + fontsize, 4 * w, 400))
    col_blocks = [_fit(s, w, fontsize) for s in col_labels] if has_cols else []
    row_blocks = [_fit(s, max(pad_left - fontsize // 2, 8), fontsize) for s in row_labels] if has_rows else []
    spacing = fontsize // 2
    pad_top = max(b.height for b in col_blocks) + spacing * 2 if col_blocks else 0

    grid_w = pad_left + cols * w + margin * max(cols - 1, 0)
    title_block = None
    title_h = 0
    if title:
        title_block = _fit(title, max(grid_w - 2 * spacing, 32), max(MIN_FONT, fontsize * 3 // 4))
        title_h = title_block.height + spacing * 2
    grid_h = title_h + pad_top + rows * h + margin * max(rows - 1, 0)
    out = Image.new("RGB", (grid_w, grid_h), BACKGROUND)
    d = ImageDraw.Draw(out)
    if title_block:
        _draw_block(d, title_block, 0, spacing, fill=TEXT, align="left", left=spacing)
    top = title_h + pad_top
    for r, row in enumerate(cells):
        for c, im in enumerate(row):
            x0, y0 = pad_left + c * (w + margin), top + r * (h + margin)
            if im is None:
                d.rectangle((x0, y0, x0 + w - 1, y0 + h - 1), fill=MISSING)
                continue
            out.paste(im.convert("RGB"), (x0 + (w - im.width) // 2, y0 + (h - im.height) // 2))
    for c, block in enumerate(col_blocks):
        cx = pad_left + c * (w + margin) + w / 2
        _draw_block(d, block, cx, title_h + pad_top / 2 - block.height / 2)
    for r, block in enumerate(row_blocks):
        cy = top + r * (h + margin) + h / 2
        _draw_block(d, block, pad_left / 2, cy - block.height / 2)
    return out


def contact_sheet(entries: list[tuple[Image.Image | None, list[str]]], thumb: int = 192, cols: int | None = None,
                  title: str | None = None) -> Image.Image:
    """Thumbnails (aspect kept, at most `thumb` px) each with caption lines under it; None: a grey box."""
    n = len(entries)
    if cols is None:
        cols = max(1, min(8, int(round(n ** 0.5 * 1.3)) or 1))
    cols = max(1, min(cols, max(n, 1)))
    rows = max(1, -(-n // cols))
    fontsize = max(MIN_FONT, thumb // 14)
    font = get_font(fontsize)
    line_h = text_height(font) + max(2, fontsize // 4)
    max_lines = max((len(c) for _, c in entries), default=1)
    cap_h = max_lines * line_h * 2 + fontsize // 2  # room for one wrap per caption line
    cell_w, cell_h = thumb + fontsize, thumb + cap_h + fontsize
    title_block = None
    title_h = 0
    if title:
        title_block = _fit(title, cols * cell_w - fontsize, fontsize)
        title_h = title_block.height + fontsize
    out = Image.new("RGB", (cols * cell_w, title_h + rows * cell_h), BACKGROUND)
    d = ImageDraw.Draw(out)
    if title_block:
        _draw_block(d, title_block, 0, fontsize // 2, align="left", left=fontsize // 2)
    for i, (im, caption) in enumerate(entries):
        x0 = (i % cols) * cell_w + fontsize // 2
        y0 = title_h + (i // cols) * cell_h + fontsize // 2
        if im is None:
            d.rectangle((x0, y0, x0 + thumb - 1, y0 + thumb - 1), fill=MISSING)
        else:
            t = im.convert("RGB")
            t.thumbnail((thumb, thumb))
            if t.width < thumb and t.height < thumb:  # tiny previews: scale up so the sheet is usable
                f = min(thumb / t.width, thumb / t.height)
                t = t.resize((max(1, int(t.width * f)), max(1, int(t.height * f))), Image.NEAREST)
            out.paste(t, (x0 + (thumb - t.width) // 2, y0 + (thumb - t.height) // 2))
        y = y0 + thumb + fontsize // 4
        for j, line in enumerate(caption):
            block = _fit(line, thumb, fontsize)
            block.lines = block.lines[:2]
            _draw_block(d, block, x0 + thumb / 2, y, fill=TEXT if j == 0 else MUTED)
            y += block.height + block.spacing
    return out
