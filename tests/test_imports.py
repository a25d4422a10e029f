"""Imports point one way: no cycle among ssl_core's modules, and each module imports alone in a fresh interpreter.

The graph has an edge A -> B for every `import B` / `from B import ...` in A, at the top or inside a function.
A package's `__init__` importing its own members (last, to fill its registry: methods, data, models' ViTs)
is how it is made, not a use of them, and is left out.
"""
import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "ssl_core"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def imports_of(name: str) -> set[str]:
    """The ssl_core modules `name` imports (a `from package import member` names the member when it is a module)."""
    path, found = MODULES[name], set()
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1] + ([base] if base else []))
            found |= {f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names}
    found = {m for m in found if m in MODULES and m != name}
    if path.name == "__init__.py":                            # its own members, imported to register them
        found = {m for m in found if not m.startswith(name + ".")}
    return found


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_import_cycle():
    cycle = find_cycle({name: imports_of(name) for name in MODULES})
    assert cycle is None, " -> ".join(cycle)


def test_the_cycle_finder_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_module_over_400_lines():
    long = {name: n for name, p in MODULES.items() if (n := len(p.read_text().splitlines())) > 400}
    assert not long, long


# One interpreter imports every module in turn, forgetting all of ssl_core before each: a module that works only
# after a sibling was imported fails as it would alone. Third-party packages stay loaded (torch alone takes
# seconds to import): what is checked is ssl_core's own import order, at one interpreter start, not 45.
ALONE = """
import importlib, json, sys, traceback
errors = {}
for name in sys.argv[1:]:
    for loaded in [m for m in sys.modules if m == "ssl_core" or m.startswith("ssl_core.")]:
        del sys.modules[loaded]
    try:
        importlib.import_module(name)
    except BaseException:
        errors[name] = traceback.format_exc()[-2000:]
print(json.dumps(errors))
"""


@pytest.fixture(scope="module")
def import_errors() -> dict[str, str]:
    proc = subprocess.run([sys.executable, "-c", ALONE, *sorted(MODULES)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.splitlines()[-1])


@pytest.mark.parametrize("name", sorted(MODULES))
def test_each_module_imports_alone(name, import_errors):
    assert name not in import_errors, import_errors.get(name)


def test_a_module_that_needs_a_sibling_imported_first_fails_alone(tmp_path):
    """The check's own check: forgetting ssl_core between modules is what makes an import order bug show."""
    package = tmp_path / "ssl_core"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("VALUE = 1\n")
    (package / "b.py").write_text("import ssl_core\nVALUE = ssl_core.a.VALUE\n")    # works only after a
    proc = subprocess.run([sys.executable, "-c", ALONE, "ssl_core.a", "ssl_core.b"], capture_output=True,
                          text=True, cwd=tmp_path, env={"PYTHONPATH": str(tmp_path)})
    errors = json.loads(proc.stdout.splitlines()[-1])
    assert list(errors) == ["ssl_core.b"] and "AttributeError" in errors["ssl_core.b"]


def test_docs_layout_names_every_module():
    layout = (ROOT.parent / "docs" / "LAYOUT.md").read_text()
    missing = [str(p.relative_to(ROOT)) for p in MODULES.values()
               if (p.name if p.name != "__init__.py" else f"{p.parent.name}/") not in layout]
    assert not missing, f"docs/LAYOUT.md has no line for {missing}"
