"""The server settings A1111 clients read and write through /sdapi/v1/options.

Settable ones are the defaults of every API request (override_settings beat them for one request); switching
`sd_model_checkpoint` / `sd_vae` loads the model at once, in the generation queue. Read-only ones are reported
so clients that read them work; writing them is accepted only with their current value. Kept in memory.
"""
from __future__ import annotations

import threading
from typing import Any, Optional

from pydantic import BaseModel, ConfigDict

from ..errors import InvalidParameter
from ..params import GenerationParams
from .errors import ApiError
from .mapping import GP_FIELDS, OPTION_NEUTRAL, OPTION_TARGETS

# A1111's defaults (not the checkpoint card's: same request, same pixels as A1111).
DEFAULTS: dict[str, Any] = {
    "sd_model_checkpoint": None,
    "sd_vae": "Automatic",
    "CLIP_stop_at_last_layers": 1,
    "randn_source": "GPU",
    "eta_noise_seed_delta": 0,
    "emphasis": "Original",
}


class OptionsUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    sd_model_checkpoint: Optional[str] = None
    sd_vae: Optional[str] = None
    CLIP_stop_at_last_layers: Optional[int] = None
    randn_source: Optional[str] = None
    eta_noise_seed_delta: Optional[int] = None
    emphasis: Optional[str] = None
    # read-only, reported for clients
    sd_checkpoint_hash: Optional[str] = None
    samples_format: Optional[str] = None
    samples_save: Optional[bool] = None
    outdir_txt2img_samples: Optional[str] = None
    live_previews_enable: Optional[bool] = None
    show_progress_every_n_steps: Optional[int] = None
    enable_pnginfo: Optional[bool] = None
    sd_lora: Optional[str] = None


def check_value(key: str, value: Any) -> None:
    """Validate one settable option through GenerationParams (its field's own check and message)."""
    target = OPTION_TARGETS[key]
    if target in ("checkpoint", "vae"):
        return  # resolved against the folders by the caller
    if target not in GP_FIELDS:
        if value not in OPTION_NEUTRAL.get(key, ()):
            raise ApiError(422, f"{key} {value!r} is not supported yet; allowed: "
                                f"{', '.join(map(repr, OPTION_NEUTRAL.get(key, ())))}", field=key)
        return
    try:
        GenerationParams(**{target: value})
    except InvalidParameter as e:
        raise ApiError(422, f"{key}: {e}", field=key) from e


class Options:
    def __init__(self, backend):
        self.backend = backend
        self._values = dict(DEFAULTS)
        self._lock = threading.Lock()

    def settable(self) -> dict[str, Any]:
        with self._lock:
            values = dict(self._values)
        values["sd_model_checkpoint"] = self.backend.default_checkpoint()
        return values

    def read_only(self, values: dict[str, Any]) -> dict[str, Any]:
        sha = ""
        name = values.get("sd_model_checkpoint")
        for e in self.backend.checkpoints():
            if e.name == name:
                sha = e.sha256 or ""
        return {"sd_checkpoint_hash": sha, "samples_format": "png", "samples_save": True,
                "outdir_txt2img_samples": str(self.backend.folders.outputs_dir / "txt2img-images"),
                "live_previews_enable": True, "show_progress_every_n_steps": 4, "enable_pnginfo": True,
                "sd_lora": "None"}

    def all(self) -> dict[str, Any]:
        values = self.settable()
        titles = {e.name: e.title for e in self.backend.checkpoints()}
        shown = dict(values, sd_model_checkpoint=titles.get(values["sd_model_checkpoint"],
                                                            values["sd_model_checkpoint"]))
        return {**shown, **self.read_only(values)}

    def for_request(self) -> dict[str, Any]:
        """What to_params takes: settable values by name, plus the read-only ones (to compare overrides)."""
        values = self.settable()
        return {**values, **self.read_only(values)}

    def update(self, changes: dict[str, Any], *, load: bool = True) -> None:
        """Validate every change first (nothing applied on error), then switch the model if asked, then store."""
        current = self.for_request()
        new: dict[str, Any] = {}
        for key, value in changes.items():
            if value is None:
                continue
            if key not in OPTION_TARGETS:
                if value != current.get(key):
                    raise ApiError(422, f"{key} is read-only here (it is {current.get(key)!r})", field=key)
                continue
            if key == "sd_model_checkpoint":
                value = self.backend.resolve_checkpoint(value)
            elif key == "sd_vae":
                value = self.backend.resolve_vae(value)
            else:
                check_value(key, value)
            new[key] = value
        if load and ("sd_model_checkpoint" in new or "sd_vae" in new):
            ckpt = new.get("sd_model_checkpoint", current["sd_model_checkpoint"])
            self.backend.load_model(ckpt, new.get("sd_vae", current["sd_vae"]))
        new.pop("sd_model_checkpoint", None)  # the service's selection is the one source (UI and API alike)
        with self._lock:
            self._values.update(new)
