"""The package graph runs one way: spec <- artifact <- {exporters, runtimes} <- evaluation/parity/training <-
commands. Every import counts, the lazy ones inside functions included, since they run too."""
import ast
from pathlib import Path
from typing import Dict, Set

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("rare_portable", "exporters", "runtimes")

# (importer prefix, imported prefixes it must not reach), module names dotted, prefixes matched on dots.
COMMANDS = ("rare_portable.commands", "rare_portable.cli")
FORBIDDEN = [
    ("rare_portable", ("exporters", "runtimes", *COMMANDS)),  # the core and the layers built on it...
    ("exporters", ("runtimes", "rare_portable.parity", "rare_portable.evaluation", "rare_portable.train", *COMMANDS)),
    ("runtimes", ("exporters", "rare_portable.parity", "rare_portable.evaluation", "rare_portable.train", *COMMANDS)),
    ("rare_portable.train", ("rare_portable.parity",)),
    ("rare_portable.evaluation", ("rare_portable.train", "rare_portable.parity")),
]
# ...except the modules whose job is to drive exporters and runtimes.
ALLOWED_ABOVE = {"rare_portable.parity": ("exporters", "runtimes"),
                 **{c: ("exporters", "runtimes", *COMMANDS) for c in COMMANDS}}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> Set[str]:
    """Every module `path` imports, anywhere in the file, relative imports resolved."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)  # `from pkg import module`
    return {f for f in found if f.split(".")[0] in PACKAGES}


def under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


@pytest.fixture(scope="module")
def graph() -> Dict[str, Set[str]]:
    return {module_name(p): imports_of(p) for package in PACKAGES for p in sorted((ROOT / package).rglob("*.py"))}


def violations(graph: Dict[str, Set[str]]):
    for importer, targets in graph.items():
        allowed = next((ok for prefix, ok in ALLOWED_ABOVE.items() if under(importer, prefix)), ())
        for prefix, banned in FORBIDDEN:
            if not under(importer, prefix):
                continue
            for target in sorted(targets):
                if any(under(target, b) for b in banned) and not any(under(target, a) for a in allowed):
                    yield f"{importer} imports {target}"


def test_imports_run_one_way(graph):
    assert list(violations(graph)) == []


def test_the_graph_is_read(graph):
    """The checker sees real edges, lazy ones included, so an empty violation list means something."""
    assert "rare_portable.recognizer" in graph["runtimes.base"]
    assert "rare_portable.artifact" in graph["exporters.onnx_export"]
    assert any(under(t, "runtimes") for t in graph["rare_portable.parity"])  # imported inside run_parity
    assert "rare_portable.evaluation" in graph["rare_portable.train.validate"]


def test_a_backward_import_is_reported(graph):
    broken = {**graph, "runtimes.base": graph["runtimes.base"] | {"exporters.onnx_export"},
              "rare_portable.spec": {"rare_portable.commands.eval_cmd"}}
    assert sorted(violations(broken)) == ["rare_portable.spec imports rare_portable.commands.eval_cmd",
                                          "runtimes.base imports exporters.onnx_export"]
