"""k-diffusion's samplers as A1111 1.10 pins them (k-diffusion ab527a9), plus A1111's Restart and LCM loops.

Each is `fn(model, x, sigmas, *, noise_fn=None, noise_sampler=None, callback=None, should_stop=None, **options)`:
`model(x, sigma) -> denoised` with sigma of shape (batch,); `noise_fn()` the next ancestral noise (A1111's
ImageRNG.next, which it substitutes for torch.randn_like); `noise_sampler(sigma, sigma_next)` the Brownian noise of
the SDE samplers. Operation order and dtypes follow the reference line by line: they decide the pixels.
"""
from __future__ import annotations


import torch

from .common import (Steps, default_noise_sampler, get_ancestral_step, need_brownian, sigma_fn, t_fn, to_d)


def _churn(x, sigmas, i, noise_fn, s_churn, s_tmin, s_tmax, s_noise):
    """Karras' churn (Euler, Heun, DPM2): k-diffusion draws the noise every step, used or not, so with churn on
    we draw every step too (the draws are A1111's ImageRNG sequence); at s_churn 0 nothing is drawn or added."""
    if not s_churn:
        return x, sigmas[i]
    gamma = min(s_churn / (len(sigmas) - 1), 2 ** 0.5 - 1) if s_tmin <= sigmas[i] <= s_tmax else 0.
    eps = default_noise_sampler(noise_fn)(None, None) * s_noise
    sigma_hat = sigmas[i] * (gamma + 1)
    if gamma > 0:
        x = x + eps * (sigma_hat ** 2 - sigmas[i] ** 2) ** 0.5
    return x, sigma_hat


@torch.no_grad()
def sample_euler(model, x, sigmas, *, noise_fn=None, noise_sampler=None, callback=None, should_stop=None,
                 s_churn=0., s_tmin=0., s_tmax=float("inf"), s_noise=1.):
    run = Steps(x, len(sigmas) - 1, callback, should_stop)
    s_in = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        x, sigma_hat = _churn(x, sigmas, i, noise_fn, s_churn, s_tmin, s_tmax, s_noise)
        denoised = run.model(model, x, sigma_hat * s_in)
        d = to_d(x, sigma_hat, denoised)
        run.report(i, x, denoised)
        dt = sigmas[i + 1] - sigma_hat
        x = x + d * dt
    return x


@torch.no_grad()
def sample_euler_ancestral(model, x, sigmas, *, noise_fn=None, noise_sampler=None, callback=None,
                           should_stop=None, eta=1.0, s_noise=1.0):
    noise_sampler = default_noise_sampler(noise_fn) if noise_sampler is None else noise_sampler
    run = Steps(x, len(sigmas) - 1, callback, should_stop)
    s_in = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        denoised = run.model(model, x, sigmas[i] * s_in)
        sigma_down, sigma_up = get_ancestral_step(sigmas[i], sigmas[i + 1], eta=eta)
        run.report(i, x, denoised)
        d = to_d(x, sigmas[i], denoised)
        dt = sigma_down - sigmas[i]
        x = x + d * dt
        if sigmas[i + 1] > 0:
            x = x + noise_sampler(sigmas[i], sigmas[i + 1]) * s_noise * sigma_up
    return x


@torch.no_grad()
def sample_heun(model, x, sigmas, *, noise_fn=None, noise_sampler=None, callback=None, should_stop=None,
                s_churn=0., s_tmin=0., s_tmax=float("inf"), s_noise=1.):
    run = Steps(x, len(sigmas) - 1, callback, should_stop)
    s_in = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        x, sigma_hat = _churn(x, sigmas, i, noise_fn, s_churn, s_tmin, s_tmax, s_noise)
        denoised = run.model(model, x, sigma_hat * s_in)
        d = to_d(x, sigma_hat, denoised)
        run.report(i, x, denoised)
        dt = sigmas[i + 1] - sigma_hat
        if sigmas[i + 1] == 0:
            x = x + d * dt
        else:
            x_2 = x + d * dt
            denoised_2 = run.model(model, x_2, sigmas[i + 1] * s_in)
            d_2 = to_d(x_2, sigmas[i + 1], denoised_2)
            d_prime = (d + d_2) / 2
            x = x + d_prime * dt
    return x


@torch.no_grad()
def sample_dpm_2(model, x, sigmas, *, noise_fn=None, noise_sampler=None, callback=None, should_stop=None,
                 s_churn=0., s_tmin=0., s_tmax=float("inf"), s_noise=1.):
    run = Steps(x, len(sigmas) - 1, callback, should_stop)
    s_in = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        x, sigma_hat = _churn(x, sigmas, i, noise_fn, s_churn, s_tmin, s_tmax, s_noise)
        denoised = run.model(model, x, sigma_hat * s_in)
        d = to_d(x, sigma_hat, denoised)
        run.report(i, x, denoised)
        if sigmas[i + 1] == 0:
            dt = sigmas[i + 1] - sigma_hat
            x = x + d * dt
        else:
            sigma_mid = sigma_hat.log().lerp(sigmas[i + 1].log(), 0.5).exp()
            dt_1 = sigma_mid - sigma_hat
            dt_2 = sigmas[i + 1] - sigma_hat
            x_2 = x + d * dt_1
            denoised_2 = run.model(model, x_2, sigma_mid * s_in)
            d_2 = to_d(x_2, sigma_mid, denoised_2)
            x = x + d_2 * dt_2
    return x


@torch.no_grad()
def sample_dpm_2_ancestral(model, x, sigmas, *, noise_fn=None, noise_sampler=None, callback=None,
                           should_stop=None, eta=1., s_noise=1.):
    noise_sampler = default_noise_sampler(noise_fn) if noise_sampler is None else noise_sampler
    run = Steps(x, len(sigmas) - 1, callback, should_stop)
    s_in = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        denoised = run.model(model, x, sigmas[i] * s_in)
        sigma_down, sigma_up = get_ancestral_step(sigmas[i], sigmas[i + 1], eta=eta)
        run.report(i, x, denoised)
        d = to_d(x, sigmas[i], denoised)
        if sigma_down == 0:
            dt = sigma_down - sigmas[i]
            x = x + d * dt
        else:
            sigma_mid = sigmas[i].log().lerp(sigma_down.log(), 0.5).exp()
            dt_1 = sigma_mid - sigmas[i]
            dt_2 = sigma_down - sigmas[i]
            x_2 = x + d * dt_1
            denoised_2 = run.model(model, x_2, sigma_mid * s_in)
            d_2 = to_d(x_2, sigma_mid, denoised_2)
            x = x + d_2 * dt_2
            x = x + noise_sampler(sigmas[i], sigmas[i + 1]) * s_noise * sigma_up
    return x


def linear_multistep_coeff(order, t, i, j):
    from scipy import integrate  # only LMS needs scipy

    if order - 1 > i:
        raise ValueError(f"Order {order} too high for step {i}")

    def fn(tau):
        prod = 1.
        for k in range(order):
            if j == k:
                continue
            prod *= (tau - t[i - k]) / (t[i - j] - t[i - k])
        return prod

    return integrate.quad(fn, t[i], t[i + 1], epsrel=1e-4)[0]


@torch.no_grad()
def sample_lms(model, x, sigmas, *, noise_fn=None, noise_sampler=None, callback=None, should_stop=None, order=4):
    run = Steps(x, len(sigmas) - 1, callback, should_stop)
    s_in = x.new_ones([x.shape[0]])
    sigmas_cpu = sigmas.detach().cpu().numpy()
    ds = []
    for i in range(len(sigmas) - 1):
        denoised = run.model(model, x, sigmas[i] * s_in)
        d = to_d(x, sigmas[i], denoised)
        ds.append(d)
        if len(ds) > order:
            ds.pop(0)
        run.report(i, x, denoised)
        cur_order = min(i + 1, order)
        coeffs = [linear_multistep_coeff(cur_order, sigmas_cpu, i, j) for j in range(cur_order)]
        x = x + sum(coeff * d for coeff, d in zip(coeffs, reversed(ds)))
    return x


@torch.no_grad()
def sample_dpmpp_2s_ancestral(model, x, sigmas, *, noise_fn=None, noise_sampler=None, callback=None,
                              should_stop=None, eta=1., s_noise=1.):
    noise_sampler = default_noise_sampler(noise_fn) if noise_sampler is None else noise_sampler
    run = Steps(x, len(sigmas) - 1, callback, should_stop)
    s_in = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        denoised = run.model(model, x, sigmas[i] * s_in)
        sigma_down, sigma_up = get_ancestral_step(sigmas[i], sigmas[i + 1], eta=eta)
        run.report(i, x, denoised)
        if sigma_down == 0:
            d = to_d(x, sigmas[i], denoised)
            dt = sigma_down - sigmas[i]
            x = x + d * dt
        else:
            t, t_next = t_fn(sigmas[i]), t_fn(sigma_down)
            r = 1 / 2
            h = t_next - t
            s = t + r * h
            x_2 = (sigma_fn(s) / sigma_fn(t)) * x - (-h * r).expm1() * denoised
            denoised_2 = run.model(model, x_2, sigma_fn(s) * s_in)
            x = (sigma_fn(t_next) / sigma_fn(t)) * x - (-h).expm1() * denoised_2
        if sigmas[i + 1] > 0:
            x = x + noise_sampler(sigmas[i], sigmas[i + 1]) * s_noise * sigma_up
    return x


@torch.no_grad()
def sample_dpmpp_2m(model, x, sigmas, *, noise_fn=None, noise_sampler=None, callback=None, should_stop=None):
    run = Steps(x, len(sigmas) - 1, callback, should_stop)
    s_in = x.new_ones([x.shape[0]])
    old_denoised = None
    for i in range(len(sigmas) - 1):
        denoised = run.model(model, x, sigmas[i] * s_in)
        run.report(i, x, denoised)
        t, t_next = t_fn(sigmas[i]), t_fn(sigmas[i + 1])
        h = t_next - t
        if old_denoised is None or sigmas[i + 1] == 0:
            x = (sigma_fn(t_next) / sigma_fn(t)) * x - (-h).expm1() * denoised
        else:
            h_last = t - t_fn(sigmas[i - 1])
            r = h_last / h
            denoised_d = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * old_denoised
            x = (sigma_fn(t_next) / sigma_fn(t)) * x - (-h).expm1() * denoised_d
        old_denoised = denoised
    return x


@torch.no_grad()
def sample_dpmpp_sde(model, x, sigmas, *, noise_fn=None, noise_sampler=None, callback=None, should_stop=None,
                     eta=1.0, s_noise=1.0, r=1 / 2):
    noise_sampler = need_brownian(noise_sampler, "DPM++ SDE")
    run = Steps(x, len(sigmas) - 1, callback, should_stop)
    s_in = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        denoised = run.model(model, x, sigmas[i] * s_in)
        run.report(i, x, denoised)
        if sigmas[i + 1] == 0:
            d = to_d(x, sigmas[i], denoised)
            dt = sigmas[i + 1] - sigmas[i]
            x = x + d * dt
        else:
            t, t_next = t_fn(sigmas[i]), t_fn(sigmas[i + 1])
            h = t_next - t
            s = t + h * r
            fac = 1 / (2 * r)

            sd, su = get_ancestral_step(sigma_fn(t), sigma_fn(s), eta)
            s_ = t_fn(sd)
            x_2 = (sigma_fn(s_) / sigma_fn(t)) * x - (t - s_).expm1() * denoised
            x_2 = x_2 + noise_sampler(sigma_fn(t), sigma_fn(s)) * s_noise * su
            denoised_2 = run.model(model, x_2, sigma_fn(s) * s_in)

            sd, su = get_ancestral_step(sigma_fn(t), sigma_fn(t_next), eta)
            t_next_ = t_fn(sd)
            denoised_d = (1 - fac) * denoised + fac * denoised_2
            x = (sigma_fn(t_next_) / sigma_fn(t)) * x - (t - t_next_).expm1() * denoised_d
            x = x + noise_sampler(sigma_fn(t), sigma_fn(t_next)) * s_noise * su
    return x


@torch.no_grad()
def sample_dpmpp_2m_sde(model, x, sigmas, *, noise_fn=None, noise_sampler=None, callback=None,
                        should_stop=None, eta=1.0, s_noise=1.0, solver_type="midpoint"):
    if solver_type not in {"heun", "midpoint"}:
        raise ValueError("solver_type must be 'heun' or 'midpoint'")
    noise_sampler = need_brownian(noise_sampler, "DPM++ 2M SDE")
    run = Steps(x, len(sigmas) - 1, callback, should_stop)
    s_in = x.new_ones([x.shape[0]])
    old_denoised = None
    h_last = None
    h = None
    for i in range(len(sigmas) - 1):
        denoised = run.model(model, x, sigmas[i] * s_in)
        run.report(i, x, denoised)
        if sigmas[i + 1] == 0:
            x = denoised
        else:
            t, s = -sigmas[i].log(), -sigmas[i + 1].log()
            h = s - t
            eta_h = eta * h
            x = sigmas[i + 1] / sigmas[i] * (-eta_h).exp() * x + (-h - eta_h).expm1().neg() * denoised
            if old_denoised is not None:
                r = h_last / h
                if solver_type == "heun":
                    x = x + ((-h - eta_h).expm1().neg() / (-h - eta_h) + 1) * (1 / r) * (denoised - old_denoised)
                else:
                    x = x + 0.5 * (-h - eta_h).expm1().neg() * (1 / r) * (denoised - old_denoised)
            if eta:
                x = x + noise_sampler(sigmas[i], sigmas[i + 1]) * sigmas[i + 1] \
                    * (-2 * eta_h).expm1().neg().sqrt() * s_noise
        old_denoised = denoised
        h_last = h
    return x


@torch.no_grad()
def sample_dpmpp_3m_sde(model, x, sigmas, *, noise_fn=None, noise_sampler=None, callback=None,
                        should_stop=None, eta=1., s_noise=1.):
    noise_sampler = need_brownian(noise_sampler, "DPM++ 3M SDE")
    run = Steps(x, len(sigmas) - 1, callback, should_stop)
    s_in = x.new_ones([x.shape[0]])
    denoised_1, denoised_2 = None, None
    h, h_1, h_2 = None, None, None
    for i in range(len(sigmas) - 1):
        denoised = run.model(model, x, sigmas[i] * s_in)
        run.report(i, x, denoised)
        if sigmas[i + 1] == 0:
            x = denoised
        else:
            t, s = -sigmas[i].log(), -sigmas[i + 1].log()
            h = s - t
            h_eta = h * (eta + 1)
            x = torch.exp(-h_eta) * x + (-h_eta).expm1().neg() * denoised
            if h_2 is not None:
                r0 = h_1 / h
                r1 = h_2 / h
                d1_0 = (denoised - denoised_1) / r0
                d1_1 = (denoised_1 - denoised_2) / r1
                d1 = d1_0 + (d1_0 - d1_1) * r0 / (r0 + r1)
                d2 = (d1_0 - d1_1) / (r0 + r1)
                phi_2 = h_eta.neg().expm1() / h_eta + 1
                phi_3 = phi_2 / h_eta - 0.5
                x = x + phi_2 * d1 - phi_3 * d2
            elif h_1 is not None:
                r = h_1 / h
                d = (denoised - denoised_1) / r
                phi_2 = h_eta.neg().expm1() / h_eta + 1
                x = x + phi_2 * d
            if eta:
                x = x + noise_sampler(sigmas[i], sigmas[i + 1]) * sigmas[i + 1] \
                    * (-2 * h * eta).expm1().neg().sqrt() * s_noise
        denoised_1, denoised_2 = denoised, denoised_1
        h_1, h_2 = h, h_1
    return x


# -- Restart (A1111 sd_samplers_extra) -----------------------------------------------------------------------
def _karras(n, sigma_min, sigma_max, device, rho=7.0):
    ramp = torch.linspace(0, 1, n)
    min_inv_rho, max_inv_rho = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    sigmas = (max_inv_rho + ramp * (min_inv_rho - max_inv_rho)) ** rho
    return torch.cat([sigmas, sigmas.new_zeros([1])]).to(device)


@torch.no_grad()
def sample_restart(model, x, sigmas, *, noise_fn=None, noise_sampler=None, callback=None, should_stop=None,
                   s_noise=1., restart_list=None):
    """Restart sampling (Xu et al. 2023) as A1111 runs it: Heun steps, and from 20 steps on a Karras schedule
    re-cut so that some steps are spent re-noising to sigma 2 and descending again near sigma 0.1."""
    s_in = x.new_ones([x.shape[0]])
    steps = sigmas.shape[0] - 1
    if restart_list is None:
        if steps >= 20:
            restart_steps = 9
            restart_times = 1
            if steps >= 36:
                restart_steps = steps // 4
                restart_times = 2
            sigmas = _karras(steps - restart_steps * restart_times, sigmas[-2].item(), sigmas[0].item(),
                             sigmas.device)
            restart_list = {0.1: [restart_steps + 1, restart_times, 2]}
        else:
            restart_list = {}
    restart_list = {int(torch.argmin(abs(sigmas - key), dim=0)): value for key, value in restart_list.items()}

    step_list = []
    for i in range(len(sigmas) - 1):
        step_list.append((sigmas[i], sigmas[i + 1]))
        if i + 1 in restart_list:
            restart_steps, restart_times, restart_max = restart_list[i + 1]
            min_idx = i + 1
            max_idx = int(torch.argmin(abs(sigmas - restart_max), dim=0))
            if max_idx < min_idx:
                sigma_restart = _karras(restart_steps, sigmas[min_idx].item(), sigmas[max_idx].item(),
                                        sigmas.device)[:-1]
                while restart_times > 0:
                    restart_times -= 1
                    step_list.extend(zip(sigma_restart[:-1], sigma_restart[1:]))

    run = Steps(x, len(step_list), callback, should_stop)

    def heun_step(x, old_sigma, new_sigma, step_id):
        denoised = run.model(model, x, old_sigma * s_in)
        d = to_d(x, old_sigma, denoised)
        run.report(step_id, x, denoised)
        dt = new_sigma - old_sigma
        if new_sigma == 0:
            return x + d * dt
        x_2 = x + d * dt
        denoised_2 = run.model(model, x_2, new_sigma * s_in)
        d_2 = to_d(x_2, new_sigma, denoised_2)
        d_prime = (d + d_2) / 2
        return x + d_prime * dt

    last_sigma = None
    for step_id, (old_sigma, new_sigma) in enumerate(step_list):
        if last_sigma is None:
            last_sigma = old_sigma
        elif last_sigma < old_sigma:
            x = x + default_noise_sampler(noise_fn)(None, None) * s_noise * (old_sigma ** 2 - last_sigma ** 2) ** 0.5
        x = heun_step(x, old_sigma, new_sigma, step_id)
        last_sigma = new_sigma
    return x


# -- LCM (A1111 sd_samplers_lcm; the model is LCMDenoiser) ---------------------------------------------------
@torch.no_grad()
def sample_lcm(model, x, sigmas, *, noise_fn=None, noise_sampler=None, callback=None, should_stop=None):
    noise_sampler = default_noise_sampler(noise_fn) if noise_sampler is None else noise_sampler
    run = Steps(x, len(sigmas) - 1, callback, should_stop)
    s_in = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        denoised = run.model(model, x, sigmas[i] * s_in)
        run.report(i, x, denoised)
        x = denoised
        if sigmas[i + 1] > 0:
            x = x + sigmas[i + 1] * noise_sampler(sigmas[i], sigmas[i + 1])
    return x
