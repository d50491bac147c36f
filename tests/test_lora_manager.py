import os

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from creationmix.errors import LoraError, PathError
from creationmix.lora import LoraLibrary, LoraManager, LoraRequest, extract_lora_tags
from lora_fixtures import (CONV_LAYER, kohya_lora, loha_fake, merged_delta, sdxl_fake, truncate, write_lora,
                           write_sidecar)

Q = "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k"
TE_Q = "encoder.layers.1.self_attn.q_proj"
TE_FC = "encoder.layers.0.mlp.fc1"


@pytest.fixture
def model(tiny_ckpt):
    from creationmix.models.loader import load_checkpoint

    return load_checkpoint(tiny_ckpt, device="cpu", dtype=torch.float32)


@pytest.fixture
def loras(model, tmp_path):
    """name -> kohya state dict, all written to tmp_path/Lora."""
    unet, te = model.pipe.unet, model.pipe.text_encoder
    sds = {
        "full": kohya_lora(unet, te, seed=1),
        "other": kohya_lora(unet, te, seed=2, rank=8, alpha=8),
        "te_only": kohya_lora(None, te, seed=3),
        "unet_only": kohya_lora(unet, None, seed=4),
        "ldm": kohya_lora(unet, None, seed=4, ldm_names=True),
    }
    for name, sd in sds.items():
        write_lora(tmp_path / "Lora" / f"{name}.safetensors", sd)
    write_lora(tmp_path / "Lora" / "favourite.safetensors", sds["full"])
    write_sidecar(tmp_path / "Lora" / "favourite.safetensors", preferred_weight=0.5)
    return sds


@pytest.fixture
def manager(model, loras, tmp_path):
    return LoraManager(model.pipe, LoraLibrary([tmp_path / "Lora"]), max_cached=8)


def _inputs():
    g = torch.Generator().manual_seed(7)
    return torch.randn(1, 4, 8, 8, generator=g), torch.randn(1, 8, 32, generator=g), torch.randint(0, 49407, (1, 8), generator=g)


X, CTX, IDS = _inputs()


def unet_out(model):
    with torch.no_grad():
        return model.pipe.unet(X, 500, CTX).sample


def te_out(model):
    with torch.no_grad():
        return model.pipe.text_encoder(IDS)[0]


def effective(mod: nn.Module, base_weight, delta, x):
    """What a layer with weight W + delta computes (the merged-weight reference)."""
    w = (base_weight.double() + delta).float()
    if isinstance(mod, nn.Conv2d):
        return F.conv2d(x, w, mod.bias, mod.stride, mod.padding)
    return F.linear(x, w, mod.bias)


def kohya_key(prefix, name):
    if prefix == "te":
        return "lora_te_text_model_" + name.replace(".", "_")
    return "lora_unet_" + name.replace(".", "_")


def check_layer(model, comp, name, x, contributions):
    """contributions: [(state dict, weight)]; the wrapped layer must equal W + sum(w * alpha/r * up@down)."""
    root = model.pipe.unet if comp == "unet" else model.pipe.text_encoder
    base = root.get_submodule(name)  # the checkpoint's own layer: its weight is never changed
    delta = sum(merged_delta(sd, kohya_key(comp, name), w) for sd, w in contributions)
    with torch.no_grad():
        got = base(x)
        want = effective(base, base.weight, delta, x)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("w", [1.0, 0.5, 0.0, -0.75])
def test_effect_equals_merged_weight(manager, model, loras, w):
    manager.activate([LoraRequest("full", w)])
    sd = loras["full"]
    check_layer(model, "unet", Q, torch.randn(2, 5, 32), [(sd, w)])
    check_layer(model, "unet", CONV_LAYER, torch.randn(1, 32, 8, 8), [(sd, w)])
    check_layer(model, "te", TE_Q, torch.randn(1, 3, 32), [(sd, w)])
    check_layer(model, "te", TE_FC, torch.randn(1, 3, 32), [(sd, w)])


def test_weight_zero_and_no_lora_bit_identical(manager, model):
    base_u, base_t = unet_out(model), te_out(model)
    manager.activate([LoraRequest("full", 1.0)])
    assert not torch.equal(unet_out(model), base_u) and not torch.equal(te_out(model), base_t)
    manager.activate([LoraRequest("full", 0.0)])
    assert torch.equal(unet_out(model), base_u) and torch.equal(te_out(model), base_t)
    manager.activate([])
    assert torch.equal(unet_out(model), base_u) and torch.equal(te_out(model), base_t)
    manager.activate([LoraRequest("full", 0.0, 1.0)])  # text encoder off, UNet on
    assert torch.equal(te_out(model), base_t) and not torch.equal(unet_out(model), base_u)


def test_cycles_then_unload_restore_fresh_model(manager, model, loras, tiny_ckpt):
    from creationmix.models.loader import load_checkpoint

    fresh = load_checkpoint(tiny_ckpt, device="cpu", dtype=torch.float32)
    base_u, base_t = unet_out(model), te_out(model)
    for _ in range(2):
        manager.activate([LoraRequest("full", 0.8)])
        manager.activate([LoraRequest("other", 1.0), LoraRequest("te_only", 0.5)])
        manager.activate([LoraRequest("unet_only", -1.0), LoraRequest("full", 0.3, 0.9)])
        manager.activate([])
        assert torch.equal(unet_out(model), base_u) and torch.equal(te_out(model), base_t)
    manager.unload_all()
    assert manager.cached == []
    for comp in ("unet", "text_encoder"):
        got, want = getattr(model.pipe, comp).state_dict(), getattr(fresh.pipe, comp).state_dict()
        assert got.keys() == want.keys()
        assert all(torch.equal(got[k], want[k]) for k in want)
    assert torch.equal(unet_out(model), base_u) and torch.equal(te_out(model), base_t)
    manager.activate([LoraRequest("full", 1.0)])  # usable again after a full unload
    check_layer(model, "unet", Q, torch.randn(2, 5, 32), [(loras["full"], 1.0)])


def test_two_loras_at_once(manager, model, loras):
    manager.activate([LoraRequest("full", 0.7), LoraRequest("other", -0.4)])
    check_layer(model, "unet", Q, torch.randn(2, 5, 32), [(loras["full"], 0.7), (loras["other"], -0.4)])
    check_layer(model, "te", TE_Q, torch.randn(1, 3, 32), [(loras["full"], 0.7), (loras["other"], -0.4)])
    check_layer(model, "unet", CONV_LAYER, torch.randn(1, 32, 8, 8), [(loras["full"], 0.7), (loras["other"], -0.4)])


def test_split_te_unet_weights(manager, model, loras):
    _, reqs = extract_lora_tags("<lora:full:te=0.3:unet=0.8> <lora:other:0.2:0.6>")
    manager.activate(reqs)
    sd, sd2 = loras["full"], loras["other"]
    check_layer(model, "unet", Q, torch.randn(2, 5, 32), [(sd, 0.8), (sd2, 0.6)])
    check_layer(model, "te", TE_Q, torch.randn(1, 3, 32), [(sd, 0.3), (sd2, 0.2)])


def test_ldm_names_apply_like_diffusers_names(manager, model):
    manager.activate([LoraRequest("unet_only", 0.9)])
    a = unet_out(model)
    manager.activate([LoraRequest("ldm", 0.9)])
    assert torch.equal(unet_out(model), a)


def test_strength_change_does_not_reload(manager, model, loras):
    manager.activate([LoraRequest("full", 1.0)])
    assert manager.load_count == 1
    for w in (0.1, 0.5, 0.0, 2.0, 0.25):
        manager.activate([LoraRequest("full", w)])
    check_layer(model, "unet", Q, torch.randn(2, 5, 32), [(loras["full"], 0.25)])
    manager.activate([LoraRequest("full", 0.25), LoraRequest("other", 1.0)])
    manager.activate([LoraRequest("other", 1.0)])
    manager.activate([LoraRequest("full", 1.0)])
    assert manager.load_count == 2


def test_lru_eviction(model, loras, tmp_path):
    m = LoraManager(model.pipe, LoraLibrary([tmp_path / "Lora"]), max_cached=2)
    for name in ("full", "other", "te_only"):
        m.activate([LoraRequest(name, 1.0)])
    assert m.cached == ["other", "te_only"] and m.load_count == 3
    assert set(hooked(model).values()) == {(m.active[0].adapter,)}  # evicted LoRAs run nowhere
    m.activate([LoraRequest("full", 1.0)])
    assert m.load_count == 4 and m.cached == ["te_only", "full"]
    check_layer(model, "unet", Q, torch.randn(2, 5, 32), [(loras["full"], 1.0)])
    # more LoRAs at once than the cache holds: all of them still apply
    m.activate([LoraRequest(n, 0.5) for n in ("full", "other", "unet_only")])
    check_layer(model, "unet", Q, torch.randn(2, 5, 32), [(loras[n], 0.5) for n in ("full", "other", "unet_only")])


def test_te_changed_tracking(manager):
    manager.activate([LoraRequest("unet_only", 1.0)])
    assert not manager.te_changed and manager.te_key == ()
    manager.activate([LoraRequest("unet_only", 0.4)])
    assert not manager.te_changed
    v = manager.te_version
    manager.activate([LoraRequest("unet_only", 0.4), LoraRequest("te_only", 1.0)])
    assert manager.te_changed and manager.te_version == v + 1
    key = manager.te_key
    manager.activate([LoraRequest("unet_only", 0.9), LoraRequest("te_only", 1.0)])
    assert not manager.te_changed and manager.te_key == key
    manager.activate([LoraRequest("unet_only", 0.9), LoraRequest("te_only", 0.5)])
    assert manager.te_changed
    manager.activate([LoraRequest("full", 1.0, 0.0)])
    assert manager.te_changed
    manager.activate([LoraRequest("full", 0.0, 1.0)])
    assert manager.te_changed and manager.te_key == ()


def test_default_weight_from_sidecar(manager, model, loras):
    _, reqs = extract_lora_tags("<lora:favourite>")
    [active] = manager.activate(reqs)
    assert (active.te_weight, active.unet_weight) == (0.5, 0.5)
    check_layer(model, "unet", Q, torch.randn(2, 5, 32), [(loras["full"], 0.5)])


def test_adapter_weights_frozen(manager, model):
    manager.activate([LoraRequest("full", 1.0), LoraRequest("other", 0.5)])
    manager.activate([LoraRequest("other", 0.7)])
    for comp in (model.pipe.unet, model.pipe.text_encoder):
        assert not any(p.requires_grad for p in comp.parameters())


def hooked(model) -> dict[str, tuple]:
    """layer -> what runs on it besides the checkpoint's own weights (read off the modules' forward hooks)."""
    out = {}
    for comp in ("unet", "text_encoder"):
        for name, mod in getattr(model.pipe, comp).named_modules():
            for hook in mod._forward_hooks.values():
                out[f"{comp}.{name}"] = out.get(f"{comp}.{name}", ()) + tuple(e[3] for e in hook.entries)
    return out


def _snapshot(model):
    return unet_out(model), te_out(model), hooked(model)


def test_corrupt_file_leaves_model_as_it_was(manager, model, loras, tmp_path):
    manager.activate([LoraRequest("full", 0.6)])
    before = _snapshot(model)
    truncate(write_lora(tmp_path / "Lora" / "cut.safetensors", loras["other"]), 0.7)
    (tmp_path / "Lora" / "junk.safetensors").write_bytes(b"garbage")
    write_lora(tmp_path / "Lora" / "loha.safetensors", loha_fake())
    write_lora(tmp_path / "Lora" / "xl.safetensors", sdxl_fake())
    write_lora(tmp_path / "Lora" / "xl_pickle.pt", sdxl_fake())  # no header: refused when converting
    write_lora(tmp_path / "Lora" / "loha_pickle.pt", loha_fake())
    manager.library.refresh()
    cases = {"cut": "truncated", "junk": "truncated", "loha": "LoHa LoRAs are not supported yet",
             "xl": "made for SDXL", "xl_pickle": "made for SDXL, this checkpoint is SD 1.5",
             "loha_pickle": "LoHa LoRAs are not supported yet"}
    for name, msg in cases.items():
        with pytest.raises(LoraError, match=msg):
            manager.activate([LoraRequest("other", 1.0), LoraRequest(name, 1.0)])
        after = _snapshot(model)
        assert torch.equal(after[0], before[0]) and torch.equal(after[1], before[1]) and after[2] == before[2]
        assert [a.name for a in manager.active] == ["full"]
    assert manager.load_count == 1


@pytest.mark.parametrize("which", ["first", "last"])
def test_failure_while_applying_leaves_the_previous_loras(manager, model, monkeypatch, which):
    """A hook that cannot be registered (the first new one, or the last, when all others are in) fails the whole
    call: the LoRAs that ran before still run, exactly as before, and nothing new counts as loaded."""
    manager.activate([LoraRequest("unet_only", 0.6)])
    before, loads = _snapshot(model), manager.load_count
    new_layers = {layer for n in ("full", "other") for layer in manager._read(manager.library.resolve(n)).layers}
    new_layers -= {k for k in before[2]}
    assert len(new_layers) > 10  # "last": many hooks registered already, which must go again
    fail_at = 1 if which == "first" else len(new_layers)
    real, calls = nn.Module.register_forward_hook, []

    def fails(self, *a, **k):
        calls.append(1)
        if len(calls) == fail_at:
            raise RuntimeError("simulated failure while applying")
        return real(self, *a, **k)

    monkeypatch.setattr(nn.Module, "register_forward_hook", fails)
    with pytest.raises(LoraError, match="full, other could not be applied.*simulated failure"):
        manager.activate([LoraRequest("full", 1.0), LoraRequest("other", 1.0)])
    assert len(calls) == fail_at
    after = _snapshot(model)
    assert torch.equal(after[0], before[0]) and torch.equal(after[1], before[1]) and after[2] == before[2]
    assert manager.cached == ["unet_only"] and manager.load_count == loads and manager.te_key == ()
    monkeypatch.undo()
    manager.activate([LoraRequest("full", 1.0), LoraRequest("other", 1.0)])
    assert manager.load_count == loads + 2
    check_layer(model, "unet", Q, torch.randn(2, 5, 32), [(loras_sd(manager, "full"), 1.0),
                                                          (loras_sd(manager, "other"), 1.0)])


def loras_sd(manager, name):
    from safetensors.torch import load_file
    return load_file(manager.library.resolve(name).path)


def test_no_lora_means_no_hook(manager, model):
    manager.activate([LoraRequest("full", 1.0), LoraRequest("te_only", 0.5)])
    layers = hooked(model)
    assert any(k.startswith("unet.") for k in layers) and any(k.startswith("text_encoder.") for k in layers)
    manager.activate([LoraRequest("full", 0.0, 1.0)])  # text encoder weight 0: no hook there at all
    assert hooked(model) and not any(k.startswith("text_encoder.") for k in hooked(model))
    manager.activate([])
    assert hooked(model) == {}
    manager.activate([LoraRequest("te_only", 1.0)])
    manager.unload_all()
    assert hooked(model) == {} and manager.cached == []


@pytest.mark.filterwarnings("ignore:Already found a `peft_config`")
def test_same_outputs_as_peft_adapters(manager, model, tiny_ckpt):
    """The hooks compute what peft's LoRA layers (diffusers' load_lora_weights, our former path) compute, bit for
    bit, at two LoRAs with split weights: images made before the change stay the same."""
    from diffusers.loaders import StableDiffusionLoraLoaderMixin
    from creationmix.models.loader import load_checkpoint

    ref = load_checkpoint(tiny_ckpt, device="cpu", dtype=torch.float32)

    class Loader(StableDiffusionLoraLoaderMixin):
        hf_device_map = None
        unet, text_encoder = ref.pipe.unet, ref.pipe.text_encoder
        components = {"unet": ref.pipe.unet, "text_encoder": ref.pipe.text_encoder}

    loader = Loader()
    reqs = [LoraRequest("full", 0.7, -0.4), LoraRequest("other", 1.2)]
    manager.activate(reqs)
    for i, req in enumerate(reqs):
        conv = manager._read(manager.library.resolve(req.name))
        loader.load_lora_weights(conv.state_dict, adapter_name=f"a{i}")
    loader.set_adapters(["a0", "a1"], adapter_weights=[{"unet": -0.4, "text_encoder": 0.7}, 1.2])
    assert torch.equal(unet_out(model), unet_out(ref)) and torch.equal(te_out(model), te_out(ref))


def test_names_resolve_inside_folders_only(manager):
    with pytest.raises(PathError):
        manager.activate([LoraRequest("../../etc/passwd", 1.0)])
    with pytest.raises(LoraError, match="closest: full"):
        manager.activate([LoraRequest("fulll", 1.0)])


def test_edited_file_reloads(manager, model, loras, tmp_path):
    manager.activate([LoraRequest("unet_only", 1.0)])
    path = tmp_path / "Lora" / "unet_only.safetensors"
    write_lora(path, loras["other"])
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10_000_000))
    manager.activate([LoraRequest("unet_only", 1.0)])
    assert manager.load_count == 2
    check_layer(model, "unet", Q, torch.randn(2, 5, 32), [(loras["other"], 1.0)])


def test_lora_hashes_for_infotext(manager):
    manager.activate([LoraRequest("full", 1.0), LoraRequest("te_only", 0.5)])
    text = manager.lora_hashes()
    assert text.startswith("full: ") and ", te_only: " in text and len(text.split(": ")[1].split(",")[0]) == 12


def test_prefetch_reads_in_the_background_and_activate_uses_it(manager, model):
    """The next LoRA of a job is read and checked off-thread; activating it then loads the same weights as a
    plain activate (no second file read), and a prefetch never changes the pipeline by itself."""
    before = _snapshot(model)
    assert manager.prefetch([LoraRequest("full", 1.0), LoraRequest("no_such_lora", 1.0)]) == 1
    assert manager.prefetch([LoraRequest("full", 1.0)]) == 0  # already on its way
    assert _snapshot(model)[2] == before[2] and manager.cached == [] and manager.load_count == 0
    manager.activate([LoraRequest("full", 0.7)])
    assert manager.prefetch_hits == 1 and manager.load_count == 1
    via_prefetch = _snapshot(model)
    manager.unload_all()
    manager.activate([LoraRequest("full", 0.7)])  # read on this thread
    assert manager.prefetch_hits == 1
    direct = _snapshot(model)
    assert torch.equal(via_prefetch[0], direct[0]) and torch.equal(via_prefetch[1], direct[1])
    assert manager.prefetch([LoraRequest("full", 1.0)]) == 0  # loaded: nothing to read


def test_prefetch_of_a_broken_file_is_reported_by_activate(manager, loras, tmp_path):
    truncate(write_lora(tmp_path / "Lora" / "cut.safetensors", loras["other"]), 0.7)  # header fine, data cut
    manager.library.refresh()
    manager.prefetch([LoraRequest("cut", 1.0)])
    with pytest.raises(LoraError, match="truncated"):
        manager.activate([LoraRequest("cut", 1.0)])
    assert manager.prefetch_hits == 0 and manager.active == [] and manager.load_count == 0
