"""A1111's `<lora:name:weight>` prompt tags: parsing, removal, and the slider <-> text helpers the UI needs.

Syntax (A1111 >= 1.5, extra_networks + extra_network_lora):
  <lora:name>                 default weight (the sidecar's preferred weight, else 1)
  <lora:name:w>               text encoder and UNet both w
  <lora:name:te_w:unet_w>     split weights
  <lora:name:te=0.5:unet=1>   named; `dyn=` (dynamic rank) is accepted and ignored
  <lyco:name:...>             old LyCORIS-extension alias, same meaning
Tags are removed exactly as A1111 removes them (replaced by "", surrounding commas and spaces kept) so the text
that reaches the text encoder is the one A1111 would encode. Torch-free: the UI imports this.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import LoraError

# A1111's re_extra_net is r"<(\w+):([^>]+)>"; we only take the two LoRA kinds and leave other extra networks be.
_TAG = re.compile(r"<(lora|lyco):([^>]+)>", re.IGNORECASE)
_IGNORED_NAMED = {"dyn"}
_DRIVE_NAME = re.compile(r"^[A-Za-z]$")
# `<lora:a>x:1>`: a tag closed too early, its rest (`x:1>`) would reach the text encoder as words.
_BROKEN_TAIL = re.compile(r"[^<>\s,]*:[^<>\s,]*>")


@dataclass(frozen=True)
class LoraRequest:
    """One LoRA to apply. A weight of None means "default": resolved later against the library (the sidecar's
    preferred weight, else 1.0); a None unet_weight follows the resolved text-encoder weight, as in A1111."""

    name: str
    te_weight: float | None = None
    unet_weight: float | None = None

    @property
    def weight(self) -> float | None:
        return self.te_weight

    def resolved(self, default: float = 1.0) -> "LoraRequest":
        te = default if self.te_weight is None else self.te_weight
        unet = te if self.unet_weight is None else self.unet_weight
        return LoraRequest(self.name, float(te), float(unet))


def _number(text: str, tag: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise LoraError(f"LoRA tag {tag}: weight {text!r} is not a number") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise LoraError(f"LoRA tag {tag}: weight {text!r} is not a finite number")
    return value


def _parse_args(body: str, tag: str) -> LoraRequest:
    positional: list[str] = []
    named: dict[str, str] = {}
    for item in body.split(":"):
        if "=" in item:
            key, _, value = item.partition("=")
            named[key.strip().lower()] = value.strip()
        else:
            positional.append(item.strip())
    if not positional or not positional[0]:
        raise LoraError(f"LoRA tag {tag} has no name; write <lora:name:weight>")
    if len(positional) > 1 and _DRIVE_NAME.match(positional[0]) and positional[1][:1] in ("\\", "/"):
        # "C:\x" splits at its colon into name "C" and weight "\x": say what it really is.
        raise LoraError(f"LoRA tag {tag}: {positional[0]}:{positional[1]} is a drive-letter path, not a LoRA name; "
                        "write the file's name inside models/Lora, e.g. <lora:name:1>")
    if positional[0][:1] in ("/", "\\"):
        raise LoraError(f"LoRA tag {tag}: {positional[0]!r} is an absolute path, not a LoRA name; "
                        "write the file's name inside models/Lora")
    if len(positional) > 3:
        raise LoraError(f"LoRA tag {tag} has too many values; write <lora:name:weight> or <lora:name:te:unet>")
    unknown = sorted(set(named) - {"te", "unet"} - _IGNORED_NAMED)
    if unknown:
        raise LoraError(f"LoRA tag {tag}: unknown parameter(s) {', '.join(unknown)}; allowed: te=, unet=, dyn=")
    te = _number(positional[1], tag) if len(positional) > 1 and positional[1] else None
    unet = _number(positional[2], tag) if len(positional) > 2 and positional[2] else None
    if "te" in named:
        te = _number(named["te"], tag)
    if "unet" in named:
        unet = _number(named["unet"], tag)
    return LoraRequest(positional[0], te, unet)


def extract_lora_tags(prompt: str) -> tuple[str, list[LoraRequest]]:
    """Remove every LoRA tag from `prompt`; return the remaining text and the requests in prompt order.

    A name given twice keeps its last tag (A1111 would apply it twice with the last weight, which nobody means)."""
    requests: list[LoraRequest] = []

    def take(m: re.Match) -> str:
        tail = _BROKEN_TAIL.match(m.string, m.end())
        if tail:
            raise LoraError(f"malformed LoRA tag {m.group(0) + tail.group(0)}: a '>' inside the tag ends it early; "
                            "write <lora:name:weight>")
        requests.append(_parse_args(m.group(2), m.group(0)))
        return ""

    text = _TAG.sub(take, prompt or "")
    return text, merge_requests(requests)


def merge_requests(*groups: list[LoraRequest]) -> list[LoraRequest]:
    """Concatenate request lists; a repeated name keeps the position of its first and the weights of its last."""
    order: list[str] = []
    latest: dict[str, LoraRequest] = {}
    for group in groups:
        for req in group:
            if req.name not in latest:
                order.append(req.name)
            latest[req.name] = req
    return [latest[n] for n in order]


def extract_prompt_loras(prompt: str, negative_prompt: str = "") -> tuple[str, str, list[LoraRequest]]:
    """Both prompts at once: A1111 honours tags in the negative prompt too and merges them with the positive's."""
    pos, pos_req = extract_lora_tags(prompt)
    neg, neg_req = extract_lora_tags(negative_prompt)
    return pos, neg, merge_requests(pos_req, neg_req)


def format_weight(weight: float) -> str:
    """Short, stable text for a weight: 1 -> "1", 0.75 -> "0.75", 0.1+0.2 -> "0.3"."""
    text = f"{round(float(weight), 4):.4f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def _tag_name(m: re.Match) -> str:
    return m.group(2).split(":", 1)[0].strip()


def set_lora_weight(prompt: str, name: str, weight: float | None) -> str:
    """Set `name`'s weight in the prompt text (slider -> text).

    Rewrites every tag of that name to `<lora:name:w>` (a split te/unet tag becomes one weight); adds the tag at the
    end (space-separated, like A1111's card click) when absent; `weight=None` removes the tag."""
    prompt = prompt or ""
    found = False

    def repl(m: re.Match) -> str:
        nonlocal found
        if _tag_name(m) != name:
            return m.group(0)
        if weight is None or found:
            found = True
            return ""
        found = True
        return f"<{m.group(1)}:{name}:{format_weight(weight)}>"

    out = _TAG.sub(repl, prompt)
    if not found and weight is not None:
        tag = f"<lora:{name}:{format_weight(weight)}>"
        out = f"{out} {tag}" if out.strip() else tag
    return out


def list_lora_weights(prompt: str, default: float = 1.0) -> dict[str, float]:
    """name -> weight shown on the slider (the text-encoder weight; `default` where the tag gives none).

    Malformed tags are skipped here: the UI calls this while the user is typing."""
    out: dict[str, float] = {}
    for m in _TAG.finditer(prompt or ""):
        try:
            req = _parse_args(m.group(2), m.group(0))
        except LoraError:
            continue
        out[req.name] = default if req.te_weight is None else req.te_weight
    return out
