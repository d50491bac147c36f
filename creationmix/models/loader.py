"""Load an A1111-style SD 1.5 single-file checkpoint (+ optional external VAE) into a diffusers pipeline, offline.

The file is read once by us (so its problems become precise ModelErrors: garbage, truncated, another
architecture, missing weights, a VAE that does not fit); the validated tensors are renamed by ldm_convert's table
(the exact inverse of diffusers' single-file converters) straight into empty models built from a local config
folder: the checkpoint's `<stem>.config/` sidecar when present, else the shipped SD 1.5 configs. Nothing is ever
downloaded, and no diffusers pipeline or single-file loader runs (a model is built once, not twice).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from ..errors import ModelError  # noqa: E402
from ..paths import SIDECAR_VAE_SUFFIXES  # noqa: E402
from ..safetensors_header import HeaderProblem, SafetensorsHeader, read_header  # noqa: E402
from .. import hashing  # noqa: E402
from .ldm_convert import (CLIP_PREFIX, UNET_PREFIX, VAE_PREFIX, text_encoder_to_ldm, unet_to_ldm,  # noqa: E402
                          vae_key_to_ldm)

SHIPPED_CONFIG = Path(__file__).resolve().parent.parent / "resources" / "sd15"

# Very old SD 1.x files saved the CLIP without the `text_model.` level (A1111 renames them the same way).
_OLD_CLIP_PREFIXES = {
    "cond_stage_model.transformer.embeddings.": "cond_stage_model.transformer.text_model.embeddings.",
    "cond_stage_model.transformer.encoder.": "cond_stage_model.transformer.text_model.encoder.",
    "cond_stage_model.transformer.final_layer_norm.": "cond_stage_model.transformer.text_model.final_layer_norm.",
}


@dataclass
class LoadedModel:
    pipe: object  # modules.SDModules: these components plus diffusers' LoRA loader over them
    unet: object
    vae: object
    text_encoder: object
    tokenizer: object
    path: Path
    name: str
    model_hash: str
    vae_path: Path | None  # None: the checkpoint's own VAE
    vae_name: str | None
    vae_hash: str | None
    device: torch.device
    dtype: torch.dtype
    config_dir: Path = SHIPPED_CONFIG


# -- reading files ------------------------------------------------------------------------------------------------

def _read_safetensors_header(path: Path) -> SafetensorsHeader:
    """The checked header. ModelError for anything that is not a complete safetensors file."""
    try:
        return read_header(path)
    except HeaderProblem as p:
        f = p.facts
        if p.kind == "short":
            raise ModelError(f"{path.name} is not a safetensors file: only {f['size']} bytes") from None
        if p.kind == "length":
            # Its "length" is the file's first 8 bytes: never echoed, they may be another file's content.
            raise ModelError(f"{path.name} is not a safetensors file (its header length does not fit a file of "
                             f"{f['size']} bytes)") from None
        if p.kind == "json":
            raise ModelError(f"{path.name} is not a safetensors file (unreadable header: {f['detail']})") from None
        if p.kind == "entry":
            raise ModelError(f"{path.name} is not a valid safetensors file (bad entry {f['key']!r} in header)") from None
        raise ModelError(f"{path.name} is truncated: it has {f['have']} bytes of tensor data, its header needs "
                         f"{f['need']} (incomplete download or copy?)") from None


def read_state_dict(path: Path, what: str = "checkpoint") -> dict[str, torch.Tensor]:
    """All tensors of a .safetensors / .ckpt / .pt / .bin file (a "state_dict" wrapper is unwrapped)."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{what} {path} not found")
    if path.suffix.lower() == ".safetensors":
        _read_safetensors_header(path)
        from safetensors.torch import load_file
        try:
            sd = load_file(str(path))
        except Exception as e:  # safetensors raises its own SafetensorError for inconsistent files
            raise ModelError(f"cannot read {what} {path.name}: {e}") from None
    else:
        sd = _read_pickle(path, what)
    bad = [k for k, v in sd.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise ModelError(f"{what} {path.name} is not a plain tensor state dict (entries like {bad[0]!r})")
    return sd


def _read_pickle(path: Path, what: str) -> dict:
    try:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as e:
            if "mmap" not in str(e):  # legacy (non-zip) pickles cannot be mmapped
                raise
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if "weights_only" in str(e) or "Unsupported global" in str(e):
            msg = ("it contains pickled objects other than tensors, which are refused for safety; "
                   "convert it to .safetensors")
        raise ModelError(f"cannot read {what} {path.name}: {msg}") from None
    while isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise ModelError(f"cannot read {what} {path.name}: it holds a {type(obj).__name__}, not a state dict")
    # Lightning checkpoints keep bookkeeping next to the weights; only tensors matter.
    return {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)} or obj


def check_float_weights(sd: dict, what: str, prefixes: tuple[str, ...] = ("",)) -> None:
    """Refuse quantised / integer weights: loaded as they are they would be cast silently into garbage.
    Index buffers (`position_ids`) and EMA bookkeeping are integer by nature and allowed."""
    for key, value in sd.items():
        if (key.startswith(prefixes) and not value.is_floating_point() and not key.endswith("position_ids")
                and not key.startswith("model_ema.")):
            raise ModelError(f"{what} has {str(value.dtype).replace('torch.', '')} weights ({key}); only float "
                             f"(fp32/fp16/bf16) checkpoints are supported")


# -- architecture -------------------------------------------------------------------------------------------------

def detect_architecture(sd: dict) -> str:
    """"SD 1.5", or what else the keys look like (SDXL, SD 2.x, SD 3, Flux, a LoRA, a VAE, ...)."""
    keys = list(sd)
    if any(k.startswith("conditioner.embedders.") for k in keys):
        return "SDXL"
    if any(k.startswith("model.diffusion_model.joint_blocks.") for k in keys):
        return "SD 3"
    if any(k.startswith(("double_blocks.", "model.diffusion_model.double_blocks.")) for k in keys):
        return "Flux"
    if any(k.startswith("cond_stage_model.model.") for k in keys):
        return "SD 2.x"
    k2 = "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight"
    if k2 in sd and sd[k2].ndim == 2 and sd[k2].shape[1] == 1024:
        return "SD 2.x"
    if any(k.startswith(UNET_PREFIX) for k in keys):
        return "SD 1.5"
    if any(k.startswith(("lora_unet_", "lora_te_", "lora_te1_")) or ".lora_down." in k or ".lora_A." in k
           for k in keys):
        return "a LoRA"
    if any(k.startswith(("encoder.down.", "decoder.up.", "encoder.down_blocks.", "first_stage_model.")) for k in keys):
        return "a VAE"
    if any(k.startswith(("down_blocks.", "conv_in.")) for k in keys):
        return "a diffusers-format UNet"
    return "unknown"


_ST_DTYPES = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16", "I64": "int64",
              "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8", "BOOL": "bool",
              "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2"}


def describe_checkpoint(path) -> dict:
    """Cheap look at a checkpoint: format, architecture, built-in VAE, dtype, tensor count.

    Reads only the header of a .safetensors file; a pickle (.ckpt) has to be loaded."""
    path = Path(path)
    if path.suffix.lower() == ".safetensors":
        if not path.is_file():
            raise ModelError(f"checkpoint {path} not found")
        h = _read_safetensors_header(path)
        header, meta = h.entries, h.metadata
        shapes = {k: v.get("shape") for k, v in header.items()}
        dtypes = sorted({_ST_DTYPES.get(v.get("dtype"), str(v.get("dtype"))) for v in header.values()})
        fake = {k: torch.empty(s, device="meta") if isinstance(s, list) else None for k, s in shapes.items()}
        fmt = "safetensors"
    else:
        sd = read_state_dict(path)
        fake = {k: v for k, v in sd.items()}
        dtypes = sorted({str(v.dtype).removeprefix("torch.") for v in sd.values()})
        meta, fmt = {}, "pickle"
    return {
        "format": fmt,
        "architecture": detect_architecture(fake),
        "has_vae": any(k.startswith(VAE_PREFIX) for k in fake),
        "dtypes": dtypes,
        "tensors": len(fake),
        "metadata": meta,
    }


# -- configs and expected keys ------------------------------------------------------------------------------------

def config_dir_for(path: Path) -> Path:
    """The `<stem>.config/` sidecar if present, else the shipped SD 1.5 configs."""
    side = Path(path).with_name(Path(path).stem + ".config")
    return side if (side / "unet" / "config.json").is_file() else SHIPPED_CONFIG


def _sub(config_dir: Path, name: str) -> Path:
    """A component folder of config_dir, falling back to the shipped one (tokenizer/scheduler are optional)."""
    p = config_dir / name
    return p if p.is_dir() else SHIPPED_CONFIG / name


def _meta_models(config_dir: Path, parts: tuple[str, ...] = ("unet", "vae", "text_encoder")):
    """Empty (meta-device) models of `config_dir`'s configs; the loader fills them with `load_state_dict(assign=)`.

    Buffers are real (accelerate's default), so CLIP's `position_ids` need no weights from the file."""
    from accelerate import init_empty_weights

    built = {}
    with init_empty_weights():
        if "unet" in parts:
            from diffusers import UNet2DConditionModel
            built["unet"] = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(_sub(config_dir, "unet")))
        if "vae" in parts:
            from diffusers import AutoencoderKL
            built["vae"] = AutoencoderKL.from_config(AutoencoderKL.load_config(_sub(config_dir, "vae")))
        if "text_encoder" in parts:
            from transformers import CLIPTextConfig, CLIPTextModel
            built["text_encoder"] = CLIPTextModel(CLIPTextConfig.from_pretrained(_sub(config_dir, "text_encoder")))
    return tuple(built.get(n) for n in ("unet", "vae", "text_encoder"))


def _fill(model, weights: dict):
    """Put the converted weights into an empty model: every key exactly once, shapes as the model has them
    (LDM's 1x1-conv attention weights become the linears diffusers uses)."""
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    model.load_state_dict({k: weights[k].reshape(s) for k, s in shapes.items()}, strict=True, assign=True)
    return model


def _squeezed(shape) -> tuple:
    # LDM VAE attention is conv 1x1, diffusers' is linear: same weights, trailing 1s differ.
    s = list(shape)
    while len(s) > 2 and s[-1] == 1:
        s.pop()
    return tuple(s)


def _fit_problem(sd: dict, expected: dict, show=lambda k: k) -> str | None:
    """Why `sd` cannot fill a model whose state dict has `expected` shapes (None: it can).

    `show` turns a key into the name the user's file uses."""
    missing = [k for k in expected if k not in sd]
    if missing:
        return f"{len(missing)} of {len(expected)} weights missing (e.g. {', '.join(map(show, missing[:4]))})"
    wrong = [(k, tuple(sd[k].shape), tuple(s)) for k, s in expected.items()
             if _squeezed(sd[k].shape) != _squeezed(s)]
    if wrong:
        k, got, want = wrong[0]
        return f"{len(wrong)} weights have other shapes, e.g. {show(k)} is {list(got)}, expected {list(want)}"
    return None


def _where(config_dir: Path) -> str:
    return "the shipped SD 1.5 configs" if config_dir == SHIPPED_CONFIG else f"configs in {config_dir}"


def _normalize_clip_keys(sd: dict) -> dict:
    if any(k.startswith(CLIP_PREFIX) for k in sd):
        return sd
    out = {}
    for k, v in sd.items():
        for old, new in _OLD_CLIP_PREFIXES.items():
            if k.startswith(old):
                k = new + k[len(old):]
                break
        out[k] = v
    return out


# -- VAE ----------------------------------------------------------------------------------------------------------

def find_sidecar_vae(ckpt_path) -> Path | None:
    """A1111's rule: `<stem>.vae.safetensors` / `.vae.pt` / `.vae.ckpt` beside the checkpoint."""
    p = Path(ckpt_path)
    for suf in SIDECAR_VAE_SUFFIXES:
        cand = p.with_name(p.stem + suf)
        if cand.is_file():
            return cand
    return None


_OLD_DIFFUSERS_VAE_ATTN = {".query.": ".to_q.", ".key.": ".to_k.", ".value.": ".to_v.", ".proj_attn.": ".to_out.0."}
_LDM_VAE_PREFIXES = ("first_stage_model.", "vae.")  # as diffusers' convert_ldm_vae_checkpoint: the last found wins


def _vae_to_diffusers(sd: dict, meta_vae) -> dict:
    """LDM (optionally `first_stage_model.`/`vae.`-prefixed) or diffusers-layout VAE weights -> diffusers keys.

    LDM names come from ldm_convert's table (the inverse of diffusers' own converter, checked in the tests)."""
    if any(".down_blocks." in k or ".up_blocks." in k for k in sd):
        out = {}
        for k, v in sd.items():
            if ".mid_block.attentions." in k:
                for old, new in _OLD_DIFFUSERS_VAE_ATTN.items():
                    k = k.replace(old, new)
            out[k] = v
        return out
    prefix = ""
    for p in _LDM_VAE_PREFIXES:
        if any(k.startswith(p) for k in sd):
            prefix = p
    out = {}
    for k in meta_vae.state_dict():
        ldm = prefix + vae_key_to_ldm(k, meta_vae.config)
        if ldm in sd:
            out[k] = sd[ldm]
    return out


def _build_vae(vae_sd: dict, config_dir: Path, meta_vae, dtype, *, external: str | None, ckpt_name: str = ""):
    """`meta_vae` filled with VAE weights; `external` is the VAE file's name (None: the checkpoint's own VAE)."""
    if external is not None:
        check_float_weights(vae_sd, f"VAE {external}")
    conv = _vae_to_diffusers(vae_sd, meta_vae)
    expected = {k: v.shape for k, v in meta_vae.state_dict().items()}
    problem = None if any(k in conv for k in expected) else "it holds no VAE weights of this layout"
    show = (lambda k: k) if external is not None else (lambda k: VAE_PREFIX + vae_key_to_ldm(k, meta_vae.config))
    problem = problem or _fit_problem(conv, expected, show)
    if problem:
        if external is not None:
            raise ModelError(f"VAE {external} does not fit: {problem} ({_where(config_dir)})")
        raise ModelError(f"checkpoint {ckpt_name} has an unusable VAE: {problem} ({_where(config_dir)})")
    return _fill(meta_vae, conv)


def load_vae_file(vae_path, *, config_dir=SHIPPED_CONFIG, device="cpu", dtype=torch.float32):
    """An external VAE file (LDM or diffusers layout) as an AutoencoderKL that fits `config_dir`'s model."""
    vae_path = Path(vae_path)
    _, meta_vae, _ = _meta_models(Path(config_dir), ("vae",))
    sd = read_state_dict(vae_path, "VAE")
    vae = _build_vae(sd, Path(config_dir), meta_vae, dtype, external=vae_path.name)
    return _finish(vae, device, dtype)


def _finish(module, device, dtype):
    # diffusers warns on every .to(dtype) of a ModelMixin: cast only when something differs.
    if any(t.is_floating_point() and t.dtype != dtype for t in module.parameters()):
        module.to(dtype=dtype)
    module.to(device)
    module.eval()
    module.requires_grad_(False)
    for name, p in list(module.named_parameters()) + list(module.named_buffers()):
        if p.device.type == "meta":  # diffusers would otherwise leave unloaded weights empty
            raise ModelError(f"internal error: {type(module).__name__} weight {name} was not loaded")
    return module


# -- checkpoint ---------------------------------------------------------------------------------------------------

def load_checkpoint(path, *, vae_path=None, device="cpu", dtype=torch.float32, auto_vae: bool = True,
                    cache_dir=None, config_dir=None) -> LoadedModel:
    """Load an SD 1.5 single-file checkpoint (.safetensors, or .ckpt/.pt read with weights_only).

    VAE choice: `vae_path` if given; else, with `auto_vae` (A1111's "Automatic"), `<stem>.vae.*` beside the
    checkpoint; else the checkpoint's own VAE; a checkpoint without one falls back to the sidecar, else fails.
    `cache_dir`: where hashes are cached (`<data_dir>/.cache`). `config_dir` overrides the config lookup."""
    from transformers import CLIPTokenizer

    from .ldm_convert import unet_key_to_ldm
    from .modules import SDModules

    path = Path(path)
    device = torch.device(device)
    sd = _normalize_clip_keys(read_state_dict(path))
    arch = detect_architecture(sd)
    if arch != "SD 1.5":
        raise ModelError(f"{path.name} is not an SD 1.5 checkpoint (looks like {arch})")
    check_float_weights(sd, f"checkpoint {path.name}", (UNET_PREFIX, VAE_PREFIX, CLIP_PREFIX))
    conv_in = sd.get(UNET_PREFIX + "input_blocks.0.0.weight")
    if conv_in is not None and conv_in.ndim == 4 and conv_in.shape[1] == 9:
        raise ModelError(f"{path.name} is an SD 1.5 inpainting model (9 input channels); "
                         f"only txt2img checkpoints (4 input channels) are supported")
    cfg = Path(config_dir) if config_dir is not None else config_dir_for(path)
    meta_unet, meta_vae, meta_te = _meta_models(cfg)

    exp_unet = {k: v.shape for k, v in unet_to_ldm(meta_unet.state_dict(), meta_unet.config).items()}
    exp_te = {k: v.shape for k, v in text_encoder_to_ldm(meta_te.state_dict()).items()}
    for what, prefix, exp in (("UNet", UNET_PREFIX, exp_unet), ("text encoder", CLIP_PREFIX, exp_te)):
        if not any(k.startswith(prefix) for k in sd):
            raise ModelError(f"checkpoint {path.name} has no {what} weights (no {prefix}* keys)")
        problem = _fit_problem(sd, exp)
        if problem:
            raise ModelError(f"checkpoint {path.name} has an incomplete or foreign {what}: {problem} "
                             f"({_where(cfg)})")

    # VAE resolution, then validation before anything heavy is built.
    own_vae = {k: v for k, v in sd.items() if k.startswith(VAE_PREFIX)}
    ext = Path(vae_path) if vae_path is not None else None
    if ext is None and (auto_vae or not own_vae):
        ext = find_sidecar_vae(path)
    if ext is None and not own_vae:
        raise ModelError(
            f"checkpoint {path.name} has no VAE: put a VAE in models/VAE and select it, or place "
            f"{path.stem}.vae.safetensors beside the checkpoint")
    if ext is not None:
        vae = _build_vae(read_state_dict(ext, "VAE"), cfg, meta_vae, dtype, external=ext.name)
    else:
        vae = _build_vae(own_vae, cfg, meta_vae, dtype, external=None, ckpt_name=path.name)
    del own_vae
    # The weights go straight into the empty models under their diffusers names (no second model build, no
    # from_single_file: the same tensors, checked against diffusers' own loader in the tests).
    unet = _fill(meta_unet, {k: sd[UNET_PREFIX + unet_key_to_ldm(k, meta_unet.config)]
                             for k in meta_unet.state_dict()})
    text_encoder = _fill(meta_te, {k: sd[CLIP_PREFIX + k.removeprefix("text_model.")] for k in meta_te.state_dict()})
    del sd
    tokenizer = CLIPTokenizer.from_pretrained(_sub(cfg, "tokenizer"), local_files_only=True)

    for m in (unet, vae, text_encoder):
        _finish(m, device, dtype)
    pipe = SDModules(unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer)
    return LoadedModel(
        pipe=pipe, unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
        path=path, name=path.name, model_hash=hashing.model_hash(path, cache_dir),
        vae_path=ext, vae_name=ext.name if ext is not None else None,
        vae_hash=hashing.model_hash(ext, cache_dir) if ext is not None else None,
        device=device, dtype=dtype, config_dir=cfg,
    )
