"""Serving the API: on gradio's own FastAPI app (`--api`), or alone under uvicorn (`--nowebui`)."""
from __future__ import annotations

from typing import Any, Sequence

from fastapi import FastAPI

from .. import __version__
from .routes import create_router

TITLE = "CreationMix API"
DESCRIPTION = ("A1111-compatible `/sdapi/v1` routes (drop-in for webuiapi and other A1111 clients) and "
               "CreationMix's `/creationmix/v1` jobs.")


def mount(app: FastAPI, service, *, credentials: Sequence[tuple[str, str]] | None = None,
          cmd_flags: dict[str, Any] | None = None) -> FastAPI:
    """Add the API routes to a running app (gradio's, after launch: gradio keeps its queue and login)."""
    app.include_router(create_router(service, credentials=credentials, cmd_flags=cmd_flags))
    app.openapi_schema = None  # rebuilt with our routes on the next /openapi.json
    return app


def create_app(service, *, credentials: Sequence[tuple[str, str]] | None = None,
               cmd_flags: dict[str, Any] | None = None) -> FastAPI:
    app = FastAPI(title=TITLE, description=DESCRIPTION, version=__version__)
    app.include_router(create_router(service, credentials=credentials, cmd_flags=cmd_flags))
    return app


def serve(service, host: str, port: int, **kw) -> None:
    """Block serving the API alone (A1111's --nowebui)."""
    import uvicorn
    uvicorn.run(create_app(service, **kw), host=host, port=port, log_level="warning")
