"""tests/data/ holds copies of the shared reference data so the suite runs in a plain clone; when the shared
folder sits beside the clone (../shared), the copies must equal it."""
from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
COPIES = {"recipes": ROOT / "tests" / "data" / "recipes"}


@pytest.mark.parametrize("name", sorted(COPIES))
def test_copy_is_there(name):
    assert sorted(p.name for p in COPIES[name].iterdir())


@pytest.mark.parametrize("name", sorted(COPIES))
def test_copy_equals_shared(name):
    shared = ROOT.parent / "shared" / name
    if not shared.is_dir():
        pytest.skip(f"{shared} not found (a plain clone): nothing to compare with")
    want = {p.name: p.read_bytes() for p in shared.iterdir() if p.is_file()}
    got = {p.name: p.read_bytes() for p in COPIES[name].iterdir() if p.is_file()}
    assert got == want
