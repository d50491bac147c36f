"""A1111's CFGDenoiser (sd_samplers_cfg_denoiser) over our denoisers: classifier-free guidance with AND parts,
prompt-editing schedules indexed by model call, NGMS (skip the negative prompt at low sigma on odd calls),
"Pad conds" and the unconditional prediction that DDIM CFG++ steps along."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable, Optional

import torch

from .params import GenerationParams


def stack_conds(tensors: list[torch.Tensor]) -> torch.Tensor:
    """A1111's stack_conds: AND parts of unequal length are padded by repeating their last vector."""
    n = max(t.shape[0] for t in tensors)
    return torch.stack([t if t.shape[0] == n else torch.cat([t, t[-1:].repeat(n - t.shape[0], 1)]) for t in tensors])


@dataclass
class CFGState:
    """What the guidance did during a generation; the infotext reports an option only once it took effect
    (A1111 writes "NGMS" when it skipped an uncond and "Pad conds" when it padded)."""

    padded: bool = False
    padded_v0: bool = False
    skipped_uncond: bool = False

    def applied(self, params: GenerationParams) -> GenerationParams:
        changes = {}
        if params.pad_conds and not self.padded:
            changes["pad_conds"] = False
        if params.pad_conds_v0 and not self.padded_v0:
            changes["pad_conds_v0"] = False
        if params.s_min_uncond and not self.skipped_uncond:
            changes["s_min_uncond"] = 0.0
        return dataclasses.replace(params, **changes) if changes else params


def _pad(tensor: torch.Tensor, repeats: int, empty: torch.Tensor) -> torch.Tensor:
    return torch.cat([tensor, empty.to(tensor).repeat((tensor.shape[0], repeats, 1))], dim=1)


class CFGModel:
    """`model(x, sigma) -> guided prediction`; the schedule index counts model calls (A1111's self.step)."""

    def __init__(self, denoiser, cond, cfg_scale: float, batch: int, *, s_min_uncond: float = 0.0,
                 empty: Optional[Callable[[], torch.Tensor]] = None, pad_v0: bool = False,
                 state: CFGState | None = None):
        self.denoiser, self.cond, self.cfg_scale, self.batch = denoiser, cond, cfg_scale, batch
        self.s_min_uncond, self.empty, self.pad_v0 = s_min_uncond, empty, pad_v0
        self.state = state if state is not None else CFGState()
        self.step = 0
        self.last_noise_uncond: torch.Tensor | None = None
        self._empty: torch.Tensor | None = None

    def _pad_conds(self, c: torch.Tensor, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self._empty is None:
            self._empty = self.empty()
        num_repeats = (c.shape[1] - u.shape[1]) // self._empty.shape[1]
        if num_repeats < 0:
            c = _pad(c, -num_repeats, self._empty)
            self.state.padded = True
        elif num_repeats > 0:
            u = _pad(u, num_repeats, self._empty)
            self.state.padded = True
        return c, u

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        batch, denoiser = self.batch, self.denoiser
        parts, uncond = self.cond.at(self.step)
        c = stack_conds([p[0] for p, _ in parts])  # (n_parts, L, D)
        n = len(parts)
        sig = sigma.reshape(-1)
        if sig.numel() == 1:
            sig = sig.expand(batch)
        skip_uncond = bool(self.step % 2 and 0 < self.s_min_uncond and sig[0] < self.s_min_uncond)
        self.state.skipped_uncond |= skip_uncond
        u = uncond[0].unsqueeze(0)
        if self.pad_v0 and c.shape[1] != u.shape[1]:  # A1111 checks v0 first
            u = torch.cat([u, u[:, -1:].repeat(1, c.shape[1] - u.shape[1], 1)], dim=1) \
                if u.shape[1] < c.shape[1] else u[:, :c.shape[1]]
            self.state.padded_v0 = True
        elif self.empty is not None and c.shape[1] != u.shape[1]:
            c, u = self._pad_conds(c, u)
        x_c = x.repeat_interleave(n, dim=0)
        s_c = sig.repeat_interleave(n)
        c_c = c.repeat(batch, 1, 1)
        u = u.expand(batch, -1, -1)
        if skip_uncond:
            out_c = denoiser(x_c, s_c, cond=c_c)
            out_u = out_c[::n].clone()  # A1111 puts each image's first cond output where the uncond would be
        elif c.shape[1] == u.shape[1]:
            out = denoiser(torch.cat([x_c, x]), torch.cat([s_c, sig]), cond=torch.cat([c_c, u]))
            out_c, out_u = out[: batch * n], out[batch * n:]
        else:
            out_c = denoiser(x_c, s_c, cond=c_c)
            out_u = denoiser(x, sig, cond=u)
        self.last_noise_uncond = out_u
        scale = 1.0 if skip_uncond else self.cfg_scale
        denoised = out_u.clone()
        for i in range(batch):
            for j, (_, weight) in enumerate(parts):
                denoised[i] += (out_c[i * n + j] - out_u[i]) * (weight * scale)
        self.step += 1
        return denoised
