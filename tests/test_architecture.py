"""The package's import graph: no cycles, and no module importing a layer above its own.

The layers of ARCHITECTURE.md, from the bottom: shared basics, the nn layers, the models, data and
the factory, training and robustness, the Hub, the applications, and the commands on top. Read
from the source with ``ast``, counting imports inside functions too (a lazy import is still a
dependency).
"""

import ast
from pathlib import Path

import timm_pushpull

PACKAGE = Path(timm_pushpull.__file__).parent
LAUNCHER = PACKAGE.parent / "timm_pushpull_cli.py"  # the console script, outside the package

# module prefix -> layer; the longest matching prefix wins
LAYERS = {
    "timm_pushpull.version": 0,
    "timm_pushpull.constants": 0,
    "timm_pushpull.errors": 0,
    "timm_pushpull.native": 0,
    "timm_pushpull.layers": 1,
    "timm_pushpull.models": 2,
    "timm_pushpull.data": 3,
    "timm_pushpull.factory": 3,
    "timm_pushpull.training": 4,
    "timm_pushpull.robustness": 4,
    "timm_pushpull.hub": 5,
    "timm_pushpull.demo": 6,
    "timm_pushpull.study": 6,
    "timm_pushpull.benchmarks": 6,
    "timm_pushpull.robustness.cli": 7,
    "timm_pushpull.cli": 7,
    "timm_pushpull_cli": 7,
    # the package's __init__ registers the models and re-exports create_model: `import
    # timm_pushpull` is for everything from training up
    "timm_pushpull": 3,
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, modules: set[str]) -> set[str]:
    """The package's modules ``path`` imports; ``from pkg import mod`` counts as ``pkg.mod``."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
    return {m for m in found if m in modules and m != name}


def graph() -> dict[str, set[str]]:
    paths = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    if LAUNCHER.is_file():
        paths["timm_pushpull_cli"] = LAUNCHER
    return {name: imports(path, set(paths)) for name, path in paths.items()}


def layer(module: str) -> int:
    prefix = max((p for p in LAYERS if module == p or module.startswith(p + ".")), key=len)
    return LAYERS[prefix]


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected set of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(edges[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            members = []
            while True:
                member = stack.pop()
                members.append(member)
                if member == node:
                    break
            if len(members) > 1:
                found.append(sorted(members))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_cycle_finder_finds_a_planted_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_every_module_has_a_layer():
    assert not [m for m in graph() if not any(m == p or m.startswith(p + ".") for p in LAYERS)]


def test_no_import_cycles_between_modules():
    edges = graph()
    # a package's __init__ re-exports its modules: an edge into the package itself is not a cycle
    # unless the package's __init__ imports back
    assert cycles(edges) == []


def test_no_module_imports_a_layer_above_its_own():
    upward = sorted(
        f"{module} (layer {layer(module)}) imports {target} (layer {layer(target)})"
        for module, targets in graph().items()
        for target in targets
        if layer(target) > layer(module)
    )
    assert upward == []


def test_only_the_command_line_imports_the_report():
    importers = {
        m for m, targets in graph().items() if "timm_pushpull.robustness.report" in targets
    }
    assert all(m.startswith(("timm_pushpull.robustness.cli", "timm_pushpull.hub", "timm_pushpull.demo",
                             "timm_pushpull.study")) for m in importers), importers  # fmt: skip
