"""Shared fixtures: one tiny random SD 1.5-architecture checkpoint per session, and a fresh data dir per test."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

# Nothing in the suite may reach the network (HF hub included).
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import pytest  # noqa: E402

TINY_NAME = "tiny.safetensors"


def pytest_sessionstart(session):
    """Byte-compile the package once. Many tests start fresh interpreters (the CLI, app.py servers, Ray workers);
    with PYTHONDONTWRITEBYTECODE set (as on CI) each of them would otherwise compile every creationmix module
    it imports, again, as no user's machine does after the first launch."""
    import compileall

    compileall.compile_dir(str(Path(__file__).resolve().parent.parent / "creationmix"), quiet=1)


@pytest.fixture(scope="session")
def tiny_ckpt_dir(tmp_path_factory) -> Path:
    """A data dir (read-only by convention) holding models/Stable-diffusion/tiny.safetensors + tiny.config/."""
    from creationmix.models.tiny import write_tiny_checkpoint

    root = tmp_path_factory.mktemp("tiny_data")
    write_tiny_checkpoint(root / "models" / "Stable-diffusion" / TINY_NAME, seed=0)
    return root


@pytest.fixture(scope="session")
def tiny_ckpt(tiny_ckpt_dir) -> Path:
    """Path of the session's tiny checkpoint (do not modify it or its folder)."""
    return tiny_ckpt_dir / "models" / "Stable-diffusion" / TINY_NAME


@pytest.fixture
def folders(tmp_path, tiny_ckpt_dir):
    """creationmix.paths.Folders on a fresh tmp data dir with a copy of the tiny checkpoint (+ sidecar) in
    models/Stable-diffusion/ and empty Lora/VAE/embeddings/outputs folders. Free to modify."""
    from creationmix.paths import Folders

    data = tmp_path / "data"
    f = Folders(data_dir=data)
    f.ensure()
    src = tiny_ckpt_dir / "models" / "Stable-diffusion"
    dst = f.checkpoint_dirs[0]
    for p in src.iterdir():
        if p.is_dir():
            shutil.copytree(p, dst / p.name)
        else:
            shutil.copy2(p, dst / p.name)
    return f


@pytest.fixture(scope="session")
def tiny_model(tiny_ckpt):
    """The session's tiny checkpoint loaded with models.loader (CPU, fp32). Shared: do not mutate weights."""
    import torch

    from creationmix.models.loader import load_checkpoint

    return load_checkpoint(tiny_ckpt, device="cpu", dtype=torch.float32)


def pytest_collection_modifyitems(config, items):
    """Slow checks run only with CREATIONMIX_SLOW=1 (the default suite stays fast). GPU checks never fail CI by
    absence: without CUDA they are skipped with the reason shown."""
    if os.environ.get("CREATIONMIX_SLOW") != "1":
        slow = pytest.mark.skip(reason="slow check: set CREATIONMIX_SLOW=1 to run it")
        for item in items:
            if "slow" in item.keywords:
                item.add_marker(slow)
    try:
        import torch
        has_cuda = torch.cuda.is_available()
    except ImportError:
        has_cuda = False
    if has_cuda:
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
