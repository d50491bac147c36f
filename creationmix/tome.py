"""Token merging (ToMe, `tomesd`) on the diffusers UNet the way A1111 1.10 applies it (sd_models.apply_token_merging):
attention-only merging, no random perturbation, re-patched only when the ratio changes."""
from __future__ import annotations

from .errors import InvalidParameter


def apply_token_merging(unet, ratio: float) -> None:
    """Patch `unet` for `ratio` (0 removes the patch). Idempotent for an unchanged ratio."""
    current = getattr(unet, "_cm_tome_ratio", 0.0)
    if current == ratio:
        return
    try:
        import tomesd
    except ImportError as e:  # pragma: no cover - tomesd is in requirements.txt
        raise InvalidParameter("Token merging ratio needs the `tomesd` package (pip install tomesd)") from e
    if current > 0:
        tomesd.remove_patch(unet)
    if ratio > 0:
        tomesd.apply_patch(unet, ratio=ratio, use_rand=False, merge_attn=True, merge_crossattn=False,
                           merge_mlp=False)
    unet._cm_tome_ratio = ratio


def hires_ratio(first: float, hr: float) -> float:
    """A1111 get_token_merging_ratio(for_hr=True): the hires ratio, else the first pass's."""
    return hr or first
