"""Trainers' sample-prompt files, read as the trainers read them, turned into A1111 parameters.

kohya sd-scripts (library/train_util.py `load_prompts` / `line_to_prompt_dict`, `sample_image_inference`):
- `.txt`: one prompt a line; blank lines and lines whose first character is `#` are skipped; options follow
  the prompt as ` --n negative`, `--w`, `--h`, `--d` seed, `--s` steps, `--l` CFG, `--ss` sampler (the line is
  split on " --"; each piece is matched from its start, case-insensitive, unknown pieces ignored).
- `.toml`: a `[prompt]` table of defaults and `[[prompt.subset]]` entries, each merged over the defaults.
- `.json`: a list of prompt lines or of dicts with the same keys as the toml.
Their keys: prompt, negative_prompt, width, height, seed, sample_steps, scale, sample_sampler. Width and height
are rounded down to a multiple of 8 (at least 64), steps clamped to 1..1000, as sd-scripts does.

OneTrainer (`training_samples/samples.json`, modules/util/config/SampleConfig.py): a list of dicts with
prompt, negative_prompt, width, height, seed, random_seed, diffusion_steps, cfg_scale, noise_scheduler,
text_encoder_1_layer_skip, enabled.

The trainers sample with diffusers schedulers; a sampler name is mapped to the nearest A1111 sampler (+ schedule)
and the mapping is reported as a warning, since the pictures will not be the trainer's. Torch-free.
"""
from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from ..errors import InvalidParameter
from ..params import split_sampler_name

# kohya sample_sampler -> (A1111 sampler, schedule, exact?). Not exact: A1111 has no such method (DDPM,
# DPM-Solver without ++, a non-ancestral single-step DPM++) and the nearest one is used.
KOHYA_SAMPLERS: dict[str, tuple[str, str, bool]] = {
    "ddim": ("DDIM", "Automatic", True),
    "ddpm": ("DDIM", "Automatic", False),
    "pndm": ("PLMS", "Automatic", True),  # diffusers' PNDM runs the PLMS steps
    "lms": ("LMS", "Automatic", True),
    "euler": ("Euler", "Automatic", True),
    "euler_a": ("Euler a", "Automatic", True),
    "heun": ("Heun", "Automatic", True),
    "dpm_2": ("DPM2", "Automatic", True),
    "dpm_2_a": ("DPM2 a", "Automatic", True),
    "dpmsolver": ("DPM++ 2M", "Automatic", False),
    "dpmsolver++": ("DPM++ 2M", "Automatic", True),
    "dpmsingle": ("DPM++ 2M", "Automatic", False),
    "dpm++_2m": ("DPM++ 2M", "Automatic", True),
    "dpm++_sde": ("DPM++ SDE", "Automatic", True),
    "dpm++_2m_sde": ("DPM++ 2M SDE", "Automatic", True),
}
# sd-scripts' get_my_scheduler falls back to DDIM for a name it does not know.
KOHYA_FALLBACK = "ddim"
ONETRAINER_SAMPLERS: dict[str, tuple[str, str, bool]] = {
    "DDIM": ("DDIM", "Automatic", True),
    "EULER": ("Euler", "Automatic", True),
    "EULER_A": ("Euler a", "Automatic", True),
    "DPMPP": ("DPM++ 2M", "Automatic", True),
    "DPMPP_SDE": ("DPM++ SDE", "Automatic", True),
    "UNIPC": ("UniPC", "Automatic", True),
    "EULER_KARRAS": ("Euler", "Karras", True),
    "DPMPP_KARRAS": ("DPM++ 2M", "Karras", True),
    "DPMPP_SDE_KARRAS": ("DPM++ SDE", "Karras", True),
    "UNIPC_KARRAS": ("UniPC", "Karras", True),
}
KOHYA_KEYS = {"prompt": "prompt", "negative_prompt": "negative_prompt", "width": "width", "height": "height",
              "seed": "seed", "sample_steps": "steps", "scale": "cfg_scale", "sample_sampler": "sampler"}
# Keys sd-scripts knows that mean nothing for SD 1.5 txt2img (FLUX guidance, ControlNet, ...): warned, not applied.
KOHYA_IGNORED = {"guidance_scale", "controlnet_image", "cfg_trunc_ratio", "renorm_cfg", "flow_shift", "enum",
                 "frame_count"}
ONETRAINER_MARKERS = {"diffusion_steps", "noise_scheduler", "cfg_scale", "random_seed", "enabled"}
# Pieces of a .txt line, in sd-scripts' order of matching (`ss` before nothing that could shadow it: `s (\d+)`
# needs a digit after one `s`).
_TXT_OPTIONS = (("width", re.compile(r"w (\d+)", re.I), int), ("height", re.compile(r"h (\d+)", re.I), int),
                ("seed", re.compile(r"d (\d+)", re.I), int), ("steps", re.compile(r"s (\d+)", re.I), int),
                ("cfg_scale", re.compile(r"l ([\d\.]+)", re.I), float),
                ("guidance", re.compile(r"g ([\d\.]+)", re.I), None),
                ("negative_prompt", re.compile(r"n (.+)", re.I), str),
                ("sampler", re.compile(r"ss (.+)", re.I), str))


@dataclass(frozen=True)
class SamplePrompt:
    """One sample prompt; None means "the file leaves it out" (the preset or the defaults fill it)."""

    index: int  # 0-based position among the file's prompts
    prompt: str
    negative_prompt: str | None = None
    width: int | None = None
    height: int | None = None
    seed: int | None = None
    steps: int | None = None
    cfg_scale: float | None = None
    sampler: str | None = None  # A1111 name
    schedule: str | None = None
    clip_skip: int | None = None
    source_sampler: str | None = None  # the trainer's own name, for the record
    where: str = ""  # `file.txt line 3`, for messages

    def overrides(self) -> dict[str, Any]:
        """The GenerationParams fields this prompt sets."""
        skip = {"index", "source_sampler", "where"}
        return {f.name: getattr(self, f.name) for f in fields(self)
                if f.name not in skip and getattr(self, f.name) is not None}


@dataclass
class PromptFile:
    path: Path
    kind: str  # kohya-txt | kohya-toml | kohya-json | onetrainer
    prompts: list[SamplePrompt]
    warnings: list[str] = field(default_factory=list)


def _size(v: int) -> int:
    return max(64, v - v % 8)  # sd-scripts: height = max(64, height - height % 8)


def _steps(v: int) -> int:
    return max(1, min(1000, v))


def map_kohya_sampler(name: str, where: str, warnings: list[str]) -> tuple[str, str]:
    """A kohya sampler name (`euler_a`, `k_dpm_2`, `dpm++_2m_karras`, or an A1111 name) -> (sampler, schedule)."""
    raw = name.strip()
    key = raw.lower()
    key = key[2:] if key.startswith("k_") else key
    karras = key.endswith("_karras")
    key = key.removesuffix("_karras")
    if key in KOHYA_SAMPLERS:
        sampler, schedule, exact = KOHYA_SAMPLERS[key]
        how = "the same method" if exact else "the nearest A1111 sampler here"
    else:
        try:  # an A1111 name (or alias) written straight into the file means itself
            sampler, schedule = split_sampler_name(raw)
            warnings.append(f"{where}: sampler {raw!r} is an A1111 name, used as is")
            return sampler, schedule
        except InvalidParameter:
            pass
        sampler, schedule, _ = KOHYA_SAMPLERS[KOHYA_FALLBACK]
        how = "sd-scripts itself falls back to DDIM for names it does not know"
    if karras:
        schedule = "Karras"
    warnings.append(f"{where}: kohya sampler {raw!r} (a diffusers scheduler) mapped to A1111 {sampler!r}"
                    f"{'' if schedule == 'Automatic' else ' ' + schedule} ({how}); images will differ from the "
                    f"trainer's own samples")
    return sampler, schedule


def parse_prompt_line(line: str, index: int, where: str, warnings: list[str]) -> SamplePrompt:
    """One kohya prompt line with its inline options."""
    pieces = line.split(" --")
    values: dict[str, Any] = {}
    for piece in pieces[1:]:
        for key, rx, typ in _TXT_OPTIONS:
            m = rx.match(piece)
            if not m:
                continue
            if typ is None:
                warnings.append(f"{where}: --{piece.split()[0]} (embedded guidance, FLUX) ignored: SD 1.5 has none")
            else:
                try:
                    values[key] = typ(m.group(1).strip() if typ is str else m.group(1))
                except ValueError:
                    raise InvalidParameter(f"{where}: bad value in --{piece.strip()!r}") from None
            break
        else:
            if piece.strip():
                warnings.append(f"{where}: option --{piece.strip()} ignored (sd-scripts ignores it too, "
                                f"or it is not a txt2img option)")
    return _prompt(index, pieces[0].strip(), values, where, warnings, sampler_map=map_kohya_sampler)


def _prompt(index: int, prompt: str, v: dict[str, Any], where: str, warnings: list[str], *, sampler_map) -> SamplePrompt:
    if not prompt.strip():
        raise InvalidParameter(f"{where}: empty prompt")
    sampler = schedule = None
    source = v.get("sampler")
    if source:
        sampler, schedule = sampler_map(str(source), where, warnings)
    return SamplePrompt(
        index=index, prompt=prompt, negative_prompt=v.get("negative_prompt"),
        width=_size(v["width"]) if v.get("width") is not None else None,
        height=_size(v["height"]) if v.get("height") is not None else None,
        seed=v.get("seed"), steps=_steps(v["steps"]) if v.get("steps") is not None else None,
        cfg_scale=v.get("cfg_scale"), sampler=sampler, schedule=schedule, clip_skip=v.get("clip_skip"),
        source_sampler=str(source) if source else None, where=where)


def _typed(d: dict, key: str, typ, where: str):
    value = d[key]
    if typ is str:
        if not isinstance(value, str):
            raise InvalidParameter(f"{where}: {key} must be text, got {value!r}")
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidParameter(f"{where}: {key} must be a number, got {value!r}")
    if typ is int and float(value) != int(value):
        raise InvalidParameter(f"{where}: {key} must be a whole number, got {value!r}")
    return typ(value)


_KOHYA_TYPES = {"prompt": str, "negative_prompt": str, "width": int, "height": int, "seed": int, "steps": int,
                "cfg_scale": float, "sampler": str}


def _kohya_dict(d: dict, index: int, where: str, warnings: list[str]) -> SamplePrompt:
    values: dict[str, Any] = {}
    for key in d:
        if key in KOHYA_KEYS:
            field_name = KOHYA_KEYS[key]
            values[field_name] = _typed(d, key, _KOHYA_TYPES[field_name], where)
        elif key in KOHYA_IGNORED:
            warnings.append(f"{where}: {key} ignored (not an SD 1.5 txt2img setting)")
        elif key != "subset":  # sd-scripts reads keys with .get(): an unknown one is ignored there too
            warnings.append(f"{where}: unknown key {key!r} ignored; sd-scripts reads: {', '.join(KOHYA_KEYS)}")
    return _prompt(index, values.pop("prompt", ""), values, where, warnings, sampler_map=map_kohya_sampler)


def _onetrainer_sampler(name: str, where: str, warnings: list[str]) -> tuple[str, str]:
    key = name.strip().upper()
    if key not in ONETRAINER_SAMPLERS:
        raise InvalidParameter(f"{where}: unknown OneTrainer noise_scheduler {name!r}; "
                               f"known: {', '.join(ONETRAINER_SAMPLERS)}")
    sampler, schedule, exact = ONETRAINER_SAMPLERS[key]
    how = "the same method" if exact else "the nearest A1111 sampler here"
    warnings.append(f"{where}: OneTrainer noise_scheduler {name!r} (a diffusers scheduler) mapped to A1111 "
                    f"{sampler!r}{'' if schedule == 'Automatic' else ' ' + schedule} ({how})")
    return sampler, schedule


_OT_KEYS = {"prompt": ("prompt", str), "negative_prompt": ("negative_prompt", str), "width": ("width", int),
            "height": ("height", int), "seed": ("seed", int), "diffusion_steps": ("steps", int),
            "cfg_scale": ("cfg_scale", float), "noise_scheduler": ("sampler", str)}


def _onetrainer_dict(d: dict, index: int, where: str, warnings: list[str]) -> SamplePrompt:
    values: dict[str, Any] = {}
    for key, (field_name, typ) in _OT_KEYS.items():
        if key in d and d[key] is not None:
            values[field_name] = _typed(d, key, typ, where)
    if d.get("random_seed"):
        values.pop("seed", None)  # OneTrainer draws a new seed; we draw one per job and keep it
    skip = d.get("text_encoder_1_layer_skip")
    if skip is not None:
        values["clip_skip"] = int(_typed(d, "text_encoder_1_layer_skip", int, where)) + 1  # skip 1 layer = clip skip 2
    for key in ("sample_inpainting",):
        if d.get(key):
            warnings.append(f"{where}: {key} ignored (txt2img only)")
    return _prompt(index, values.pop("prompt", ""), values, where, warnings, sampler_map=_onetrainer_sampler)


def load_prompt_file(path: str | Path) -> PromptFile:
    """Read a sample-prompt file (kohya .txt/.toml/.json, OneTrainer samples.json); InvalidParameter naming the
    file, line or entry for anything unreadable."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise InvalidParameter(f"cannot read prompt file {path}: {e}") from None
    return parse_prompt_text(text, path)


def parse_prompt_text(text: str, path: str | Path) -> PromptFile:
    """A prompt file's text; `path` names it (its suffix decides the format, its name shows in messages)."""
    path = Path(path)
    warnings: list[str] = []
    suffix = path.suffix.lower()
    prompts: list[SamplePrompt] = []
    if suffix == ".txt":
        kind = "kohya-txt"
        for no, raw in enumerate(text.splitlines(), 1):
            line = raw.strip()
            if not line or raw[0] == "#":  # sd-scripts tests line[0], not the stripped line
                continue
            prompts.append(parse_prompt_line(line, len(prompts), f"{path.name} line {no}", warnings))
    elif suffix == ".toml":
        kind = "kohya-toml"
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise InvalidParameter(f"{path.name}: malformed TOML: {e}") from None
        table = data.get("prompt")
        if not isinstance(table, dict) or not isinstance(table.get("subset"), list):
            raise InvalidParameter(f"{path.name}: sd-scripts reads a [prompt] table with [[prompt.subset]] entries")
        defaults = {k: v for k, v in table.items() if k != "subset"}
        for i, sub in enumerate(table["subset"]):
            if not isinstance(sub, dict):
                raise InvalidParameter(f"{path.name}: prompt.subset {i + 1} is not a table")
            prompts.append(_kohya_dict({**defaults, **sub}, i, f"{path.name} subset {i + 1}", warnings))
    elif suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise InvalidParameter(f"{path.name}: malformed JSON: {e}") from None
        if not isinstance(data, list):
            raise InvalidParameter(f"{path.name}: expected a JSON list of prompts")
        onetrainer = any(isinstance(d, dict) and ONETRAINER_MARKERS & set(d) for d in data)
        kind = "onetrainer" if onetrainer else "kohya-json"
        for i, item in enumerate(data):
            where = f"{path.name} entry {i + 1}"
            if isinstance(item, str):
                if item.strip():
                    prompts.append(parse_prompt_line(item.strip(), len(prompts), where, warnings))
            elif isinstance(item, dict):
                if onetrainer:
                    if item.get("enabled", True) is False:
                        continue
                    prompts.append(_onetrainer_dict(item, len(prompts), where, warnings))
                else:
                    prompts.append(_kohya_dict(item, len(prompts), where, warnings))
            else:
                raise InvalidParameter(f"{where}: expected a prompt line or an object, got {item!r}")
    else:
        raise InvalidParameter(f"prompt file {path.name}: unknown kind {suffix!r}; expected .txt, .toml or .json "
                               f"(kohya sd-scripts) or OneTrainer's samples.json")
    if not prompts:
        raise InvalidParameter(f"prompt file {path.name} holds no prompts")
    return PromptFile(path=path, kind=kind, prompts=prompts, warnings=warnings)
