"""Keep the user name after a wrong password on gradio's login page.

gradio's login form empties both fields on a refused login, and the page gets no `head=` script before login.
This ASGI middleware adds one small script to the HTML pages: it watches the POST to `login` and, when it is
refused, puts the user name back and focuses the password field (the password itself is not kept).
"""
from __future__ import annotations

LOGIN_SCRIPT = """<script>
(() => {
  const real = window.fetch;
  const fields = () => Array.from(document.querySelectorAll("input, textarea"));
  window.fetch = async (...args) => {
    const url = String(args[0] && args[0].url ? args[0].url : args[0]);
    const isLogin = /\\/login\\/?$/.test(url.split("?")[0]);
    const user = isLogin ? (fields().find((e) => e.type !== "password") || {}).value : null;
    const res = await real(...args);
    if (isLogin && res.status >= 400 && user) {
      setTimeout(() => {
        const [name] = fields().filter((e) => e.type !== "password");
        const pass = fields().find((e) => e.type === "password");
        if (name) { name.value = user; name.dispatchEvent(new Event("input", {bubbles: true})); }
        if (pass) pass.focus();
      }, 0);
    }
    return res;
  };
})();
</script>"""


class LoginScriptMiddleware:
    """Inserts LOGIN_SCRIPT before </head> of GET text/html responses (uncompressed: it sits inside gradio's
    compression middleware)."""

    def __init__(self, app, script: str = LOGIN_SCRIPT):
        self.app = app
        self.script = script.encode()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("method") != "GET":
            return await self.app(scope, receive, send)
        start: dict = {}
        body = bytearray()
        passthrough = False

        async def wrapped(message):
            nonlocal passthrough
            if message["type"] == "http.response.start":
                headers = dict(message.get("headers") or [])
                ctype = headers.get(b"content-type", b"")
                if not ctype.startswith(b"text/html") or b"content-encoding" in headers:
                    passthrough = True
                    return await send(message)
                start.update(message)
                return None
            if passthrough or message["type"] != "http.response.body":
                return await send(message)
            body.extend(message.get("body", b""))
            if message.get("more_body"):
                return None
            html = bytes(body)
            if b"</head>" in html:
                html = html.replace(b"</head>", self.script + b"</head>", 1)
            headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
            headers.append((b"content-length", str(len(html)).encode()))
            await send({**start, "headers": headers})
            await send({"type": "http.response.body", "body": html})

        await self.app(scope, receive, wrapped)
