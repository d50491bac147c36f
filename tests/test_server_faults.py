"""Server faults (issue 14, server half): login on every route, cancellation, typed API values, start-up refusals.

One live server (tests/fake_app.py: the real launcher, gradio app and login over the torch-free FakeService) with
`--auth`; every route gradio defines is asked without a session and must refuse unless the login page needs it.
"""
from __future__ import annotations

import re
import time

import pytest

httpx = pytest.importorskip("httpx")

from live_server import serve  # noqa: E402

USER, PASSWORD = "tester", "s3cret-pass"
STEP_DELAY = 0.05


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("cm-faults")
    with serve("tests/fake_app.py", ["--data-dir", str(data_dir), "--auth", f"{USER}:{PASSWORD}", "--max-queue", "4"],
               data_dir / "server.log", ready="running on", env={"CREATIONMIX_FAKE_STEP_DELAY": str(STEP_DELAY)}) as live:
        yield {"url": live.url, "data_dir": data_dir, "log": live.log_path}


def _gradio_routes(tmp_path) -> list[tuple[str, str]]:
    """(method, path) of every route gradio's app has for our UI, built in-process the same way."""
    from creationmix.ui.app import build_ui
    from tests.fake_service import FakeService

    blocks, _ = build_ui(FakeService(tmp_path))
    out = []

    def walk(routes, prefix=""):
        for route in routes:
            sub = getattr(route, "original_router", None)  # fastapi's include_router wrapper
            if sub is not None:
                walk(sub.routes, prefix + route.include_context.prefix)
                continue
            methods = sorted(getattr(route, "methods", None) or {"GET"})
            path = re.sub(r"\{[^}]+\}", "x", prefix + route.path)
            out.append(("GET" if "GET" in methods else methods[0], path))
    walk(blocks.app.routes)
    return sorted(set(out))


def test_every_gradio_route_needs_the_login(server, tmp_path):
    from creationmix.ui.auth_gate import is_public

    routes = _gradio_routes(tmp_path)
    assert len(routes) > 30 and ("GET", "/gradio_api/startup-events") in routes
    opened = []
    for method, path in routes:
        r = httpx.request(method, server["url"] + path, timeout=10, json={} if method == "POST" else None)
        if is_public(path):
            continue
        if r.status_code != 401:
            opened.append(f"{method} {path} -> {r.status_code}")
    assert opened == []
    # The cases found open before the gate, by name:
    for path in ("/gradio_api/startup-events", "/gradio_api/heartbeat/x", "/gradio_api/user", "/gradio_api/app_id"):
        assert httpx.get(server["url"] + path, timeout=10).status_code == 401, path
    r = httpx.post(server["url"] + "/gradio_api/cancel", json={"session_hash": "x", "event_id": "y"}, timeout=10)
    assert r.status_code == 401
    # and what the login page needs still answers:
    assert httpx.get(server["url"] + "/", timeout=10).status_code == 200
    assert httpx.get(server["url"] + "/theme.css", timeout=10).status_code == 200


def test_the_session_opens_them(server):
    with httpx.Client(base_url=server["url"], timeout=10) as c:
        assert c.post("/login", data={"username": USER, "password": "wrong"}).status_code >= 400
        assert c.get("/gradio_api/startup-events").status_code == 401
        assert c.post("/login", data={"username": USER, "password": PASSWORD}).status_code == 200
        for path in ("/config", "/gradio_api/startup-events", "/gradio_api/info", "/gradio_api/app_id"):
            assert c.get(path).status_code == 200, path
        c.get("/logout")
        assert c.get("/gradio_api/info").status_code == 401  # a logged-out token no longer opens anything


def test_public_paths_are_only_the_login_pages_own():
    from creationmix.ui.auth_gate import is_public

    assert is_public("/") and is_public("/login") and is_public("/assets/index-abc.js")
    assert is_public("/sdapi/v1/txt2img")  # checked by the API's own HTTP Basic dependency
    for path in ("/docs", "/openapi.json", "/gradio_api/startup-events", "/gradio_api/file=/etc/passwd",
                 "/gradio_api/queue/join", "/gradio_api/cancel", "/monitoring", "/anything-new"):
        assert not is_public(path), path


def _client(server):
    from gradio_client import Client
    return Client(server["url"], auth=(USER, PASSWORD), verbose=False)


def test_string_width_is_refused_not_coerced(server):
    client = _client(server)
    with pytest.raises(Exception, match=r"width must be an integer, got str '64'"):
        client.predict(prompt="x", width="64", steps=2, api_name="/generate")
    with pytest.raises(Exception, match=r"enable_hires must be true or false"):
        client.predict(prompt="x", enable_hires=1, steps=2, api_name="/generate")
    with pytest.raises(Exception, match=r"cfg_scale must be a number"):
        client.predict(prompt="x", cfg_scale="7", steps=2, api_name="/generate")
    out = client.predict(prompt="x", width=64, height=64, steps=2, cfg_scale=7, seed=5, api_name="/generate")
    assert out["seeds"] == [5]  # an int is a fine float


def test_cancelling_generate_stops_the_run_and_frees_the_queue(server):
    client = _client(server)
    before = set((server["data_dir"] / "outputs").rglob("*.png"))
    job = client.submit(prompt="long run", steps=150, seed=77, width=64, height=64, api_name="/generate")
    deadline = time.monotonic() + 30
    while job.status().code.name not in ("PROCESSING", "ITERATING") and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    assert job.cancel()
    start = time.monotonic()
    out = client.predict(prompt="next", steps=2, seed=78, width=64, height=64, api_name="/generate")
    waited = time.monotonic() - start
    assert out["seeds"] == [78]
    assert waited < 150 * STEP_DELAY / 2, f"the next request waited {waited:.1f} s"  # not the 7.5 s of the rest
    made = set((server["data_dir"] / "outputs").rglob("*.png")) - before
    assert [p for p in made if p.name.endswith("-77.png")] == []  # the cancelled run saved nothing


def test_startup_checkpoint_outside_the_folders_is_refused(tmp_path, capsys):
    from creationmix.ui.launcher import main

    rc = main(["--data-dir", str(tmp_path), "--checkpoint", "../../x"])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.count("\n") == 1 and err.startswith("error: ") and "../../x" in err
    assert "Traceback" not in err
