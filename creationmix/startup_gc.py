"""Process start-up without the cyclic garbage collector: about 1 s of import time and 1 s of exit time.

Importing torch + diffusers + transformers (or gradio) creates about a million long-lived objects; the cyclic GC
re-scans the growing heap many times while they are created, and once more at interpreter exit. The process
entry points (`python -m creationmix`, the `creationmix` / `creationmix-ui` scripts, `app.py`) call `begin()`
first; the engine calls `settled()` when its first model load ends (success or not): everything alive then is
moved to the GC's permanent generation (`gc.freeze`, never scanned again) and collection resumes as normal, so
long jobs and servers collect their garbage as usual. `before_exit()` freezes again so the final collection at
shutdown skips the heap (the OS frees it). Code that never called `begin()` (tests, a library user) sees no change.
"""
from __future__ import annotations

import gc

_state = {"begun": False}


def begin() -> None:
    if not _state["begun"] and gc.isenabled():
        _state["begun"] = True
        gc.disable()


def settled() -> None:
    """Start-up is over (the model stack is imported and loaded): collect normally from now on."""
    if _state["begun"]:
        _state["begun"] = False
        gc.freeze()
        gc.enable()


def before_exit() -> None:
    gc.freeze()


def run_entry(main, *args, **kwargs) -> int:
    """`main(...)` as a process entry point: start-up without GC, exit without the final heap scan."""
    begin()
    try:
        return main(*args, **kwargs)
    finally:
        before_exit()
