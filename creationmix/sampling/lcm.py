"""A1111's LCM denoiser (sd_samplers_lcm.LCMCompVisDenoiser): 50 of the model's 1000 timesteps, integer timesteps
for the UNet and LCM's boundary-condition scalings on the output. The LCM sampler and its schedules run on it."""
from __future__ import annotations

import torch

from .common import append_dims
from .schedulers import append_zero

TIMESTEPS = 1000
ORIGINAL_TIMESTEPS = 50  # LCM's original timesteps


class LCMDenoiser:
    def __init__(self, denoiser):
        self.unet_fn = denoiser.unet_fn
        self.alphas_cumprod = denoiser.alphas_cumprod
        self.skip_steps = TIMESTEPS // ORIGINAL_TIMESTEPS
        ac = denoiser.alphas_cumprod
        valid = torch.zeros(ORIGINAL_TIMESTEPS, dtype=torch.float32, device=ac.device)
        for x in range(ORIGINAL_TIMESTEPS):
            valid[ORIGINAL_TIMESTEPS - 1 - x] = ac[TIMESTEPS - 1 - x * self.skip_steps]
        self.sigmas = ((1 - valid) / valid) ** 0.5
        self.log_sigmas = self.sigmas.log()

    @property
    def sigma_min(self):
        return self.sigmas[0]

    @property
    def sigma_max(self):
        return self.sigmas[-1]

    def _tables(self, device):
        if self.log_sigmas.device != device:
            self.sigmas, self.log_sigmas = self.sigmas.to(device), self.log_sigmas.to(device)
        return self.log_sigmas

    def get_sigmas(self, n: int) -> torch.Tensor:
        start = self.sigma_to_t(self.sigma_max)
        end = self.sigma_to_t(self.sigma_min)
        t = torch.linspace(start, end, n, device=self.sigmas.device)
        return append_zero(self.t_to_sigma(t))

    def sigma_to_t(self, sigma: torch.Tensor) -> torch.Tensor:
        log_sigmas = self._tables(sigma.device)
        dists = sigma.log() - log_sigmas[:, None]
        return dists.abs().argmin(dim=0).view(sigma.shape) * self.skip_steps + (self.skip_steps - 1)

    def t_to_sigma(self, timestep: torch.Tensor) -> torch.Tensor:
        log_sigmas = self._tables(timestep.device)
        t = torch.clamp(((timestep - (self.skip_steps - 1)) / self.skip_steps).float(), min=0,
                        max=(len(self.sigmas) - 1))
        low_idx, high_idx, w = t.floor().long(), t.ceil().long(), t.frac()
        return ((1 - w) * log_sigmas[low_idx] + w * log_sigmas[high_idx]).exp()

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, **cond) -> torch.Tensor:
        c_out = append_dims(-sigma, x.ndim)
        c_in = append_dims(1 / (sigma ** 2 + 1) ** 0.5, x.ndim)
        t = self.sigma_to_t(sigma)
        eps = self.unet_fn(x * c_in, t, **cond)
        output = x + eps * c_out
        sigma_data = 0.5
        scaled_timestep = append_dims(t, output.ndim) * 10.0
        c_skip = sigma_data ** 2 / (scaled_timestep ** 2 + sigma_data ** 2)
        c_out = scaled_timestep / (scaled_timestep ** 2 + sigma_data ** 2) ** 0.5
        return c_out * output + c_skip * x
