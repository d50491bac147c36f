"""How errors leave the HTTP API: one JSON shape, a status that says whose fault it was, never a traceback.

| error                                   | status | why                                                      |
|-----------------------------------------|--------|----------------------------------------------------------|
| request body/query fails the schema     | 422    | FastAPI's own answer, `loc` names the field               |
| ApiError (our checks), InvalidParameter | 422    | bad value; `field` names the request field                |
| InfotextError, PathError, LoraError     | 422    | a name or text from the request cannot be used           |
| ModelError                              | 422    | the checkpoint/VAE the request selects cannot be loaded   |
| PresetError                             | 404    | no such preset card                                       |
| unknown checkpoint/VAE/job name         | 404    | (ApiError with 404)                                       |
| QueueFull                               | 503    | try again later (Retry-After)                             |
| anything else                           | 500    | a bug: logged with its traceback, message says so         |
"""
from __future__ import annotations

from ..errors import CreationMixError, PresetError, QueueFull


class ApiError(Exception):
    def __init__(self, status: int, detail: str, *, field: str | None = None):
        super().__init__(detail)
        self.status, self.detail, self.field = status, detail, field


def error_body(error: str, detail: str, field: str | None = None) -> dict:
    body = {"error": error, "detail": detail}
    if field:
        body["field"] = field
    return body


def status_of(e: CreationMixError) -> int:
    if isinstance(e, QueueFull):
        return 503
    if isinstance(e, PresetError):
        return 404
    return 422
