"""The layering rule, checked on the source: library code never imports an edge (cli, ui), and production
code never imports tests/. Relative imports are resolved, lazy imports inside functions count too."""
from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "creationmix"
CLI_EDGES = {"creationmix.cli", "creationmix.cli_jobs", "creationmix.__main__"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PKG.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, name: str | None = None) -> list[str]:
    name = name or _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            out.append(mod)
            out += [f"{mod}.{a.name}" for a in node.names]  # `from . import cli`
    return out


def _violations(files=None):
    bad = []
    for path, name in files or [(p, _module_name(p)) for p in sorted(PKG.rglob("*.py"))]:
        in_ui = name == "creationmix.ui" or name.startswith("creationmix.ui.")
        for mod in _imports(path, name):
            if mod == "tests" or mod.startswith("tests."):
                bad.append(f"{name} imports {mod} (production code never imports tests/)")
            if name not in CLI_EDGES and any(mod == e or mod.startswith(e + ".") for e in CLI_EDGES):
                bad.append(f"{name} imports {mod} (only the CLI edge may)")
            if not in_ui and (mod == "creationmix.ui" or mod.startswith("creationmix.ui.")):
                bad.append(f"{name} imports {mod} (only the UI may)")
    return bad


def test_no_library_module_imports_an_edge_or_tests():
    assert _violations() == []


def test_the_checker_sees_relative_and_lazy_imports(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from ..cli import main\n    from .. import ui\n    import tests.fake_service\n")
    found = " ".join(_violations([(probe, "creationmix.xyz.probe")]))
    for rule in ("only the CLI edge may", "only the UI may", "never imports tests/"):
        assert rule in found
    assert _violations([(probe, "creationmix.cli_jobs")]) != []  # an edge still may not import tests/
