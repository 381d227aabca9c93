"""The package's layers, read from its imports with `ast`.

- the domain model (`fastagi.model`) imports nothing else of the package;
- a network driver (`fastagi.network`) reaches the rest only through the model and the
  shared helpers (`background`, `files`, `resample`): never the account manager, media,
  AMI, AudioSocket, actions, control or the assembly;
- only the gateway's assembly (`fastagi.app`) names the embedded network;
- no import circle, of any length.

Every import counts, also inside functions and `if TYPE_CHECKING:` blocks. The rules are
checked on the real package, and on small trees made here that break each rule once, so a
checker that sees nothing cannot pass.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "fastagi"
DRIVER_MAY_USE = ("fastagi.model", "fastagi.network", "fastagi.background", "fastagi.files", "fastagi.resample")
ASSEMBLY = "fastagi.app"


def modules(root: Path) -> dict[str, Path]:
    """Every module of the package under `root`, by dotted name (a package by its own name)."""
    found = {}
    for path in root.rglob("*.py"):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The package's modules that module `name` imports."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:  # `import a.b.c` of a name inside a module
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def graph(root: Path) -> dict[str, set[str]]:
    found = modules(root)
    return {name: imports(name, path, set(found)) for name, path in found.items()}


def within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def broken_rules(edges: dict[str, set[str]]) -> list[str]:
    top = next(iter(edges)).split(".")[0]
    problems = []
    for name, targets in sorted(edges.items()):
        for target in sorted(targets):
            if within(name, f"{top}.model") and not within(target, f"{top}.model"):
                problems.append(f"the model imports {target} ({name})")
            if within(name, f"{top}.network") and not any(within(target, ok.replace("fastagi", top)) for ok in DRIVER_MAY_USE):
                problems.append(f"a network driver imports {target} ({name})")
            if within(target, f"{top}.network.embedded") and not within(name, f"{top}.network.embedded") \
                    and name != ASSEMBLY.replace("fastagi", top):
                problems.append(f"{name} imports the embedded network")
    problems += [f"import circle: {' -> '.join(circle)}" for circle in circles(edges)]
    return problems


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """One circle through each group of modules that import each other (Tarjan's components)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(name: str) -> None:
        index[name] = low[name] = len(index)
        stack.append(name)
        for target in sorted(edges.get(name, ())):
            if target not in index:
                visit(target)
                low[name] = min(low[name], low[target])
            elif target in stack:
                low[name] = min(low[name], index[target])
        if low[name] == index[name]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == name:
                    break
            if len(group) > 1:
                found.append(sorted(group) + [sorted(group)[0]])

    for name in sorted(edges):
        if name not in index:
            visit(name)
    return found


def test_the_package_keeps_its_layers() -> None:
    edges = graph(PACKAGE)
    assert "fastagi.model.calls" in edges and "fastagi.network.embedded" in edges[ASSEMBLY]  # the reader reads
    assert broken_rules(edges) == []


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in {"fastagi/__init__.py": "", "fastagi/model/__init__.py": "", "fastagi/network/__init__.py": "",
                       "fastagi/manager/__init__.py": "", "fastagi/app.py": "", **files}.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / "fastagi"


@pytest.mark.parametrize("files, problem", [
    ({"fastagi/model/calls.py": "from ..manager import store\n", "fastagi/manager/store.py": ""},
     "the model imports fastagi.manager.store (fastagi.model.calls)"),
    ({"fastagi/network/xmpp.py": "def f():\n    from fastagi.media.engine import MediaEngine\n",
      "fastagi/media/__init__.py": "", "fastagi/media/engine.py": ""},
     "a network driver imports fastagi.media.engine (fastagi.network.xmpp)"),
    ({"fastagi/network/embedded.py": "", "fastagi/manager/accounts.py": "from typing import TYPE_CHECKING\n"
      "if TYPE_CHECKING:\n    from ..network.embedded import Leg\n"},
     "fastagi.manager.accounts imports the embedded network"),
    ({"fastagi/manager/a.py": "from . import b\n", "fastagi/manager/b.py": "from .c import x\n",
      "fastagi/manager/c.py": "import fastagi.manager.a\n"},
     "import circle: fastagi.manager.a -> fastagi.manager.b -> fastagi.manager.c -> fastagi.manager.a"),
])
def test_each_rule_catches_an_import_that_breaks_it(tmp_path: Path, files: dict[str, str], problem: str) -> None:
    assert broken_rules(graph(write(tmp_path, files))) == [problem]
