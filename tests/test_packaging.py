"""`pip install .` ships what the app needs: every module, the preset cards (from the one top-level presets/
folder), the SD 1.5 configs and tokenizer, and the `creationmix` console script."""
from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from importlib.metadata import version
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _setuptools_ok() -> bool:
    try:
        return tuple(int(x) for x in version("setuptools").split(".")[:2]) >= (70, 1)
    except Exception:
        return False


@pytest.mark.skipif(not _setuptools_ok(), reason="needs setuptools>=70.1 to build a wheel offline")
def test_wheel_contents(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md", "requirements.txt"):
        shutil.copy2(ROOT / name, src / name)
    for name in ("creationmix", "presets"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                        str(src), "-w", str(tmp_path / "dist")], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    wheel = next((tmp_path / "dist").glob("creationmix-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    modules = {p.relative_to(ROOT).as_posix() for p in (ROOT / "creationmix").rglob("*.py")}
    assert modules <= names, sorted(modules - names)
    presets = {f"creationmix/_presets/{p.name}" for p in (ROOT / "presets").glob("*.toml")}
    assert presets and presets <= names
    resources = {p.relative_to(ROOT).as_posix() for p in (ROOT / "creationmix" / "resources" / "sd15").rglob("*")
                 if p.is_file()}
    assert {"creationmix/resources/sd15/tokenizer/vocab.json", "creationmix/resources/sd15/unet/config.json"} \
        <= resources <= names
    assert not any(n.startswith(("tests/", "presets/")) for n in names)  # one copy of the cards, no test code
    meta = next(n for n in names if n.endswith("entry_points.txt"))
    entry = zipfile.ZipFile(wheel).read(meta).decode()
    assert "creationmix = creationmix.cli:run" in entry and "creationmix-ui = creationmix.ui.launcher:run" in entry
    requires = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("METADATA"))).decode()
    assert "Requires-Dist: diffusers==" in requires and "Provides-Extra: ray" in requires


def test_checkout_reads_the_top_level_presets():
    from creationmix.presets import PRESETS_DIR
    assert PRESETS_DIR == ROOT / "presets" and not (ROOT / "creationmix" / "_presets").exists()
