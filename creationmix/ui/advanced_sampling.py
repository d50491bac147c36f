"""The "Advanced sampling" accordion: A1111's sampler settings that infotexts carry (Eta, Sigma churn, schedule
overrides, NGMS, Pad conds, token merging...). Widgets are registered by GenerationParams field name; the
hires schedule choices come from params.SCHEDULES (the one schedule table)."""
from __future__ import annotations

import gradio as gr

from ..params import SCHEDULES, GenerationParams
from ..sampler_options import OPTION_KEYS
from .fields import SAME_SCHEDULE

# field -> (minimum, maximum, step): A1111's slider ranges; number boxes where A1111 has them (0 = unset).
_SLIDERS = {
    "eta": (0, 1, 0.01), "eta_ddim": (0, 1, 0.01), "s_churn": (0, 100, 0.01), "s_tmin": (0, 10, 0.01),
    "s_tmax": (0, 999, 0.01), "s_noise": (0, 1.1, 0.001), "beta_alpha": (0.01, 1, 0.01),
    "beta_beta": (0.01, 1, 0.01), "s_min_uncond": (0, 15, 0.01), "token_merging_ratio": (0, 0.9, 0.1),
    "token_merging_ratio_hr": (0, 0.9, 0.1),
}
_NUMBERS = ("sigma_min", "sigma_max", "rho")
_CHECKBOXES = ("pad_conds", "pad_conds_v0", "downcast_alphas_cumprod")


def add_advanced_sampling(f: dict, d: GenerationParams) -> None:
    """Create the accordion's widgets into `f` (field name -> component), with `d`'s values."""
    with gr.Accordion("Advanced sampling", open=False, elem_id="cm_advanced_sampling"):
        f["hires_schedule"] = gr.Dropdown([SAME_SCHEDULE, *SCHEDULES], value=d.hires_schedule or SAME_SCHEDULE,
                                          label="Hires schedule type", elem_id="cm_hires_schedule")
        with gr.Row():
            for name in ("eta", "eta_ddim", "s_noise"):
                f[name] = _slider(name, d)
        with gr.Row():
            for name in ("s_churn", "s_tmin", "s_tmax"):
                f[name] = _slider(name, d)
        with gr.Row():
            for name in _NUMBERS:
                f[name] = gr.Number(getattr(d, name), label=f"{OPTION_KEYS[name][0]} (0: default)",
                                    elem_id=f"cm_{name}")
        with gr.Row():
            for name in ("beta_alpha", "beta_beta", "s_min_uncond"):
                f[name] = _slider(name, d)
        with gr.Row():
            for name in ("token_merging_ratio", "token_merging_ratio_hr"):
                f[name] = _slider(name, d)
            for name in _CHECKBOXES:
                f[name] = gr.Checkbox(getattr(d, name), label=OPTION_KEYS[name][0], elem_id=f"cm_{name}")


def _slider(name: str, d: GenerationParams):
    lo, hi, step = _SLIDERS[name]
    return gr.Slider(lo, hi, value=getattr(d, name), step=step, label=OPTION_KEYS[name][0], elem_id=f"cm_{name}")
