"""The ServiceAPI contract: the real Service and the UI tests' FakeService implement every method of it with
a compatible signature (same parameter names, kinds and defaults), so the fake cannot drift from the real one."""
from __future__ import annotations

import inspect

import pytest

from creationmix.service import Service
from creationmix.service_api import ServiceAPI
from fake_service import FakeService

API_METHODS = sorted(n for n, v in vars(ServiceAPI).items() if callable(v) and not n.startswith("_"))


def _params(fn):
    return [(p.name, p.kind, p.default) for p in inspect.signature(fn).parameters.values() if p.name != "self"]


def test_protocol_lists_the_jobs():
    assert {"generate", "run_strength_sweep", "run_lora_previews", "selected_checkpoint"} <= set(API_METHODS)


@pytest.mark.parametrize("impl", [Service, FakeService], ids=lambda c: c.__name__)
@pytest.mark.parametrize("name", API_METHODS)
def test_implements_every_method_with_its_signature(impl, name):
    method = getattr(impl, name, None)
    assert method is not None, f"{impl.__name__} lacks {name}"
    want, got = _params(getattr(ServiceAPI, name)), _params(method)
    # An implementation may add keyword-only extras at the end, never drop or rename what the UI calls.
    assert got[:len(want)] == want, f"{impl.__name__}.{name}{inspect.signature(method)} != {want}"
    assert all(kind == inspect.Parameter.KEYWORD_ONLY and default is not inspect.Parameter.empty
               for _, kind, default in got[len(want):])


def test_fake_jobs_return_what_the_tab_reads(tmp_path):
    svc = FakeService(tmp_path)
    result = svc.run_strength_sweep(None, "paper_cut", "0, 1", 1, preset_id="in-general",
                                    overrides=dict(width=64, height=64, enable_hires=False, steps=2))
    assert len(result.grid_paths) == 1 and len(result.written) == 3
    report = svc.run_lora_previews("in-general")
    assert report.sheet_png.is_file() and [o.status for o in report.failed] == ["failed"]
