"""`python app.py`: command line, service construction and launch. Torch is imported only by the service."""
from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
from pathlib import Path

DEFAULT_PORT = 7860
LISTEN_WARNING = ("WARNING: --listen without --auth: anyone on your network can use this machine's GPU "
                  "(add --auth user:pass).")
API_PORT = 7861  # A1111's --nowebui port
SHARE_WARNING = ("WARNING: --share without --auth: anyone with the link can use this machine's GPU "
                 "(add --auth user:pass).")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="app.py", description="CreationMix: local Stable Diffusion 1.5 studio")
    p.add_argument("--listen", action="store_true", help="serve on 0.0.0.0 (the local network) instead of 127.0.0.1")
    p.add_argument("--port", type=int, default=None,
                   help=f"port to serve on (default: the first free one from {DEFAULT_PORT})")
    p.add_argument("--share", action="store_true", help="also create a public gradio.live link")
    p.add_argument("--auth", action="append", default=[], metavar="USER:PASS",
                   help="require a login; repeatable")
    p.add_argument("--auth-file", type=Path, help="file with one USER:PASS per line")
    p.add_argument("--data-dir", type=Path, default=Path("."),
                   help="where models/, embeddings/, outputs/ live (default: the current directory)")
    p.add_argument("--a1111-dir", type=Path, default=None,
                   help="an AUTOMATIC1111 install whose models are also listed (read-only)")
    p.add_argument("--checkpoint", default=None,
                   help="checkpoint to start with: a name in models/Stable-diffusion or a file anywhere")
    p.add_argument("--device", default=None, help="cuda, cuda:1, mps or cpu (default: the best available)")
    p.add_argument("--precision", default=None, help="fp16, bf16 or fp32 (default: per device)")
    p.add_argument("-v", "--verbose", action="store_true", help="log everything (third-party notices too) here")
    p.add_argument("--max-queue", type=int, default=20,
                   help="how many generation requests may wait; more are refused (default: 20)")
    p.add_argument("--api", action="store_true",
                   help="also serve the A1111-compatible HTTP API (/sdapi/v1, docs at /docs)")
    p.add_argument("--nowebui", action="store_true",
                   help=f"serve only the HTTP API, no web UI (default port: the first free one from {API_PORT})")
    p.add_argument("--api-auth", default=None, metavar="USER:PASS[,USER2:PASS2]",
                   help="require HTTP Basic credentials on every API route")
    args = p.parse_args(argv)
    if args.max_queue < 1:
        p.error("--max-queue must be at least 1")
    if args.port is not None and not 1 <= args.port <= 65535:
        p.error(f"--port {args.port}: a port is a number from 1 to 65535")
    try:
        args.auth_pairs = parse_auth(args.auth, args.auth_file)
        args.api_auth_pairs = parse_auth([args.api_auth] if args.api_auth else [], None)
    except ValueError as e:
        p.error(str(e))
    if args.nowebui:
        args.api = True
    return args


def parse_auth(items: list[str], auth_file: Path | None) -> list[tuple[str, str]]:
    lines = list(items)
    if auth_file is not None:
        try:
            text = auth_file.read_text(encoding="utf-8")
        except OSError as e:
            raise ValueError(f"cannot read --auth-file {auth_file}: {e.strerror}") from None
        lines += [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    pairs = []
    for item in lines:
        for part in item.split(","):  # A1111 accepts "u1:p1,u2:p2"
            user, sep, password = part.strip().partition(":")
            if not sep or not user or not password:
                raise ValueError(f"bad auth entry {part.strip()!r}; expected USER:PASS")
            pairs.append((user, password))
    return pairs


def open_door_warnings(args: argparse.Namespace) -> list[str]:
    """What the operator must hear before a server without a login is reachable from other machines."""
    if args.auth_pairs:
        return []
    if args.share:
        return [SHARE_WARNING]
    return [LISTEN_WARNING] if args.listen else []


def free_port(host: str, start: int, tries: int = 100) -> int:
    for port in range(start, start + tries):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((host if host != "0.0.0.0" else "127.0.0.1", port))
            except OSError:
                continue
            return port
    raise OSError(f"no free port in {start}..{start + tries - 1}")


def make_service(args: argparse.Namespace):
    from ..compose import ServiceOptions, build_service, file_option  # torch lives behind the service's engine

    checkpoint = file_option(args.checkpoint, "--checkpoint")
    return build_service(ServiceOptions(data_dir=args.data_dir, a1111_dir=args.a1111_dir, device=args.device,
                                        precision=args.precision, checkpoint=checkpoint, demo_if_empty=True,
                                        create_folders=True, remember_checkpoint=True,
                                        max_queue=args.max_queue))


def cmd_flags(args: argparse.Namespace) -> dict:
    """What /sdapi/v1/cmd-flags reports: the flags, never the credentials."""
    hidden = {"auth", "auth_file", "auth_pairs", "api_auth", "api_auth_pairs"}
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k not in hidden}


def serve_api_only(service, args: argparse.Namespace, host: str, port: int) -> int:
    from ..api.server import serve
    print(f"CreationMix API running on http://{'127.0.0.1' if host == '0.0.0.0' else host}:{port}/sdapi/v1 "
          f"(docs: /docs)", flush=True)
    try:
        serve(service, host, port, credentials=args.api_auth_pairs or None, cmd_flags=cmd_flags(args))
    except KeyboardInterrupt:
        pass
    return 0


def try_share(blocks, host: str, port: int) -> str | None:
    """Open a gradio.live tunnel; offline this fails and we say so in one line and keep serving locally."""
    try:
        from gradio import networking

        url = networking.setup_tunnel(local_host=host, local_port=port, share_token=blocks.share_token,
                                      share_server_address=None, share_server_tls_certificate=None)
    except Exception as e:  # no network, blocked binary download, ...
        reason = (str(e).splitlines() or [type(e).__name__])[0].rstrip(".")
        print(f"Could not create a share link ({reason}); serving locally only.", flush=True)
        return None
    blocks.share_url = url
    blocks.share = True
    print(f"Public URL: {url}", flush=True)
    return url


def run() -> int:
    """The `creationmix-ui` console script and app.py (see startup_gc: no GC during start-up)."""
    from ..startup_gc import run_entry
    return run_entry(main)


def main(argv: list[str] | None = None, service_factory=None) -> int:
    """`service_factory(args)` replaces the real service (the browser tests' fake lives in tests/)."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    args = parse_args(argv)
    from ..logs import configure
    configure(verbose=args.verbose, log_dir=Path(args.data_dir, "logs"), console_level=logging.WARNING)
    host = "0.0.0.0" if args.listen else "127.0.0.1"
    for line in open_door_warnings(args):
        print(line, flush=True)
    port = args.port if args.port is not None else free_port(host, API_PORT if args.nowebui else DEFAULT_PORT)

    from ..errors import CreationMixError

    try:
        service = (service_factory or make_service)(args)
    except CreationMixError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    if args.nowebui:
        return serve_api_only(service, args, host, port)

    from starlette.middleware import Middleware

    from .app import CSS, HEAD, build_ui
    from .auth_gate import AuthGateMiddleware, GateState
    from .login import LoginScriptMiddleware

    from .settings_tab import SETTINGS_FILE

    blocks, studio = build_ui(service, settings_path=Path(args.data_dir, SETTINGS_FILE))
    app_kwargs = {"docs_url": "/docs"} if args.api else {}
    gate = GateState()
    if args.auth_pairs:
        app_kwargs["middleware"] = [Middleware(AuthGateMiddleware, state=gate), Middleware(LoginScriptMiddleware)]
    blocks.queue(max_size=args.max_queue, default_concurrency_limit=1)
    outputs = Path(args.data_dir, "outputs").resolve()
    outputs.mkdir(parents=True, exist_ok=True)
    blocks.launch(server_name=host, server_port=port, auth=args.auth_pairs or None,
                  auth_message="CreationMix: log in" if args.auth_pairs else None,
                  allowed_paths=[str(outputs), *studio.allowed_paths], share=False, prevent_thread_lock=True,
                  show_error=True, ssr_mode=False, quiet=True, css=CSS, head=HEAD,
                  app_kwargs=app_kwargs)
    gate.armed = True  # launch's own startup-events call is done: from now on every route is checked
    if args.api:
        from ..api.server import mount
        # Behind a login the API is too: its own --api-auth, else the --auth credentials (HTTP Basic).
        mount(blocks.server_app, service, credentials=args.api_auth_pairs or args.auth_pairs or None,
              cmd_flags=cmd_flags(args))
    print(f"CreationMix running on http://{'127.0.0.1' if host == '0.0.0.0' else host}:{port}"
          + (" (listening on all interfaces)" if args.listen else ""), flush=True)
    if hasattr(service, "warm_up_in_background"):  # the page is up: now pay for torch and the model
        service.warm_up_in_background()
    if args.share:
        try_share(blocks, host, port)
    try:
        blocks.block_thread()
    except KeyboardInterrupt:
        pass
    finally:
        blocks.close()
    return 0

