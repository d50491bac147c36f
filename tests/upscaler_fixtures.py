"""Tiny random upscaler files in the key layouts the published models use, written from the architectures'
shapes alone (not from our module classes), so loading them tests the real detection and loading code."""
from __future__ import annotations

from pathlib import Path

import torch


def _conv(sd: dict, key: str, cin: int, cout: int, g: torch.Generator, std: float = 0.05) -> None:
    sd[f"{key}.weight"] = torch.randn(cout, cin, 3, 3, generator=g) * std
    sd[f"{key}.bias"] = torch.randn(cout, generator=g) * 0.01


def esrgan_state_dict(*, nb: int = 2, nf: int = 8, gc: int = 32, n_up: int = 2, layout: str = "new",
                      in_nc: int = 3, seed: int = 0) -> dict[str, torch.Tensor]:
    """RRDBNet weights. layout "new": Real-ESRGAN (conv_first, body.N.rdbK.convJ, conv_body, conv_upN, conv_hr,
    conv_last); "old": ESRGAN (model.0, model.1.sub.N.RDBK.convJ.0, ...). in_nc 12: the x2 pixel-unshuffle kind."""
    g = torch.Generator().manual_seed(seed)
    sd: dict[str, torch.Tensor] = {}
    new = layout == "new"
    _conv(sd, "conv_first" if new else "model.0", in_nc, nf, g)
    for i in range(nb):
        for r in (1, 2, 3):
            for j in range(1, 6):
                cin, cout = nf + (j - 1) * gc, (gc if j < 5 else nf)
                key = f"body.{i}.rdb{r}.conv{j}" if new else f"model.1.sub.{i}.RDB{r}.conv{j}.0"
                _conv(sd, key, cin, cout, g)
    _conv(sd, "conv_body" if new else f"model.1.sub.{nb}", nf, nf, g)
    for u in range(1, n_up + 1):
        _conv(sd, f"conv_up{u}" if new else f"model.{3 * u}", nf, nf, g)
    _conv(sd, "conv_hr" if new else f"model.{3 * n_up + 2}", nf, nf, g)
    _conv(sd, "conv_last" if new else f"model.{3 * n_up + 4}", nf, 3, g)
    return sd


def compact_state_dict(*, num_feat: int = 8, num_conv: int = 2, upscale: int = 4, seed: int = 0,
                       std: float = 0.05, last_std: float = 0.02):
    """SRVGGNetCompact weights: body.0 conv, body.1 PReLU, ... body.{2*num_conv+2} conv to 3*upscale^2."""
    g = torch.Generator().manual_seed(seed)
    sd: dict[str, torch.Tensor] = {}
    i = 0
    _conv(sd, f"body.{i}", 3, num_feat, g, std)
    for _ in range(num_conv + 1):
        sd[f"body.{i + 1}.weight"] = torch.full((num_feat,), 0.25)
        i += 2
        if i < 2 * num_conv + 2:
            _conv(sd, f"body.{i}", num_feat, num_feat, g, std)
    _conv(sd, f"body.{i}", num_feat, 3 * upscale * upscale, g, last_std)
    return sd


def save(sd: dict, path: Path, *, wrapper: str | None = "params_ema") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file
        save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    else:
        torch.save({wrapper: sd} if wrapper else sd, path)
    return path
