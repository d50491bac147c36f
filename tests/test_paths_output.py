import datetime as dt

import pytest
from PIL import Image

from creationmix.errors import PathError
from creationmix.output import dated_folder, next_sequence_number, save_numbered_png
from creationmix.paths import Folders, check_relative_name, resolve_file


@pytest.mark.parametrize("name", ["../x", "a/../../x", "/etc/passwd", "C:\\x", "c:x", "..\\..\\x", ""])
def test_names_cannot_leave_the_folder(name):
    with pytest.raises(PathError):
        check_relative_name(name)


def test_resolve_file_only_inside_roots(tmp_path):
    root = tmp_path / "models" / "Lora"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "a.safetensors").write_bytes(b"x")
    (tmp_path / "secret.safetensors").write_bytes(b"x")
    assert resolve_file("a", [root], (".safetensors",), "LoRA") == root / "sub" / "a.safetensors"
    assert resolve_file("sub/a", [root], (".safetensors",), "LoRA") == root / "sub" / "a.safetensors"
    with pytest.raises(PathError, match="contains '..'"):
        resolve_file("../../secret", [root], (".safetensors",), "LoRA")
    with pytest.raises(PathError, match="not found.*available: a.safetensors"):
        resolve_file("nope", [root], (".safetensors",), "LoRA")


def test_symlinked_model_inside_a_folder_is_followed(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (tmp_path / "outside.safetensors").write_bytes(b"x")
    (root / "link.safetensors").symlink_to(tmp_path / "outside.safetensors")
    assert resolve_file("link", [root], (".safetensors",), "VAE") == root / "link.safetensors"


def test_a1111_dir_is_read_but_outputs_stay_ours(tmp_path):
    f = Folders(tmp_path / "data", tmp_path / "webui")
    assert f.checkpoint_dirs == [tmp_path / "data/models/Stable-diffusion", tmp_path / "webui/models/Stable-diffusion"]
    assert f.outputs_dir == tmp_path / "data/outputs"


def test_numbered_png_never_overwrites(tmp_path):
    folder = dated_folder(tmp_path, today=dt.date(2026, 11, 25))
    assert folder == tmp_path / "txt2img-images" / "2026-11-25"
    img = Image.new("RGB", (8, 8))
    p0 = save_numbered_png(img, folder, 42, "hello")
    p1 = save_numbered_png(img, folder, 42, "hello")
    assert [p0.name, p1.name] == ["00000-42.png", "00001-42.png"]
    (folder / "00007-1.png").write_bytes(b"")
    assert next_sequence_number(folder) == 8
    assert Image.open(p0).text["parameters"] == "hello"
    assert not [p for p in folder.iterdir() if p.name.startswith(".tmp")]


def test_failed_write_leaves_nothing(tmp_path):
    class Broken(Image.Image):
        def save(self, *a, **k):
            raise OSError("disk full")
    folder = tmp_path / "out"
    with pytest.raises(OSError):
        save_numbered_png(Broken(), folder, 1, "x")
    assert list(folder.iterdir()) == []
