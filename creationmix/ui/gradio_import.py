"""Import gradio without regenerating its type stubs: half of `import gradio` (about 2 of 4.5 s on 2 cores).

gradio 6's `ComponentMeta.__new__` calls `create_or_modify_pyi` for every component class it defines: it reads the
class's source file, `ast.parse`s it, renders a `.pyi` interface and rewrites the wheel's `.pyi` file when it
differs. That is gradio's own development tooling (the wheel already ships the stubs); for a user it only costs
start-up time on every launch. This module swaps that one function for a no-op as `gradio.component_meta` is
loaded, through a one-shot import hook, because `gradio/__init__.py` defines every component before anyone can
patch the module from outside. Nothing else in gradio changes; if gradio was already imported, or a future
gradio renames the function, the hook does nothing.

Imports nothing heavy itself (the UI package installs it before importing gradio).
"""
from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys

TARGET_MODULE = "gradio.component_meta"
TARGET_FUNCTION = "create_or_modify_pyi"


def _no_stub_rewrite(*_args, **_kwargs) -> None:
    return None


class _SkipStubRewrite(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
        if fullname != TARGET_MODULE:
            return None
        remove()  # one shot: the normal finders take it from here
        spec = importlib.machinery.PathFinder.find_spec(fullname, path, target)
        loader = getattr(spec, "loader", None)
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        real_exec = loader.exec_module

        def exec_module(module):
            real_exec(module)
            if callable(getattr(module, TARGET_FUNCTION, None)):
                setattr(module, TARGET_FUNCTION, _no_stub_rewrite)

        loader.exec_module = exec_module  # this spec's own loader instance
        return spec


_FINDER = _SkipStubRewrite()


def install() -> bool:
    """Arm the hook before gradio's first import; False when gradio is already imported (nothing to win)."""
    if TARGET_MODULE in sys.modules:
        return False
    if _FINDER not in sys.meta_path:
        sys.meta_path.insert(0, _FINDER)
    return True


def remove() -> None:
    while _FINDER in sys.meta_path:
        sys.meta_path.remove(_FINDER)


def stub_rewrite_skipped() -> bool:
    """Did the loaded gradio get the no-op (what the start-up test and bench check)?"""
    mod = sys.modules.get(TARGET_MODULE)
    return mod is not None and getattr(mod, TARGET_FUNCTION, None) is _no_stub_rewrite
