"""A1111 1.10's request/response schemas (modules/api/models.py), written out field by field.

A1111 builds its txt2img model from `StableDiffusionProcessingTxt2Img.__init__`: every field optional, unknown
fields ignored (pydantic's default). We keep both rules so every client that talks to A1111 talks to us; what
a field *means* here, and which values we refuse, is decided in `mapping.py`, not here.
"""
from __future__ import annotations

from typing import Any, Optional

from pydantic import BaseModel, ConfigDict, Field


class Txt2ImgRequest(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True, populate_by_name=True)

    prompt: Optional[str] = ""
    negative_prompt: Optional[str] = ""
    styles: Optional[list[str]] = None
    seed: Optional[int] = -1
    subseed: Optional[int] = -1
    subseed_strength: Optional[float] = 0
    seed_resize_from_h: Optional[int] = -1
    seed_resize_from_w: Optional[int] = -1
    sampler_name: Optional[str] = None
    scheduler: Optional[str] = None
    batch_size: Optional[int] = 1
    n_iter: Optional[int] = 1
    steps: Optional[int] = 50
    cfg_scale: Optional[float] = 7.0
    width: Optional[int] = 512
    height: Optional[int] = 512
    restore_faces: Optional[bool] = None
    tiling: Optional[bool] = None
    do_not_save_samples: Optional[bool] = False
    do_not_save_grid: Optional[bool] = False
    eta: Optional[float] = None
    denoising_strength: Optional[float] = 0.75
    s_min_uncond: Optional[float] = None
    s_churn: Optional[float] = None
    s_tmax: Optional[float] = None
    s_tmin: Optional[float] = None
    s_noise: Optional[float] = None
    override_settings: Optional[dict[str, Any]] = None
    override_settings_restore_afterwards: Optional[bool] = True
    refiner_checkpoint: Optional[str] = None
    refiner_switch_at: Optional[float] = None
    disable_extra_networks: Optional[bool] = False
    firstpass_image: Optional[str] = None
    comments: Optional[dict[str, Any]] = None
    enable_hr: Optional[bool] = False
    firstphase_width: Optional[int] = 0
    firstphase_height: Optional[int] = 0
    hr_scale: Optional[float] = 2.0
    hr_upscaler: Optional[str] = None
    hr_second_pass_steps: Optional[int] = 0
    hr_resize_x: Optional[int] = 0
    hr_resize_y: Optional[int] = 0
    hr_checkpoint_name: Optional[str] = None
    hr_sampler_name: Optional[str] = None
    hr_scheduler: Optional[str] = None
    hr_prompt: Optional[str] = ""
    hr_negative_prompt: Optional[str] = ""
    hr_additional_modules: Optional[list[str]] = None
    force_task_id: Optional[str] = None
    sampler_index: Optional[str] = "Euler"
    script_name: Optional[str] = None
    script_args: Optional[list[Any]] = Field(default_factory=list)
    send_images: Optional[bool] = True
    save_images: Optional[bool] = False
    alwayson_scripts: Optional[dict[str, Any]] = Field(default_factory=dict)
    infotext: Optional[str] = None


class TextToImageResponse(BaseModel):
    images: Optional[list[str]] = Field(default=None, description="The generated images, base64 PNGs with "
                                                                  "their infotext in the `parameters` chunk.")
    parameters: dict
    info: str


class PNGInfoRequest(BaseModel):
    image: str = Field(description="The base64 encoded image (PNG, JPEG or WebP; a data: URL is accepted)")


class PNGInfoResponse(BaseModel):
    info: str
    items: dict
    parameters: dict


class ProgressResponse(BaseModel):
    progress: float
    eta_relative: float
    state: dict
    current_image: Optional[str] = None
    textinfo: Optional[str] = None


class PreviewsRequest(BaseModel):
    """A LoRA-library previews job: `<stem>.preview.png` beside each LoRA, from a preset card's LoRA slot."""
    model_config = ConfigDict(extra="forbid", strict=True)

    preset: str = Field(default="lora-preview", description="a preset card id with a <lora:{lora}:{weight}> slot")
    names: Optional[list[str]] = Field(default=None, description="LoRA names (default: the whole library)")
    overwrite: bool = False
    append_triggers: bool = False
    overrides: dict[str, Any] = Field(default_factory=dict,
                                      description="GenerationParams fields to override (e.g. width, steps)")


class JobCreated(BaseModel):
    id: str
    status: str
