"""UniPC (Zhao et al. 2023) as A1111 1.10 runs it (modules/models/diffusion/uni_pc, sd_samplers_timesteps_impl):
multistep, data prediction, A1111's default settings (variant bh1, time-uniform skip, order 3, lower order
final), on the eps model at continuous timesteps `(t - 1/1000) * 1000`.
"""
from __future__ import annotations

import torch

from ..errors import InvalidParameter
from .common import Steps

ORDER = 3  # A1111 uni_pc_order default
VARIANT = "bh1"  # uni_pc_variant
LOWER_ORDER_FINAL = True  # uni_pc_lower_order_final


def interpolate_fn(x, xp, yp):
    """Piecewise linear y = f(x) through (xp, yp), extended linearly beyond the ends (UniPC's own helper)."""
    N, K = x.shape[0], xp.shape[1]
    all_x = torch.cat([x.unsqueeze(2), xp.unsqueeze(0).repeat((N, 1, 1))], dim=2)
    sorted_all_x, x_indices = torch.sort(all_x, dim=2)
    x_idx = torch.argmin(x_indices, dim=2)
    cand_start_idx = x_idx - 1
    start_idx = torch.where(torch.eq(x_idx, 0), torch.tensor(1, device=x.device),
                            torch.where(torch.eq(x_idx, K), torch.tensor(K - 2, device=x.device), cand_start_idx))
    end_idx = torch.where(torch.eq(start_idx, cand_start_idx), start_idx + 2, start_idx + 1)
    start_x = torch.gather(sorted_all_x, dim=2, index=start_idx.unsqueeze(2)).squeeze(2)
    end_x = torch.gather(sorted_all_x, dim=2, index=end_idx.unsqueeze(2)).squeeze(2)
    start_idx2 = torch.where(torch.eq(x_idx, 0), torch.tensor(0, device=x.device),
                             torch.where(torch.eq(x_idx, K), torch.tensor(K - 2, device=x.device), cand_start_idx))
    y_positions_expanded = yp.unsqueeze(0).expand(N, -1, -1)
    start_y = torch.gather(y_positions_expanded, dim=2, index=start_idx2.unsqueeze(2)).squeeze(2)
    end_y = torch.gather(y_positions_expanded, dim=2, index=(start_idx2 + 1).unsqueeze(2)).squeeze(2)
    return start_y + (x - start_x) * (end_y - start_y) / (end_x - start_x)


def _expand(v, dims):
    return v[(...,) + (None,) * (dims - 1)]


class NoiseScheduleVP:
    """The discrete VP schedule: log alpha_t interpolated over t_i = (i + 1) / N."""

    def __init__(self, alphas_cumprod: torch.Tensor):
        log_alphas = 0.5 * torch.log(alphas_cumprod)
        self.total_N = len(log_alphas)
        self.T = 1.
        self.t_array = torch.linspace(0., 1., self.total_N + 1)[1:].reshape((1, -1))
        self.log_alpha_array = log_alphas.reshape((1, -1,))

    def marginal_log_mean_coeff(self, t):
        return interpolate_fn(t.reshape((-1, 1)), self.t_array.to(t.device),
                              self.log_alpha_array.to(t.device)).reshape((-1))

    def marginal_std(self, t):
        return torch.sqrt(1. - torch.exp(2. * self.marginal_log_mean_coeff(t)))

    def marginal_lambda(self, t):
        log_mean_coeff = self.marginal_log_mean_coeff(t)
        log_std = 0.5 * torch.log(1. - torch.exp(2. * log_mean_coeff))
        return log_mean_coeff - log_std


class UniPC:
    def __init__(self, model, ns: NoiseScheduleVP, run: Steps, variant: str = VARIANT):
        self.cfg_model, self.ns, self.run, self.variant = model, ns, run, variant
        self.index = 0

    def data_prediction_fn(self, x, t):
        t_input = (t - 1. / self.ns.total_N) * 1000.
        noise = self.run.model(self.cfg_model, x, t_input)
        dims = x.dim()
        alpha_t = torch.exp(self.ns.marginal_log_mean_coeff(t))
        sigma_t = self.ns.marginal_std(t)
        return (x - _expand(sigma_t, dims) * noise) / _expand(alpha_t, dims)

    def after_update(self, x, model_x):
        self.run.report(self.index, x, model_x)
        self.index += 1

    def bh_update(self, x, model_prev_list, t_prev_list, t, order, use_corrector=True):
        ns = self.ns
        if len(t.shape) == 0:
            t = t.view(-1)
        dims = x.dim()
        t_prev_0 = t_prev_list[-1]
        lambda_prev_0 = ns.marginal_lambda(t_prev_0)
        lambda_t = ns.marginal_lambda(t)
        model_prev_0 = model_prev_list[-1]
        sigma_prev_0, sigma_t = ns.marginal_std(t_prev_0), ns.marginal_std(t)
        log_alpha_t = ns.marginal_log_mean_coeff(t)
        alpha_t = torch.exp(log_alpha_t)
        h = lambda_t - lambda_prev_0

        rks, D1s = [], []
        for i in range(1, order):
            t_prev_i = t_prev_list[-(i + 1)]
            model_prev_i = model_prev_list[-(i + 1)]
            lambda_prev_i = ns.marginal_lambda(t_prev_i)
            rk = ((lambda_prev_i - lambda_prev_0) / h)[0]
            rks.append(rk)
            D1s.append((model_prev_i - model_prev_0) / rk)
        rks.append(1.)
        rks = torch.tensor(rks, device=x.device)

        R, b = [], []
        hh = -h[0]  # data prediction
        h_phi_1 = torch.expm1(hh)
        h_phi_k = h_phi_1 / hh - 1
        factorial_i = 1
        B_h = hh if self.variant == "bh1" else torch.expm1(hh)
        for i in range(1, order + 1):
            R.append(torch.pow(rks, i - 1))
            b.append(h_phi_k * factorial_i / B_h)
            factorial_i *= (i + 1)
            h_phi_k = h_phi_k / hh - 1 / factorial_i
        R = torch.stack(R)
        b = torch.tensor(b, device=x.device)

        if len(D1s) > 0:
            D1s = torch.stack(D1s, dim=1)
            rhos_p = torch.tensor([0.5], device=b.device) if order == 2 else torch.linalg.solve(R[:-1, :-1], b[:-1])
        else:
            D1s = None
        if use_corrector:
            rhos_c = torch.tensor([0.5], device=b.device) if order == 1 else torch.linalg.solve(R, b)

        model_t = None
        x_t_ = _expand(sigma_t / sigma_prev_0, dims) * x - _expand(alpha_t * h_phi_1, dims) * model_prev_0
        pred_res = torch.einsum("k,bkchw->bchw", rhos_p, D1s) if D1s is not None else 0
        x_t = x_t_ - _expand(alpha_t * B_h, dims) * pred_res
        if use_corrector:
            model_t = self.data_prediction_fn(x_t, t)
            corr_res = torch.einsum("k,bkchw->bchw", rhos_c[:-1], D1s) if D1s is not None else 0
            D1_t = (model_t - model_prev_0)
            x_t = x_t_ - _expand(alpha_t * B_h, dims) * (corr_res + rhos_c[-1] * D1_t)
        return x_t, model_t

    def sample(self, x, steps, t_start=None, order=ORDER, lower_order_final=LOWER_ORDER_FINAL):
        t_0 = 1. / self.ns.total_N
        t_T = self.ns.T if t_start is None else t_start
        timesteps = torch.linspace(t_T, t_0, steps + 1).to(x.device)  # time_uniform
        vec_t = timesteps[0].expand((x.shape[0]))
        model_prev_list = [self.data_prediction_fn(x, vec_t)]
        t_prev_list = [vec_t]
        for init_order in range(1, order):
            vec_t = timesteps[init_order].expand(x.shape[0])
            x, model_x = self.bh_update(x, model_prev_list, t_prev_list, vec_t, init_order, use_corrector=True)
            if model_x is None:
                model_x = self.data_prediction_fn(x, vec_t)
            self.after_update(x, model_x)
            model_prev_list.append(model_x)
            t_prev_list.append(vec_t)
        for step in range(order, steps + 1):
            vec_t = timesteps[step].expand(x.shape[0])
            step_order = min(order, steps + 1 - step) if lower_order_final else order
            use_corrector = step != steps  # no corrector at the last step
            x, model_x = self.bh_update(x, model_prev_list, t_prev_list, vec_t, step_order, use_corrector)
            self.after_update(x, model_x if model_x is not None else x)
            for i in range(order - 1):
                t_prev_list[i] = t_prev_list[i + 1]
                model_prev_list[i] = model_prev_list[i + 1]
            t_prev_list[-1] = vec_t
            if step < steps:
                if model_x is None:
                    model_x = self.data_prediction_fn(x, vec_t)
                model_prev_list[-1] = model_x
        return x


@torch.no_grad()
def sample_unipc(model, x, timesteps, *, alphas_cumprod, noise_fn=None, noise_sampler=None, callback=None,
                 should_stop=None, is_img2img=False):
    """A1111 runs len(timesteps) UniPC steps on its own time grid; img2img starts at the tail's top timestep."""
    steps = len(timesteps)
    if steps < ORDER:
        raise InvalidParameter(f"UniPC needs at least {ORDER} steps in a pass (its order), got {steps}; "
                               f"A1111 stops with 'UniPC order must be < sampling steps'")
    t_start = timesteps[-1] / 1000 + 1 / 1000 if is_img2img else None
    solver = UniPC(model, NoiseScheduleVP(alphas_cumprod), Steps(x, steps, callback, should_stop))
    return solver.sample(x, steps, t_start=t_start)
