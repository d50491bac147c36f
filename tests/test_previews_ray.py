"""The previews job on a local Ray cluster (2 CPUs, up to 2 CPU actors) equals a local run, file for file."""
from __future__ import annotations

import pytest

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install -r requirements-ray.txt)")

from creationmix.compose import ServiceOptions, build_service  # noqa: E402
from creationmix.jobs import Control  # noqa: E402
from creationmix.presets_resolve import load_preset_by_id  # noqa: E402
from creationmix.previews.job import run_previews  # noqa: E402
from creationmix.previews.ray_runner import RayRenderer, RaySettings  # noqa: E402
from lora_fixtures import kohya_lora, write_garbage, write_lora  # noqa: E402

SMALL = dict(steps=2, width=64, height=64, enable_hires=False, sampler="Euler")
NAMES = ("l1", "l2", "l3", "sub/l4", "l5")


@pytest.fixture
def library(folders, tiny_model):
    d = folders.lora_dirs[0]
    for i, name in enumerate(NAMES):
        write_lora(d / f"{name}.safetensors", kohya_lora(tiny_model.pipe.unet, tiny_model.pipe.text_encoder,
                                                         seed=i, conv=False))
    return d


@pytest.fixture(scope="module", autouse=True)
def cluster():
    """One local cluster for the module, sized as RayRenderer sizes its own: 2 actors + 1 for Ray itself."""
    from creationmix.previews.ray_runner import local_ray_init_kwargs
    ray.init(**local_ray_init_kwargs(2))
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def preset():
    return load_preset_by_id("lora-preview")


def _previews(library):
    return {p.relative_to(library).as_posix(): p.read_bytes() for p in sorted(library.rglob("*.preview.png"))}


def _service(folders):
    return build_service(ServiceOptions(data_dir=folders.data_dir, device="cpu", precision="fp32"))


def _run(folders, preset, renderer=None, **kw):
    engine = None if renderer is not None else _service(folders).engine
    return run_previews(engine, preset, overrides=SMALL, renderer=renderer,
                        sheet_dir=folders.outputs_dir / "lora-previews", **kw)


def _ray(folders, workers=2, **kw):
    return RayRenderer(_service(folders), RaySettings(cpu_workers=workers, **kw))


def test_ray_previews_equal_local_run_bit_for_bit(folders, preset, library, tmp_path):
    local = _run(folders, preset)
    assert len(local.done) == 5
    expected = _previews(library)
    sheet = (folders.outputs_dir / "lora-previews" / "contact-sheet.png").read_bytes()
    for p in library.rglob("*.preview.png"):
        p.unlink()
    renderer = _ray(folders)
    report = _run(folders, preset, renderer)
    assert [o.status for o in report.outcomes] == ["done"] * 5
    assert _previews(library) == expected
    # Each worker's first LoRA comes with its call; the 3 after those are sent ahead and read while the worker
    # samples, unless an idle worker takes the last one over at the tail (then 2).
    assert renderer.read_ahead in (2, 3)
    assert (folders.outputs_dir / "lora-previews" / "contact-sheet.png").read_bytes() == sheet
    assert {o.worker for o in report.done} <= {"worker-0", "worker-1"}
    assert "per worker:" in report.summary() and "LoRAs/min" in report.summary()
    assert not [p for p in library.rglob("*") if p.name.startswith(".") or p.suffix == ".tmp"]
    # Resume: a second run renders nothing.
    resumed = _ray(folders)
    again = _run(folders, preset, resumed)
    assert [o.status for o in again.outcomes] == ["skipped"] * 5
    assert renderer.workers_started == 2 and resumed.workers_started == 0  # nothing to render: no engine started


def test_models_shipped_without_shared_folders(folders, preset, library):
    local = _run(folders, preset, names=["l1", "l2"])
    expected = _previews(library)
    for p in library.rglob("*.preview.png"):
        p.unlink()
    report = _run(folders, preset, _ray(folders, shared_models=False), names=["l1", "l2"])
    assert len(report.done) == 2 == len(local.done), report.summary()
    assert _previews(library) == expected


def test_killed_worker_is_survived_and_corrupt_lora_reported_once(folders, preset, library):
    write_garbage(library / "broken.safetensors")
    renderer = _ray(folders)
    killed = []

    def progress(jp):
        if jp.done == 1 and not killed:  # kill a worker while the others are mid-LoRA
            wid = sorted(renderer.actors)[0]
            killed.append(wid)
            renderer.kill(wid)
    report = _run(folders, preset, renderer, progress=progress)
    status = {o.name: o.status for o in report.outcomes}
    assert killed and status.pop("broken") == "failed"
    assert set(status.values()) == {"done"} and len(status) == 5
    broken = [o for o in report.outcomes if o.name == "broken"]
    assert len(broken) == 1 and broken[0].reason
    assert all(p.stat().st_size > 0 for p in library.rglob("*.preview.png"))


def test_interrupt_stops_workers_and_keeps_finished(folders, preset, library):
    control = Control()

    def progress(jp):
        if jp.done >= 1:
            control.interrupt()
    renderer = _ray(folders, workers=1)
    report = _run(folders, preset, renderer, control=control, progress=progress)
    assert report.interrupted
    done = [o for o in report.outcomes if o.status == "done"]
    assert 1 <= len(done) < 5 and renderer.actors == {}
    assert all(o.preview.is_file() for o in done)
    assert report.sheet_html.is_file()
    assert ray.is_initialized()  # the renderer did not start this cluster, so it leaves it running


CLI_ARGS = ["--ray-cpu-workers", "1", "--device", "cpu", "--precision", "fp32", "--steps", "2", "--width", "64",
            "--height", "64", "--no-hires", "--sampler", "Euler", "--lora", "l1", "--lora", "l2", "--no-progress"]


def _cli_previews(folders, library, capsys, ray_arg: list[str]) -> None:
    from creationmix import cli
    code = cli.main(["previews", *ray_arg, "--data-dir", str(folders.data_dir), *CLI_ARGS])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert str(library / "l1.preview.png") in out.split() and str(library / "l2.preview.png") in out.split()


def test_cli_previews_on_a_running_cluster(folders, library, capsys):
    _cli_previews(folders, library, capsys, ["--ray", "auto"])
    assert ray.is_initialized()  # joined, not started by the job: left running


@pytest.mark.slow  # a second cluster start costs ~10 s of the suite's 5 minutes: CREATIONMIX_SLOW=1 runs it
def test_cli_previews_on_its_own_local_cluster(folders, library, capsys):
    """Last in the module: it stops the module's cluster and leaves none running."""
    ray.shutdown()
    _cli_previews(folders, library, capsys, ["--ray"])
    assert not ray.is_initialized()  # the job started its own cluster and stopped it
