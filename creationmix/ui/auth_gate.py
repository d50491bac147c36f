"""With `--auth`, every HTTP route but the login page's own needs a logged-in session.

gradio checks the login on most of its routes, not all: `startup-events`, `heartbeat/…`, `cancel`, `user` and
`app_id` answer anyone (seen on gradio 6.31), and routes mounted next to it (the A1111 API's `/docs`,
`/openapi.json`) know nothing of the login. This ASGI middleware turns the rule around: a request without a
valid gradio session cookie gets 401 unless its path is one the login page itself needs (the page, its static
files, `login`/`logout`, and `config`, whose 401 is what makes the page show the login form). The A1111 API
under `/sdapi/` checks its own HTTP Basic credentials (the launcher gives it the `--auth` ones when there is no
`--api-auth`), so it is left to that check.

gradio's `launch()` calls its own `startup-events` over HTTP before it returns, without a cookie: the gate is
armed right after launch (`GateState.armed`), so that one call passes and every later one is checked.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

PUBLIC_PATHS = frozenset({
    "/", "/login", "/login/", "/logout", "/logout/", "/config", "/config/", "/favicon.ico", "/manifest.json",
    "/robots.txt", "/theme.css",
})
PUBLIC_PREFIXES = ("/assets/", "/static/", "/svelte/")  # the login page's scripts, styles and fonts
SELF_AUTHENTICATED_PREFIXES = ("/sdapi/",)  # HTTP Basic, checked by the API's own dependency


@dataclass
class GateState:
    armed: bool = False


def is_public(path: str) -> bool:
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES) or path.startswith(SELF_AUTHENTICATED_PREFIXES)


def _cookies(scope) -> dict[str, str]:
    out = {}
    for name, value in scope.get("headers") or []:
        if name.lower() != b"cookie":
            continue
        for part in value.decode("latin-1").split(";"):
            k, sep, v = part.strip().partition("=")
            if sep:
                out[k] = v
    return out


def logged_in(scope) -> bool:
    """Does the request carry a session token that gradio's login handed out (and has not been logged out)?"""
    app = scope.get("app")
    tokens = getattr(app, "tokens", None)
    cookie_id = getattr(app, "cookie_id", None)
    if tokens is None or cookie_id is None:  # not a gradio app: nothing to check against, so nothing passes
        return False
    jar = _cookies(scope)
    for name in (f"access-token-{cookie_id}", f"access-token-unsecure-{cookie_id}"):
        token = jar.get(name)
        if token and tokens.get(token) is not None:
            return True
    return False


class AuthGateMiddleware:
    def __init__(self, app, state: GateState):
        self.app = app
        self.state = state

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket") or not self.state.armed or is_public(scope.get("path", "")):
            return await self.app(scope, receive, send)
        if logged_in(scope):
            return await self.app(scope, receive, send)
        if scope["type"] == "websocket":
            return await send({"type": "websocket.close", "code": 1008})
        body = json.dumps({"detail": {"error": "Not authenticated", "auth_message": "log in first"}}).encode()
        await send({"type": "http.response.start", "status": 401,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
