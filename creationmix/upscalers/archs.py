"""Our own definitions of the two published upscaler architectures most SD recipes name, for machines where
spandrel cannot be imported (its package imports torchvision, which does not load with every torch build).

- ESRGAN / Real-ESRGAN RRDBNet (Wang et al. 2018; Real-ESRGAN 2021): `ESRGAN_4x`, `4x-UltraSharp`,
  `4x-AnimeSharp`, `R-ESRGAN 4x+`, `R-ESRGAN 4x+ Anime6B`, `R-ESRGAN 2x+` (pixel-unshuffle input).
- Real-ESRGAN Compact / SRVGGNetCompact: `R-ESRGAN General 4xV3`, `... WDN 4xV3`, `R-ESRGAN AnimeVideo`.

Both read the state dicts those files hold, in the key layouts spandrel reads: the old ESRGAN layout
(`model.0.weight`, `model.1.sub.N.RDBk.convj.0.weight`, ...) and the new Real-ESRGAN/BSRGAN one (`conv_first`,
`body.N.rdbk.convj`, `conv_body`, `conv_up1`, ...), which is renamed to the old one before loading. The modules are
laid out so that `load_state_dict(strict=True)` checks every key and shape.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


class UnsupportedArchitecture(Exception):
    """The state dict is not one of the architectures defined here (message says what it looks like)."""


# -- ESRGAN (RRDBNet) ---------------------------------------------------------------------------------------------

def _conv(cin: int, cout: int, act: bool) -> nn.Sequential:
    # The old layout wraps every conv in a Sequential (key `.0.`), with the activation as its second member.
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, 3, 1, 1)]
    if act:
        layers.append(nn.LeakyReLU(0.2, inplace=True))
    return nn.Sequential(*layers)


class _RDB(nn.Module):
    """Residual dense block, 5 convs."""

    def __init__(self, nf: int, gc: int):
        super().__init__()
        self.conv1 = _conv(nf, gc, True)
        self.conv2 = _conv(nf + gc, gc, True)
        self.conv3 = _conv(nf + 2 * gc, gc, True)
        self.conv4 = _conv(nf + 3 * gc, gc, True)
        self.conv5 = _conv(nf + 4 * gc, nf, False)

    def forward(self, x):
        x1 = self.conv1(x)
        x2 = self.conv2(torch.cat((x, x1), 1))
        x3 = self.conv3(torch.cat((x, x1, x2), 1))
        x4 = self.conv4(torch.cat((x, x1, x2, x3), 1))
        x5 = self.conv5(torch.cat((x, x1, x2, x3, x4), 1))
        return x5 * 0.2 + x


class _RRDB(nn.Module):
    def __init__(self, nf: int, gc: int):
        super().__init__()
        self.RDB1, self.RDB2, self.RDB3 = _RDB(nf, gc), _RDB(nf, gc), _RDB(nf, gc)

    def forward(self, x):
        return self.RDB3(self.RDB2(self.RDB1(x))) * 0.2 + x


class _Shortcut(nn.Module):
    def __init__(self, sub: nn.Module):
        super().__init__()
        self.sub = sub

    def forward(self, x):
        return x + self.sub(x)


class RRDBNet(nn.Module):
    """ESRGAN's generator in the old key layout. `shuffle` > 1: Real-ESRGAN x2/x1 models that pixel-unshuffle
    the input first (the file's first conv then takes 3*shuffle^2 channels)."""

    def __init__(self, *, in_nc=3, out_nc=3, nf=64, nb=23, gc=32, n_up=2, shuffle=1):
        super().__init__()
        self.shuffle = shuffle
        self.scale = 2 ** n_up // shuffle
        ups: list[nn.Module] = []
        for _ in range(n_up):
            ups += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(nf, nf, 3, 1, 1),
                    nn.LeakyReLU(0.2, inplace=True)]
        body = nn.Sequential(*[_RRDB(nf, gc) for _ in range(nb)], nn.Conv2d(nf, nf, 3, 1, 1))
        self.model = nn.Sequential(nn.Conv2d(in_nc, nf, 3, 1, 1), _Shortcut(body), *ups,
                                   nn.Conv2d(nf, nf, 3, 1, 1), nn.LeakyReLU(0.2, inplace=True),
                                   nn.Conv2d(nf, out_nc, 3, 1, 1))

    def forward(self, x):
        if self.shuffle == 1:
            return self.model(x)
        h, w = x.shape[-2:]
        # Reflect-pad to a multiple of the shuffle factor and crop back, as spandrel and Real-ESRGAN do.
        ph, pw = (-h) % self.shuffle, (-w) % self.shuffle
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="reflect")
        out = self.model(F.pixel_unshuffle(x, self.shuffle))
        return out[:, :, : h * self.scale, : w * self.scale]


def _seq_len(sd: dict, prefix: str) -> int:
    idx = [int(k[len(prefix):].split(".", 1)[0]) for k in sd if k.startswith(prefix)
           and k[len(prefix):].split(".", 1)[0].isdigit()]
    return max(idx) + 1 if idx else 0


_NEW_BODY = re.compile(r"^(?:body|RRDB_trunk)\.(\d+)\.(?:rdb|RDB)(\d)\.conv(\d)\.(weight|bias)$")
_NEW_UP = re.compile(r"^(?:conv_up|upconv)(\d)\.(weight|bias)$")


def _new_to_old(sd: dict) -> dict:
    """Real-ESRGAN / BSRGAN key names -> the old ESRGAN layout. Unknown keys are an error, not dropped."""
    nb = 1 + max((int(m.group(1)) for k in sd if (m := _NEW_BODY.match(k))), default=-1)
    ups = {int(m.group(1)) for k in sd if (m := _NEW_UP.match(k))}
    top = 3 * max(ups, default=0)
    fixed = {"conv_first": "model.0", "conv_body": f"model.1.sub.{nb}", "trunk_conv": f"model.1.sub.{nb}",
             "conv_hr": f"model.{top + 2}", "HRconv": f"model.{top + 2}", "conv_last": f"model.{top + 4}"}
    out = {}
    for k, v in sd.items():
        if m := _NEW_BODY.match(k):
            out[f"model.1.sub.{m.group(1)}.RDB{m.group(2)}.conv{m.group(3)}.0.{m.group(4)}"] = v
        elif m := _NEW_UP.match(k):
            out[f"model.{3 * int(m.group(1))}.{m.group(2)}"] = v
        elif (base := k.rsplit(".", 1)[0]) in fixed:
            out[f"{fixed[base]}.{k.rsplit('.', 1)[1]}"] = v
        else:
            raise UnsupportedArchitecture(f"unexpected key {k!r} for a Real-ESRGAN RRDBNet")
    return out


def is_esrgan(sd: dict) -> bool:
    return ("model.0.weight" in sd and "model.1.sub.0.RDB1.conv1.0.weight" in sd) or (
        "conv_first.weight" in sd and ("body.0.rdb1.conv1.weight" in sd or "RRDB_trunk.0.RDB1.conv1.weight" in sd))


def build_esrgan(sd: dict) -> tuple[RRDBNet, dict]:
    if "conv_first.weight" in sd:
        sd = _new_to_old(sd)
    if any(".conv1x1." in k for k in sd):
        raise UnsupportedArchitecture("an ESRGAN+ model (extra conv1x1 paths)")
    seq = _seq_len(sd, "model.")
    n_up = (seq - 5) // 3
    if n_up < 0 or seq != 5 + 3 * n_up or f"model.{seq - 1}.weight" not in sd:
        raise UnsupportedArchitecture(f"an RRDBNet with an unusual layer layout ({seq} top-level layers)")
    first = sd["model.0.weight"]
    in_nc, nf = first.shape[1], first.shape[0]
    out_nc = sd[f"model.{seq - 1}.weight"].shape[0]
    nb = _seq_len(sd, "model.1.sub.") - 1
    gc = sd["model.1.sub.0.RDB1.conv1.0.weight"].shape[0]
    shuffle = 1
    if in_nc in (out_nc * 4, out_nc * 16):
        shuffle = int(math.isqrt(in_nc // out_nc))
    net = RRDBNet(in_nc=in_nc, out_nc=out_nc, nf=nf, nb=nb, gc=gc, n_up=n_up, shuffle=shuffle)
    return net, sd


# -- Real-ESRGAN Compact (SRVGGNetCompact) ------------------------------------------------------------------------

class SRVGGNetCompact(nn.Module):
    """conv + PReLU, num_conv x (conv + PReLU), conv to out*up^2, pixel shuffle, plus the nearest-upscaled input."""

    def __init__(self, *, in_nc=3, out_nc=3, num_feat=64, num_conv=16, upscale=4):
        super().__init__()
        self.scale = upscale
        body: list[nn.Module] = [nn.Conv2d(in_nc, num_feat, 3, 1, 1), nn.PReLU(num_feat)]
        for _ in range(num_conv):
            body += [nn.Conv2d(num_feat, num_feat, 3, 1, 1), nn.PReLU(num_feat)]
        body.append(nn.Conv2d(num_feat, out_nc * upscale * upscale, 3, 1, 1))
        self.body = nn.ModuleList(body)
        self.upsampler = nn.PixelShuffle(upscale)

    def forward(self, x):
        out = x
        for layer in self.body:
            out = layer(out)
        out = self.upsampler(out)
        return out + F.interpolate(x, scale_factor=self.scale, mode="nearest")


def is_compact(sd: dict) -> bool:
    w1 = sd.get("body.1.weight")
    return "body.0.weight" in sd and w1 is not None and w1.ndim == 1


def build_compact(sd: dict) -> tuple[SRVGGNetCompact, dict]:
    last = _seq_len(sd, "body.") - 1
    in_nc, num_feat = sd["body.0.weight"].shape[1], sd["body.0.weight"].shape[0]
    shuffled = sd[f"body.{last}.weight"].shape[0]
    for out_nc in (in_nc, 3, 1, 4):
        up = math.isqrt(shuffled // out_nc) if shuffled % out_nc == 0 else 0
        if up and up * up * out_nc == shuffled:
            break
    else:
        raise UnsupportedArchitecture(f"a Compact model whose last layer has {shuffled} channels")
    net = SRVGGNetCompact(in_nc=in_nc, out_nc=out_nc, num_feat=num_feat, num_conv=(last - 2) // 2, upscale=up)
    return net, sd


@dataclass
class BuiltNet:
    module: nn.Module
    arch: str
    scale: int


def build_from_state_dict(sd: dict) -> BuiltNet:
    """The matching module with the weights loaded (strict). UnsupportedArchitecture otherwise."""
    if is_esrgan(sd):
        net, sd, arch = *build_esrgan(sd), "ESRGAN"
    elif is_compact(sd):
        net, sd, arch = *build_compact(sd), "Compact"
    else:
        raise UnsupportedArchitecture(describe(sd))
    try:
        net.load_state_dict(sd, strict=True)
    except RuntimeError as e:
        first = str(e).strip().splitlines()
        raise UnsupportedArchitecture(f"an {arch} model whose weights do not fit "
                                      f"({first[1].strip() if len(first) > 1 else first[0]})") from None
    return BuiltNet(net.eval().requires_grad_(False), arch, net.scale)


def describe(sd: dict) -> str:
    """What a state dict we cannot build looks like, for the error message."""
    keys = list(sd)
    if any("relative_position_bias_table" in k or ".attn." in k for k in keys):
        return "a transformer upscaler (SwinIR, DAT, HAT or similar)"
    if any(k.startswith("model.diffusion_model.") for k in keys):
        return "a Stable Diffusion checkpoint, not an upscaler"
    return f"an unknown architecture (keys like {', '.join(keys[:3])})"
