"""Where log records and third-party chatter go.

Libraries here only log (`logging.getLogger(__name__)`). transformers and diffusers install their own stderr
handlers and torch-era libraries use `warnings.warn`; `route_library_logs` turns all of that into ordinary
records so that the edges decide: the CLI shows them with --verbose only, the app writes them to
<data-dir>/logs/. A successful CLI run says nothing on stderr.
"""
from __future__ import annotations

import logging
import logging.handlers
import sys
from pathlib import Path

LIBRARY_LOGGERS = ("transformers", "diffusers", "huggingface_hub", "peft", "torchsde", "py.warnings")
_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_routed = False


def route_library_logs() -> None:
    """Make transformers / diffusers log through the standard logging tree (no handlers of their own).
    Call before importing the engine: their import-time notices count. Idempotent."""
    global _routed
    if _routed:
        return
    for name in ("transformers", "diffusers"):
        try:
            mod = __import__(f"{name}.utils.logging", fromlist=["_"])
        except Exception:  # not installed: nothing of theirs to route
            continue
        mod._configure_library_root_logger()  # creates their handler now, so we can take it away
        mod.disable_default_handler()
        mod.enable_propagation()
    _routed = True


def _own(handler: logging.Handler) -> logging.Handler:
    handler._creationmix = True  # so configure() replaces what it installed (tests call main() many times)
    return handler


def configure(*, verbose: bool = False, log_dir: Path | None = None, console_level: int | None = None,
              stream=None) -> None:
    """The edges' logging setup. Console: everything at INFO with `verbose`, else only records at
    `console_level` or above from creationmix itself (None: nothing at all). `log_dir`: a rotating
    creationmix.log with everything at INFO, third-party records included."""
    logging.captureWarnings(True)  # warnings.warn -> the "py.warnings" logger, never straight to stderr
    root = logging.getLogger()
    for h in [h for h in root.handlers if getattr(h, "_creationmix", False)]:
        root.removeHandler(h)
        h.close()
    level = logging.INFO if verbose or log_dir is not None else logging.WARNING
    root.setLevel(level)
    for name in LIBRARY_LOGGERS:  # they set their own levels; INFO is plenty even in a log file
        logging.getLogger(name).setLevel(level)
    stream = stream if stream is not None else sys.stderr
    if verbose:
        h = _own(logging.StreamHandler(stream))
        h.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        root.addHandler(h)
    elif console_level is not None:
        h = _own(logging.StreamHandler(stream))
        h.setLevel(console_level)
        h.addFilter(lambda r: r.name == "creationmix" or r.name.startswith("creationmix."))
        h.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
        root.addHandler(h)
    if log_dir is not None:
        Path(log_dir).mkdir(parents=True, exist_ok=True)
        fh = _own(logging.handlers.RotatingFileHandler(Path(log_dir) / "creationmix.log", maxBytes=5_000_000,
                                                       backupCount=3, encoding="utf-8"))
        fh.setFormatter(logging.Formatter(_FORMAT))
        root.addHandler(fh)
    if not root.handlers:
        # With no handler at all Python's last-resort handler would print WARNINGs to stderr.
        root.addHandler(_own(logging.NullHandler()))
