"""A1111's "timesteps" samplers (sd_samplers_timesteps_impl): DDIM, DDIM CFG++ and PLMS on the raw eps model.

Each is `fn(model, x, timesteps, *, alphas_cumprod, noise_fn, callback, should_stop, ...)`: `model(x, t) -> eps` on
unscaled latents, `timesteps` ascending (ddim_timesteps); they run len(timesteps) - 1 steps from the top timestep
and return the latent at the lowest one, exactly as A1111 does (20 steps -> 19 UNet evaluations, result at t=1).
"""
from __future__ import annotations

import torch

from .common import Steps


def _tables(alphas_cumprod, timesteps, x):
    ac = alphas_cumprod.to(timesteps.device) if alphas_cumprod.device != timesteps.device else alphas_cumprod
    alphas = ac[timesteps]
    alphas_prev = ac[torch.nn.functional.pad(timesteps[:-1], pad=(1, 0))].to(
        torch.float64 if x.device.type != "mps" else torch.float32)
    return alphas, alphas_prev, torch.sqrt(1 - alphas)


def _ddim_sigmas(eta, alphas, alphas_prev):
    # A1111 mixes numpy float64 and torch here: (1 - alphas) is rounded in the alphas' own dtype first.
    a, ap = alphas.cpu(), alphas_prev.cpu().double()
    return eta * torch.sqrt((1 - ap) / (1 - a).double() * (1 - a.double() / ap))


def _ddim_loop(model, x, timesteps, alphas_cumprod, noise_fn, callback, should_stop, eta, direction):
    alphas, alphas_prev, sqrt_one_minus_alphas = _tables(alphas_cumprod, timesteps, x)
    sigmas = _ddim_sigmas(eta, alphas, alphas_prev)
    run = Steps(x, len(timesteps) - 1, callback, should_stop)
    s_in = x.new_ones([x.shape[0]])
    s_x = x.new_ones((x.shape[0], 1, 1, 1))
    for i in range(len(timesteps) - 1):
        index = len(timesteps) - 1 - i
        e_t = run.model(model, x, timesteps[index].item() * s_in)
        a_t = alphas[index].item() * s_x
        a_prev = alphas_prev[index].item() * s_x
        sigma_t = sigmas[index].item() * s_x
        sqrt_one_minus_at = sqrt_one_minus_alphas[index].item() * s_x
        pred_x0 = (x - sqrt_one_minus_at * e_t) / a_t.sqrt()
        dir_xt = (1. - a_prev - sigma_t ** 2).sqrt() * direction(e_t)
        x = a_prev.sqrt() * pred_x0 + dir_xt
        if eta:  # A1111 draws (and multiplies by 0) at eta 0; skipping the draw changes nothing
            x = x + sigma_t * noise_fn()
        run.report(i, x, pred_x0)
    return x


@torch.no_grad()
def sample_ddim(model, x, timesteps, *, alphas_cumprod, noise_fn=None, noise_sampler=None, callback=None,
                should_stop=None, eta=0.0, is_img2img=False):
    return _ddim_loop(model, x, timesteps, alphas_cumprod, noise_fn, callback, should_stop, eta, lambda e: e)


@torch.no_grad()
def sample_ddim_cfgpp(model, x, timesteps, *, alphas_cumprod, noise_fn=None, noise_sampler=None, callback=None,
                      should_stop=None, eta=0.0, is_img2img=False):
    """DDIM CFG++ (Chung et al. 2024): the CFG model runs at cfg_scale / 12.5 (SamplerSpec.cfg_scale_multiplier)
    and the step direction is the unconditional eps, which the CFG model keeps as `last_noise_uncond`."""
    return _ddim_loop(model, x, timesteps, alphas_cumprod, noise_fn, callback, should_stop, eta,
                      lambda e: _uncond(model, e))


@torch.no_grad()
def sample_plms(model, x, timesteps, *, alphas_cumprod, noise_fn=None, noise_sampler=None, callback=None,
                should_stop=None, is_img2img=False):
    alphas, alphas_prev, sqrt_one_minus_alphas = _tables(alphas_cumprod, timesteps, x)
    run = Steps(x, len(timesteps) - 1, callback, should_stop)
    s_in = x.new_ones([x.shape[0]])
    s_x = x.new_ones((x.shape[0], 1, 1, 1))
    old_eps = []

    def get_x_prev_and_pred_x0(e_t, index):
        a_t = alphas[index].item() * s_x
        a_prev = alphas_prev[index].item() * s_x
        sqrt_one_minus_at = sqrt_one_minus_alphas[index].item() * s_x
        pred_x0 = (x - sqrt_one_minus_at * e_t) / a_t.sqrt()
        dir_xt = (1. - a_prev).sqrt() * e_t
        return a_prev.sqrt() * pred_x0 + dir_xt, pred_x0

    for i in range(len(timesteps) - 1):
        index = len(timesteps) - 1 - i
        ts = timesteps[index].item() * s_in
        t_next = timesteps[max(index - 1, 0)].item() * s_in
        e_t = run.model(model, x, ts)
        if len(old_eps) == 0:  # pseudo improved Euler
            x_prev, pred_x0 = get_x_prev_and_pred_x0(e_t, index)
            e_t_next = run.model(model, x_prev, t_next)
            e_t_prime = (e_t + e_t_next) / 2
        elif len(old_eps) == 1:
            e_t_prime = (3 * e_t - old_eps[-1]) / 2
        elif len(old_eps) == 2:
            e_t_prime = (23 * e_t - 16 * old_eps[-1] + 5 * old_eps[-2]) / 12
        else:
            e_t_prime = (55 * e_t - 59 * old_eps[-1] + 37 * old_eps[-2] - 9 * old_eps[-3]) / 24
        x_prev, pred_x0 = get_x_prev_and_pred_x0(e_t_prime, index)
        old_eps.append(e_t)
        if len(old_eps) >= 4:
            old_eps.pop(0)
        x = x_prev
        run.report(i, x, pred_x0)
    return x


def _uncond(model, e_t):
    # A model without guidance (no CFG wrapper) is its own unconditional prediction.
    last = getattr(model, "last_noise_uncond", None)
    return e_t if last is None else last
