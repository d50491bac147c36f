"""Page scripts: A1111's keyboard habits in the prompt boxes.

Ctrl+Enter generates (Enter alone stays a newline); Ctrl+Up / Ctrl+Down change the emphasis of the selection (or
of the word under the cursor) by 0.1 in A1111's `(text:1.1)` syntax, dropping the brackets when it returns to 1.
`emphasis_edit` is the same rule in Python, so the handler tests pin down what the script does.
"""
from __future__ import annotations

import re

PROMPT_IDS = ("cm_prompt", "cm_negative_prompt", "cm_hires_prompt", "cm_hires_negative_prompt")
STEP = 0.1
_WEIGHTED = re.compile(r"^\((.*):(-?\d+(?:\.\d+)?)\)$", re.S)
_DELIMS = " ,\n\t()[]<>:|"


def _fmt(w: float) -> str:
    return f"{round(w, 2):.2f}".rstrip("0").rstrip(".")


def emphasis_edit(text: str, start: int, end: int, up: bool) -> tuple[str, int, int]:
    """(new text, new selection start, end) after Ctrl+Up (up=True) / Ctrl+Down on text[start:end]."""
    if start == end:  # no selection: the word under the cursor
        while start > 0 and text[start - 1] not in _DELIMS:
            start -= 1
        while end < len(text) and text[end] not in _DELIMS:
            end += 1
        if start == end:
            return text, start, end
    # Already inside "(sel:w)": widen to the bracket.
    if start > 0 and text[start - 1] == "(":
        m = re.match(r":(-?\d+(?:\.\d+)?)\)", text[end:])
        if m:
            start, end = start - 1, end + m.end()
    sel = text[start:end]
    m = _WEIGHTED.match(sel)
    inner, weight = (m.group(1), float(m.group(2))) if m else (sel, 1.0)
    weight = round(weight + (STEP if up else -STEP), 2)
    new = inner if weight == 1.0 else f"({inner}:{_fmt(weight)})"
    text = text[:start] + new + text[end:]
    if new == inner:
        return text, start, start + len(inner)
    return text, start + 1, start + 1 + len(inner)


HEAD = """<script>
(() => {
  const ids = %(ids)s, step = %(step)s;
  const delims = %(delims)s;
  const fmt = (w) => String(Math.round(w * 100) / 100);
  function edit(text, start, end, up) {
    if (start === end) {
      while (start > 0 && !delims.includes(text[start - 1])) start--;
      while (end < text.length && !delims.includes(text[end])) end++;
      if (start === end) return null;
    }
    if (start > 0 && text[start - 1] === "(") {
      const m = /^:(-?\\d+(?:\\.\\d+)?)\\)/.exec(text.slice(end));
      if (m) { start -= 1; end += m[0].length; }
    }
    const sel = text.slice(start, end);
    const m = /^\\(([\\s\\S]*):(-?\\d+(?:\\.\\d+)?)\\)$/.exec(sel);
    const inner = m ? m[1] : sel;
    const weight = Math.round(((m ? parseFloat(m[2]) : 1) + (up ? step : -step)) * 100) / 100;
    const piece = weight === 1 ? inner : "(" + inner + ":" + fmt(weight) + ")";
    const s = piece === inner ? start : start + 1;
    return [text.slice(0, start) + piece + text.slice(end), s, s + inner.length];
  }
  document.addEventListener("keydown", (e) => {
    const box = e.target;
    if (!(e.ctrlKey || e.metaKey) || !box.closest) return;
    const host = box.closest(ids.map((i) => "#" + i).join(", "));
    if (!host) return;
    if (e.key === "Enter") {
      e.preventDefault();
      document.querySelector("#cm_generate")?.click();
    } else if ((e.key === "ArrowUp" || e.key === "ArrowDown") && box.tagName === "TEXTAREA") {
      const out = edit(box.value, box.selectionStart, box.selectionEnd, e.key === "ArrowUp");
      if (!out) return;
      e.preventDefault();
      box.value = out[0];
      box.setSelectionRange(out[1], out[2]);
      box.dispatchEvent(new Event("input", {bubbles: true}));
    }
  });
})();
</script>""" % {"ids": list(PROMPT_IDS).__repr__().replace("'", '"'), "step": STEP,
                "delims": repr(_DELIMS).replace("'", '"').replace("\\n", "\\n").replace("\\t", "\\t")}
