import json

import pytest
import torch

from creationmix.errors import LoraError, PathError
from creationmix.lora.formats import load_lora_file
from creationmix.lora.library import LoraLibrary, read_safetensors_header, top_tags
from lora_fixtures import (KOHYA_METADATA, loha_fake, sd2_fake, sdxl_fake, truncate, write_garbage, write_lora,
                           write_sidecar)


def _sd(seed=0):
    g = torch.Generator().manual_seed(seed)
    p = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q"
    return {f"{p}.lora_down.weight": torch.randn(4, 32, generator=g), f"{p}.lora_up.weight": torch.randn(32, 4, generator=g),
            f"{p}.alpha": torch.tensor(2.0)}


@pytest.fixture
def lora_dir(tmp_path):
    d = tmp_path / "Lora"
    write_lora(d / "style.safetensors", _sd(), KOHYA_METADATA)
    write_sidecar(d / "style.safetensors", preferred_weight=0.7, activation_text="tinystyle, 1girl",
                  negative_text="lowres", sd_version="SD1")
    (d / "style.preview.png").write_bytes(b"\x89PNG fake")
    write_lora(d / "chars" / "alice.safetensors", _sd(1))
    (d / "chars" / "alice.png").write_bytes(b"\x89PNG fake")
    write_lora(d / "old" / "alice.safetensors", _sd(2))  # same stem in another subfolder
    write_lora(d / "legacy.pt", _sd(3))
    (d / "notes.txt").write_text("not a LoRA")
    return d


def test_scan_names_metadata_sidecar_preview(lora_dir):
    lib = LoraLibrary([lora_dir])
    assert sorted(lib.names()) == ["chars/alice", "legacy", "old/alice", "style"]
    info = lib.resolve("style")
    assert info.output_name == "tiny_style"
    assert info.network_dim == 4 and info.network_alpha == 2.0
    assert info.base_model_version == "sd_v1" and info.sd_version == "SD1"
    assert info.sd_model_name == "v1-5-pruned-emaonly.safetensors"
    assert info.trigger_tags[:3] == ["tinystyle", "1girl", "solo"]
    assert info.preferred_weight == 0.7 and info.sidecar_weight == 0.7 and info.base_model == "SD1"
    assert info.activation_text == "tinystyle, 1girl" and info.negative_text == "lowres"
    assert info.preview == lora_dir / "style.preview.png"
    assert info.tensor_count == 3
    assert lib.resolve("chars/alice").preview == lora_dir / "chars" / "alice.png"
    assert lib.resolve("legacy").metadata == {} and lib.resolve("legacy").error is None
    assert lib.resolve("legacy").base_model == "" and lib.resolve("legacy").preferred_weight == 1.0
    assert [i.name for i in lib.scan()] == lib.names()


def test_metadata_read_without_loading_tensors(lora_dir, monkeypatch):
    import safetensors
    import safetensors.torch

    def boom(*a, **k):
        raise AssertionError("tensors were loaded while listing")

    monkeypatch.setattr(safetensors.torch, "load_file", boom)
    monkeypatch.setattr(safetensors.torch, "load", boom)
    monkeypatch.setattr(safetensors, "safe_open", boom)
    monkeypatch.setattr(torch, "load", boom)
    lib = LoraLibrary([lora_dir])
    assert lib.resolve("style").network_dim == 4


def test_preferred_weight_zero_means_unset(tmp_path):
    write_lora(tmp_path / "a.safetensors", _sd())
    write_sidecar(tmp_path / "a.safetensors", preferred_weight=0)
    info = LoraLibrary(tmp_path).resolve("a")
    assert info.sidecar_weight is None and info.preferred_weight == 1.0


def test_duplicates_reported_and_addressable(lora_dir):
    lib = LoraLibrary([lora_dir])
    assert [s for s, _ in lib.duplicates] == ["alice"]
    assert lib.warnings and "alice" in lib.warnings[0]
    assert lib.resolve("alice").path == lora_dir / "chars" / "alice.safetensors"  # the first, sorted
    assert lib.resolve("old/alice").path == lora_dir / "old" / "alice.safetensors"
    assert lib.resolve("old\\alice.safetensors").path == lora_dir / "old" / "alice.safetensors"


def test_alias_and_case(lora_dir):
    lib = LoraLibrary([lora_dir])
    assert lib.resolve("tiny_style").name == "style"  # ss_output_name, A1111's alias
    assert lib.resolve("STYLE").name == "style"


@pytest.mark.parametrize("bad", ["../../x", "../Lora/style", "/etc/passwd", "C:/models/x", "c:\\x", "chars/../../x"])
def test_traversal_refused(lora_dir, bad):
    with pytest.raises(PathError):
        LoraLibrary([lora_dir]).resolve(bad)


def test_unknown_name_lists_closest(lora_dir):
    with pytest.raises(LoraError, match="closest: style"):
        LoraLibrary([lora_dir]).resolve("styel")
    with pytest.raises(LoraError, match="empty"):
        LoraLibrary([lora_dir / "nothing"]).resolve("x")


def test_two_roots_first_wins(tmp_path):
    write_lora(tmp_path / "a" / "x.safetensors", _sd())
    write_lora(tmp_path / "b" / "x.safetensors", _sd(1))
    lib = LoraLibrary([tmp_path / "a", tmp_path / "b"])
    assert lib.resolve("x").path == tmp_path / "a" / "x.safetensors"
    assert len(lib.duplicates) == 1


def test_corrupt_files_listed_with_error(tmp_path):
    good = write_lora(tmp_path / "good.safetensors", _sd())
    truncate(write_lora(tmp_path / "cut.safetensors", _sd(), KOHYA_METADATA), 0.9)
    write_garbage(tmp_path / "junk.safetensors")
    (tmp_path / "empty.safetensors").write_bytes(b"")
    hdr = tmp_path / "badjson.safetensors"
    hdr.write_bytes((10).to_bytes(8, "little") + b"{not json}")
    lib = LoraLibrary(tmp_path)
    assert lib.resolve("good").error is None
    for name in ("cut", "junk", "empty", "badjson"):
        info = lib.resolve(name)
        assert info.error, name
        with pytest.raises(LoraError):
            load_lora_file(info.path, name)
    assert read_safetensors_header(good)[1] == {}


def test_load_file_safetensors_and_pt(lora_dir):
    sd, meta = load_lora_file(lora_dir / "style.safetensors")
    assert meta["ss_network_dim"] == "4" and torch.equal(sd[next(iter(_sd()))], _sd()[next(iter(_sd()))])
    sd, meta = load_lora_file(lora_dir / "legacy.pt")
    assert meta == {} and len(sd) == 3


def test_pt_with_code_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"x": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(LoraError):
        load_lora_file(tmp_path / "evil.pt")


def test_hash_lazy_autov3(lora_dir):
    import hashlib

    info = LoraLibrary(lora_dir).resolve("style")
    data = (lora_dir / "style.safetensors").read_bytes()
    n = int.from_bytes(data[:8], "little")
    assert info.hash == hashlib.sha256(data[8 + n:]).hexdigest()[:12]


def test_top_tags_ignores_junk():
    freq = {"a": {"x": 3, "y": "2", "z": "bad"}, "b": {"x": 1, " ": 9}, "c": "nope"}
    assert top_tags(freq) == ["x", "y"]
    assert json.loads(KOHYA_METADATA["ss_tag_frequency"])


def test_refused_kinds_flagged_when_listing(tmp_path):
    write_lora(tmp_path / "loha.safetensors", loha_fake())
    write_lora(tmp_path / "xl.safetensors", sdxl_fake(), {"ss_base_model_version": "sdxl_base_v1-0"})
    write_lora(tmp_path / "two.safetensors", sd2_fake())
    write_lora(tmp_path / "notlora.safetensors", {"model.diffusion_model.x.weight": torch.zeros(2)})
    lib = LoraLibrary(tmp_path)
    assert "LoHa LoRAs are not supported yet" in lib.resolve("loha").error
    assert "made for SDXL" in lib.resolve("xl").error and lib.resolve("xl").base_model == "SDXL"
    assert "made for SD 2.x" in lib.resolve("two").error
    assert "not a LoRA" in lib.resolve("notlora").error


def test_listing_is_torch_free():
    import subprocess
    import sys

    code = ("import sys, creationmix.lora as l, creationmix.lora.library, creationmix.lora.formats; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_preview_lookup_follows_a1111_order(tmp_path):
    from creationmix.lora.library import _find_preview

    lora = tmp_path / "style.safetensors"
    assert _find_preview(lora) is None
    (tmp_path / "style.preview.jpg").write_bytes(b"x")
    assert _find_preview(lora).name == "style.preview.jpg"
    (tmp_path / "style.preview.png").write_bytes(b"x")
    assert _find_preview(lora).name == "style.preview.png"  # png before jpg
    (tmp_path / "style.png").write_bytes(b"x")
    assert _find_preview(lora).name == "style.png"  # A1111: <stem>.<ext> before <stem>.preview.<ext>
