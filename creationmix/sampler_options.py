"""Which sampler options each A1111 sampler and schedule type takes: the one table both the sampling code (what
to pass) and the infotext writer (what to write back) read. Torch-free.

A1111 passes an option to a sampler only when the k-diffusion function takes it (`sampler_extra_params` and the
`eta` signature check) and writes its infotext key only when it differs from the default; a key written for an
option that a sampler never saw would claim something that did not happen, so we write exactly what ran.
"""
from __future__ import annotations

from .params import SAMPLERS, TIMESTEP_SAMPLERS, GenerationParams, resolve_schedule

# A1111 KDiffusionSampler: `eta` for every function with an eta parameter (default opts.eta_ancestral = 1).
ETA_SAMPLERS = frozenset({"Euler a", "DPM2 a", "DPM++ 2S a", "DPM++ SDE", "DPM++ 2M SDE", "DPM++ 2M SDE Heun",
                          "DPM++ 3M SDE", "DPM fast", "DPM adaptive"})
ETA_DDIM_SAMPLERS = frozenset({"DDIM", "DDIM CFG++"})
# sampler_extra_params: churn for Euler/Heun/DPM2; s_noise also for these (Euler a and Restart take none).
CHURN_SAMPLERS = frozenset({"Euler", "Heun", "DPM2"})
S_NOISE_SAMPLERS = CHURN_SAMPLERS | frozenset({"DPM fast", "DPM2 a", "DPM++ 2S a", "DPM++ SDE", "DPM++ 2M SDE",
                                               "DPM++ 2M SDE Heun", "DPM++ 3M SDE"})
assert (ETA_SAMPLERS | ETA_DDIM_SAMPLERS | S_NOISE_SAMPLERS) <= set(SAMPLERS)

# Schedule types that read sigma_min/sigma_max, and the rho each takes (A1111 Scheduler.default_rho).
SCHEDULES_WITH_RANGE = frozenset({"Karras", "Exponential", "Polyexponential", "SGM Uniform", "KL Optimal",
                                  "Normal", "Beta"})
SCHEDULE_DEFAULT_RHO: dict[str, float] = {"Karras": 7.0, "Polyexponential": 1.0}

# GenerationParams field -> (infotext key, A1111 default). One row per option key.
OPTION_KEYS: dict[str, tuple[str, object]] = {
    "eta": ("Eta", 1.0),
    "eta_ddim": ("Eta DDIM", 0.0),
    "s_churn": ("Sigma churn", 0.0),
    "s_tmin": ("Sigma tmin", 0.0),
    "s_tmax": ("Sigma tmax", 0.0),
    "s_noise": ("Sigma noise", 1.0),
    "sigma_max": ("Schedule max sigma", 0.0),
    "sigma_min": ("Schedule min sigma", 0.0),
    "rho": ("Schedule rho", 0.0),
    "beta_alpha": ("Beta schedule alpha", 0.6),
    "beta_beta": ("Beta schedule beta", 0.6),
    "s_min_uncond": ("NGMS", 0.0),
    "pad_conds": ("Pad conds", False),
    "pad_conds_v0": ("Pad conds v0", False),
    "downcast_alphas_cumprod": ("Downcast alphas_cumprod", False),
    "token_merging_ratio": ("Token merging ratio", 0.0),
    "token_merging_ratio_hr": ("Token merging ratio hr", 0.0),
}


def sampler_takes(sampler: str) -> frozenset[str]:
    """The sampler-level option fields `sampler` is run with."""
    out = set()
    if sampler in ETA_SAMPLERS:
        out.add("eta")
    if sampler in ETA_DDIM_SAMPLERS:
        out.add("eta_ddim")
    if sampler in CHURN_SAMPLERS:
        out |= {"s_churn", "s_tmin", "s_tmax"}
    if sampler in S_NOISE_SAMPLERS:
        out.add("s_noise")
    return frozenset(out)


def schedule_takes(sampler: str, schedule: str) -> frozenset[str]:
    """The schedule option fields a pass of `sampler` on `schedule` reads (none for timestep samplers, whose
    schedule is the model's timesteps, nor for Automatic that A1111 leaves to k-diffusion's own discretization)."""
    if sampler in TIMESTEP_SAMPLERS:
        return frozenset()
    concrete = resolve_schedule(sampler, schedule)
    if schedule == "Automatic" and concrete == "Uniform":
        return frozenset()
    out = set()
    if concrete in SCHEDULES_WITH_RANGE:
        out |= {"sigma_min", "sigma_max"}
    if concrete in SCHEDULE_DEFAULT_RHO:
        out.add("rho")
    if concrete == "Beta":
        out |= {"beta_alpha", "beta_beta"}
    return frozenset(out)


def _passes(p: GenerationParams) -> list[tuple[str, str]]:
    passes = [(p.sampler, p.schedule)]
    if p.enable_hires:
        passes.append((p.hires_sampler or p.sampler, p.hires_schedule or p.schedule))
    return passes


def rho_applies(schedule: str, rho: float) -> bool:
    return rho != 0 and schedule in SCHEDULE_DEFAULT_RHO and rho != SCHEDULE_DEFAULT_RHO[schedule]


def applied_options(p: GenerationParams) -> dict[str, object]:
    """{field: value} of the options that change what `p` runs: the keys its infotext carries."""
    out: dict[str, object] = {}
    for sampler, schedule in _passes(p):
        takes = sampler_takes(sampler) | schedule_takes(sampler, schedule)
        concrete = resolve_schedule(sampler, schedule)
        for name in takes:
            value, default = getattr(p, name), OPTION_KEYS[name][1]
            if name == "rho":
                if rho_applies(concrete, value):
                    out[name] = value
            elif name in ("beta_alpha", "beta_beta") or value != default:
                out[name] = value  # A1111 always writes the beta distribution when Beta runs
    for name in ("s_min_uncond", "pad_conds", "pad_conds_v0", "downcast_alphas_cumprod", "token_merging_ratio"):
        if getattr(p, name) != OPTION_KEYS[name][1]:
            out[name] = getattr(p, name)
    if p.enable_hires and p.token_merging_ratio_hr != 0:
        out["token_merging_ratio_hr"] = p.token_merging_ratio_hr
    return out
