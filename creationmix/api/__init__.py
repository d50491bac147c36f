"""The HTTP API edge: A1111's `/sdapi/v1` routes plus `/creationmix/v1` jobs, over the one service.

`server.mount(app, service, ...)` adds the routes to gradio's FastAPI app (same process, same queue);
`server.create_app(...)` builds an API-only app (`--nowebui`, tests).
"""
