"""`parameters` in PNG text chunks and JPEG/WebP EXIF UserComment: round trips, A1111's encoding, failures."""
from __future__ import annotations

import io
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, PngImagePlugin

from creationmix.errors import CreationMixError
from creationmix.pnginfo import (EXIF_IFD, USER_COMMENT, decode_user_comment, encode_user_comment,
                                 read_parameters, save_jpeg, save_webp, write_png)

INFOTEXT = ("1girl, ünïcödé 猫 😀, (masterpiece:1.2)\n"
            "Negative prompt: EasyNegative,\n  second line\t\n"
            'Steps: 30, Sampler: DPM++ 2M, Schedule type: Karras, Lora hashes: "a: 1, b: 2"')
LATIN1 = "plain Latin-1: café, naïve\nSteps: 20, Sampler: Euler, CFG scale: 7"


def _image(mode="RGB"):
    return Image.new(mode, (32, 24), (10, 200, 30, 255)[: len(mode)] if mode != "L" else 128)


@pytest.mark.parametrize("text", [INFOTEXT, LATIN1, "x", "trailing newline\n", " leading space"])
def test_png_round_trip_is_byte_exact(tmp_path, text):
    path = write_png(_image(), tmp_path / "out.png", text)
    assert path == tmp_path / "out.png"
    assert read_parameters(path) == text
    assert read_parameters(str(path)) == text
    assert read_parameters(path.read_bytes()) == text
    with Image.open(path) as im:
        assert read_parameters(im) == text
        assert im.size == (32, 24)


@settings(max_examples=40, deadline=None)
@given(st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), min_size=1, max_size=80))
def test_png_round_trip_any_text(tmp_path_factory, text):
    path = write_png(_image(), tmp_path_factory.mktemp("png") / "a.png", text)
    assert read_parameters(path) == text


def test_png_written_like_a1111_reads_it(tmp_path):
    path = write_png(_image("RGBA"), tmp_path / "a.png", INFOTEXT)
    with Image.open(path) as im:
        assert im.text["parameters"] == INFOTEXT  # the chunk name A1111 (and every PNG Info tab) looks at


def test_png_text_chunk_after_image_data_is_found(tmp_path):
    # Some tools put text chunks after IDAT; Pillow only sees them in .text (which reads to the end).
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", "late text\nSteps: 1, Sampler: Euler, CFG scale: 7", zip=True)
    path = tmp_path / "a.png"
    _image().save(path, pnginfo=info)
    assert read_parameters(path) == "late text\nSteps: 1, Sampler: Euler, CFG scale: 7"


def test_write_png_replaces_atomically_and_leaves_no_temp(tmp_path):
    target = tmp_path / "a.png"
    write_png(_image(), target, "first")
    write_png(_image(), target, "second")
    assert read_parameters(target) == "second"
    assert sorted(os.listdir(tmp_path)) == ["a.png"]


def test_failed_write_leaves_no_partial_file(tmp_path):
    bad = _image()
    bad.save = lambda *a, **k: (_ for _ in ()).throw(OSError("disk full"))  # fails mid-save
    with pytest.raises(CreationMixError, match="disk full"):
        write_png(bad, tmp_path / "a.png", "x")
    assert os.listdir(tmp_path) == []


def test_failed_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "a.png"
    write_png(_image(), target, "old")
    bad = _image()
    bad.save = lambda *a, **k: (_ for _ in ()).throw(ValueError("boom"))
    with pytest.raises(CreationMixError):
        write_png(bad, target, "new")
    assert read_parameters(target) == "old"
    assert os.listdir(tmp_path) == ["a.png"]


def test_write_into_missing_folder_is_a_domain_error(tmp_path):
    with pytest.raises(CreationMixError, match="does not exist"):
        write_png(_image(), tmp_path / "nope" / "a.png", "x")


@pytest.mark.parametrize("save, ext", [(save_jpeg, "jpg"), (save_webp, "webp")])
@pytest.mark.parametrize("text", [INFOTEXT, LATIN1])
def test_jpeg_and_webp_round_trip(tmp_path, save, ext, text):
    path = save(_image("RGBA"), tmp_path / f"out.{ext}", text)
    assert read_parameters(path) == text
    with Image.open(path) as im:
        raw = im.getexif().get_ifd(EXIF_IFD)[USER_COMMENT]
    assert raw == b"UNICODE\x00" + text.encode("utf-16-be")  # piexif's UserComment.dump(..., "unicode")
    assert os.listdir(tmp_path) == [f"out.{ext}"]


@pytest.mark.parametrize("save, ext", [(save_jpeg, "jpg"), (save_webp, "webp"), (write_png, "png")])
def test_no_metadata_reads_none(tmp_path, save, ext):
    path = save(_image(), tmp_path / f"out.{ext}", None)
    assert read_parameters(path) is None


def test_plain_images_have_no_metadata(tmp_path):
    for fmt in ("PNG", "JPEG", "WEBP", "GIF", "BMP"):
        path = tmp_path / f"a.{fmt.lower()}"
        _image().save(path, format=fmt)
        assert read_parameters(path) is None, fmt
    assert read_parameters(_image()) is None


@pytest.mark.parametrize("data", [b"", b"hello, this is text", b"\x89PNG\r\n\x1a\n broken"])
def test_not_an_image(tmp_path, data):
    path = tmp_path / "a.png"
    path.write_bytes(data)
    with pytest.raises(CreationMixError, match="not an image"):
        read_parameters(path)
    with pytest.raises(CreationMixError, match="not an image"):
        read_parameters(data)


def test_missing_file_is_not_an_image(tmp_path):
    with pytest.raises(CreationMixError, match="not an image"):
        read_parameters(tmp_path / "missing.png")
    with pytest.raises(CreationMixError, match="not an image"):
        read_parameters(tmp_path)


# -- UserComment variants other tools write ------------------------------------------------------------------
@pytest.mark.parametrize("raw, text", [
    (b"UNICODE\x00" + "héllo, 猫\nSteps: 1".encode("utf-16-be"), "héllo, 猫\nSteps: 1"),
    (b"UNICODE\x00" + "héllo, 猫\nSteps: 1".encode("utf-16-le"), "héllo, 猫\nSteps: 1"),
    (b"UNICODE\x00\xfe\xff" + "bom be".encode("utf-16-be"), "bom be"),
    (b"UNICODE\x00\xff\xfe" + "bom le".encode("utf-16-le"), "bom le"),
    (b"UNICODE\x00" + "nul end".encode("utf-16-be") + b"\x00\x00", "nul end"),
    (b"ASCII\x00\x00\x00plain ascii\x00", "plain ascii"),
    (b"\x00" * 8 + "undefined utf8 é".encode(), "undefined utf8 é"),
    ("already text".encode(), "already text"),
    ("str from pillow", "str from pillow"),
])
def test_decode_user_comment_variants(raw, text):
    assert decode_user_comment(raw) == text


def test_encode_user_comment_is_piexif_unicode():
    assert encode_user_comment("ab") == b"UNICODE\x00\x00a\x00b"


def test_jpeg_with_little_endian_comment_is_read(tmp_path):
    exif = Image.Exif()
    exif.get_ifd(EXIF_IFD)[USER_COMMENT] = b"UNICODE\x00" + "le text, Steps: 5".encode("utf-16-le")
    buf = io.BytesIO()
    _image().save(buf, format="JPEG", exif=exif.tobytes())
    assert read_parameters(buf.getvalue()) == "le text, Steps: 5"


def test_jpeg_comment_segment_is_read(tmp_path):
    path = tmp_path / "c.jpg"
    _image().save(path, format="JPEG", comment="from a COM segment")
    assert read_parameters(path) == "from a COM segment"
