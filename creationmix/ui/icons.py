"""Tool-button icons drawn as inline SVG in CSS: no emoji font needed (headless/minimal installs have none).

A button keeps a plain-text label (for screen readers and tests, hidden by `font-size: 0`) and gets the icon
from its `cm-icon-<name>` class.
"""
from __future__ import annotations

from urllib.parse import quote

_STROKE = ('fill="none" stroke="%23{c}" stroke-width="2" stroke-linecap="round" stroke-linejoin="round"')
# 24x24 outline icons (own drawings in the common "feather" style).
_PATHS = {
    "refresh": '<path d="M20 11a8 8 0 1 0-2.3 5.7"/><path d="M20 4v7h-7"/>',
    "dice": '<rect x="3.5" y="3.5" width="17" height="17" rx="3"/><circle cx="8.5" cy="8.5" r="1.3"/>'
            '<circle cx="15.5" cy="15.5" r="1.3"/><circle cx="12" cy="12" r="1.3"/>'
            '<circle cx="15.5" cy="8.5" r="1.3"/><circle cx="8.5" cy="15.5" r="1.3"/>',
    "reuse": '<path d="M4 12a8 8 0 0 1 13.7-5.7L20 8.6"/><path d="M20 3v5.6h-5.6"/>'
             '<path d="M20 12a8 8 0 0 1-13.7 5.7L4 15.4"/><path d="M4 21v-5.6h5.6"/>',
    "paste": '<path d="M18 6 6 18"/><path d="M6 8v10h10"/>',
    "swap": '<path d="M8 3v18"/><path d="m4 7 4-4 4 4"/><path d="M16 21V3"/><path d="m12 17 4 4 4-4"/>',
    "trash": '<path d="M4 7h16"/><path d="M9 7V4h6v3"/><path d="M6 7l1 13h10l1-13"/>',
    "style": '<path d="M4 20h4L19 9l-4-4L4 16z"/><path d="m13.5 6.5 4 4"/>',
}


def _svg(name: str, colour: str) -> str:
    svg = (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24" {_STROKE.format(c=colour)}>'
           f'{_PATHS[name]}</svg>')
    # '#' is already %23 in the stroke; quote the rest for a data: URL.
    return "data:image/svg+xml," + quote(svg, safe="%/:=' ,.-")


ICON_NAMES = tuple(_PATHS)


def icon_css() -> str:
    rules = [".cm-icon {font-size: 0 !important; color: transparent !important; background-repeat: no-repeat "
             "!important; background-position: center !important; background-size: 20px 20px !important; "
             "min-width: 40px !important; max-width: 40px !important; min-height: 40px; padding: 0 !important}"]
    for name in _PATHS:
        rules.append(f".cm-icon-{name} {{background-image: url(\"{_svg(name, '6b7280')}\") !important}}")
        rules.append(f".dark .cm-icon-{name} {{background-image: url(\"{_svg(name, 'd1d5db')}\") !important}}")
    return "\n".join(rules)


def icon_classes(name: str) -> list[str]:
    if name not in _PATHS:
        raise KeyError(f"no icon {name!r}; have {', '.join(_PATHS)}")
    return ["cm-icon", f"cm-icon-{name}"]
