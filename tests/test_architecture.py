"""What ARCHITECTURE.md states, checked against the source.

Read from the source with ``ast``, counting imports inside functions too (a lazy import is still a
dependency): the layers of ARCHITECTURE.md's table (shared basics, the nn layers, the models, data
and the factory, training and robustness, the Hub, the applications, and the commands on top)
cover every module, no module imports a layer above its own and there is no import cycle; every
path the file names exists; only the commands it names import the robustness report; every
command of the launcher's table is a module with ``add_arguments`` and ``main``; and no module
imports another module's private (``_``-prefixed) name or reaches one as ``module._name``.
"""

import ast
import fnmatch
import re
from pathlib import Path

import pytest

import timm_pushpull

PACKAGE = Path(timm_pushpull.__file__).parent
ROOT = PACKAGE.parent
LAUNCHER = ROOT / "timm_pushpull_cli.py"  # the console script, outside the package
ARCHITECTURE = ROOT / "ARCHITECTURE.md"
REPORT = "timm_pushpull.robustness.report"
# (module, private name it may reach), each with why: none today (layers/ made public what the
# speed benchmark and push_and_pull share: the exact pull's definition and its scratch memory)
PRIVATE_ALLOWED: set[tuple[str, str]] = set()


def architecture() -> str:
    if not ARCHITECTURE.is_file():
        pytest.skip("ARCHITECTURE.md is not beside the package (an installed copy)")
    return ARCHITECTURE.read_text()


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def sources() -> dict[str, Path]:
    paths = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    if LAUNCHER.is_file():
        paths["timm_pushpull_cli"] = LAUNCHER
    return paths


def path_module(token: str) -> str | None:
    """The module a path of the layer table names (``study/`` -> ``timm_pushpull.study``,
    ``timm_pushpull_cli.py`` beside the package -> ``timm_pushpull_cli``), or None for a path
    that holds no Python module (``csrc/``)."""
    for base in (PACKAGE, ROOT):
        target = base / token.rstrip("/")
        if target.suffix == ".py" and target.is_file() or (target / "__init__.py").is_file():
            return module_name(target if target.suffix == ".py" else target / "__init__.py")
    return None


def layer_table() -> dict[str, int]:
    """module prefix -> layer, from the modules column of ARCHITECTURE.md's layer table."""
    layers = {}
    for number, modules in re.findall(r"^\| (\d+) [^|]*\| ([^|]*) \|", architecture(), re.M):
        for token in re.findall(r"`([^`]+)`", modules):
            module = path_module(token)
            if module is not None:
                layers[module] = int(number)
    return layers


def absolute(module: str, path: Path, node: ast.ImportFrom) -> str:
    """The module a ``from ... import`` reads from, relative imports resolved."""
    if not node.level:
        return node.module or ""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    anchor = package.split(".")
    anchor = anchor[: len(anchor) - node.level + 1]
    return ".".join(anchor + ([node.module] if node.module else []))


def imports(module: str, path: Path, modules: set[str]) -> set[str]:
    """The package's modules ``path`` imports; ``from pkg import mod`` counts as ``pkg.mod``."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = absolute(module, path, node)
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
    return {m for m in found if m in modules and m != module}


def graph() -> dict[str, set[str]]:
    paths = sources()
    return {name: imports(name, path, set(paths)) for name, path in paths.items()}


def layer(module: str, layers: dict[str, int]) -> int:
    prefix = max((p for p in layers if module == p or module.startswith(p + ".")), key=len)
    return layers[prefix]


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


def is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def private_uses(module: str, path: Path, modules: set[str]) -> list[str]:
    """``module``'s uses of another project module's private names, as ``owner.name``: a ``from
    owner import _name``, or ``_name`` reached as an attribute of a name bound to a module of the
    project (``import timm_pushpull.x as x`` or ``from .. import x``, then ``x._name``)."""
    tree = ast.parse(path.read_text())
    bound: dict[str, str] = {}  # local name -> the project module it is bound to
    uses = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.partition(".")[0] in ("timm_pushpull", "timm_pushpull_cli"):
                    local = alias.asname or alias.name.partition(".")[0]
                    bound[local] = alias.name if alias.asname else alias.name.partition(".")[0]
        elif isinstance(node, ast.ImportFrom):
            base = absolute(module, path, node)
            if base not in modules or base == module:
                continue
            for alias in node.names:
                if is_private(alias.name):
                    uses.append(f"{base}.{alias.name}")
                elif f"{base}.{alias.name}" in modules:
                    bound[alias.asname or alias.name] = f"{base}.{alias.name}"
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and is_private(node.attr):
            chain, value = [], node.value
            while isinstance(value, ast.Attribute):
                chain.append(value.attr)
                value = value.value
            if isinstance(value, ast.Name) and value.id in bound:
                owner = ".".join([bound[value.id], *reversed(chain)])
                if owner in modules and owner != module:
                    uses.append(f"{owner}.{node.attr}")
    return sorted(set(uses) - {name for m, name in PRIVATE_ALLOWED if m == module})


def test_cycle_finder_finds_a_planted_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_layer_table_is_read_from_architecture_md():
    layers = layer_table()
    # a few rows as the file states them: every layer has modules, the launcher sits beside the
    # package, and a deeper path (robustness/cli/) gets its own layer
    assert sorted(set(layers.values())) == list(range(8))
    assert layers["timm_pushpull.errors"] == 0 and layers["timm_pushpull.layers"] == 1
    assert layers["timm_pushpull_cli"] == layers["timm_pushpull.robustness.cli"] == 7
    assert layers["timm_pushpull.robustness"] == 4
    assert layer("timm_pushpull.robustness.cli.evaluate", layers) == 7


def test_every_module_has_a_layer():
    layers = layer_table()
    assert not [m for m in graph() if not any(m == p or m.startswith(p + ".") for p in layers)]


def test_no_import_cycles_between_modules():
    edges = graph()
    # a package's __init__ re-exports its modules: an edge into the package itself is not a cycle
    # unless the package's __init__ imports back
    assert cycles(edges) == []


def test_no_module_imports_a_layer_above_its_own():
    layers = layer_table()
    upward = sorted(
        f"{module} (layer {layer(module, layers)}) imports {target} (layer {layer(target, layers)})"
        for module, targets in graph().items()
        for target in targets
        if layer(target, layers) > layer(module, layers)
    )
    assert upward == []


PATH = r"`([^`\s]+(?:/|\.(?:py|c|h|yaml|md)))`"


def named_paths(text: str) -> list[tuple[str, str]]:
    """(folder, path) of each backticked path (a name ending in a file suffix or ``/``) of the
    sections that say where things live, up to the conventions (which name timm's files to
    avoid). The folder is where the text puts it: ``timm_pushpull/x/`` in a section "Inside
    `x/`", and further in a folder's parentheses (``corruptions/`` (``noise.py``, ...)); ``/``
    at the top."""
    found = []
    for section in re.split(r"^(?=## )", text.split("## Conventions")[0], flags=re.M):
        inside = re.match(r"## Inside `([^`]+/)`", section)
        scopes = [f"/timm_pushpull/{inside.group(1)}" if inside else "/"]
        body = section.partition("\n")[2] if inside else section
        previous, end = "", 0
        for token in re.finditer(rf"{PATH}|\(|\)", body):
            if token.group() == "(":
                # a folder's own parentheses: right after it
                opens = previous.endswith("/") and not body[end : token.start()].strip()
                scopes.append(scopes[-1] + previous if opens else scopes[-1])
            elif token.group() == ")":
                scopes.pop()
            else:
                found.append((scopes[-1], token.group(1)))
            previous, end = token.group(1) or "", token.end()
    return found


def test_named_paths_are_scoped_by_section_and_parentheses():
    text = (
        "| 1 | `l/` | `P` (`p.py`) |\n## Inside `r/`\n\n`c/` (`a.py`, `w.py` (+ `f.py`)), `p.py` "
        "(`q.py`)\n## Conventions\n`x.py`"
    )
    assert named_paths(text) == [
        ("/", "l/"),
        ("/", "p.py"),
        ("/timm_pushpull/r/", "c/"),
        ("/timm_pushpull/r/c/", "a.py"),
        ("/timm_pushpull/r/c/", "w.py"),
        ("/timm_pushpull/r/c/", "f.py"),
        ("/timm_pushpull/r/", "p.py"),
        ("/timm_pushpull/r/", "q.py"),
    ]


def test_every_path_architecture_md_names_exists():
    """Every path of :func:`named_paths` ends the path of a file or folder of the repository under
    the folder the text puts it in."""
    entries = [p for p in ROOT.rglob("*") if ".git" not in p.parts]
    files = ["/" + p.relative_to(ROOT).as_posix() for p in entries if p.is_file()]
    folders = ["/" + p.relative_to(ROOT).as_posix() + "/" for p in entries if p.is_dir()]
    missing = [
        f"{folder}: {path}"
        for folder, path in named_paths(architecture())
        if not any(
            fnmatch.fnmatch(f, f"*/{path}")
            for f in (folders if path.endswith("/") else files)
            if f.startswith(folder)
        )
    ]
    assert missing == []


def test_robustness_modules_import_only_those_listed_before_them():
    """ "Inside `robustness/`" lists its modules from the bottom: none imports one listed after it
    (a package's modules count as the package's place in the list)."""
    section = "## Inside `robustness/`" + architecture().split("## Inside `robustness/`")[1]
    order = []
    for folder, path in named_paths(section.split("\n## ")[0]):
        module = path_module(folder.removeprefix("/timm_pushpull/") + path)
        if module is not None and module not in order:
            order.append(module)
    assert "timm_pushpull.robustness.report" in order and len(order) > 10

    def place(module: str) -> int | None:
        # the most specific entry: a module of corruptions/ listed itself, or the package's place
        places = [i for i, o in enumerate(order) if module == o or module.startswith(o + ".")]
        return max(places, default=None)

    upward = sorted(
        f"{module} imports {target}"
        for module, targets in graph().items()
        for target in targets
        if place(module) is not None
        and place(target) is not None
        and place(target) > place(module)
        and not target.startswith(order[place(module)] + ".")  # a package's own modules
    )
    assert upward == []


def test_only_the_commands_architecture_md_names_import_the_report():
    sentence = re.search(r"Only the commands that write reports import `robustness/report.py`:(.*?)\.(?:\s|$)",
                         " ".join(architecture().split()))  # fmt: skip
    assert sentence, "ARCHITECTURE.md no longer says which modules import the report"
    allowed = [path_module(token) for token in re.findall(r"`([^`]+)`", sentence.group(1))]
    assert None not in allowed
    importers = {m for m, targets in graph().items() if REPORT in targets}
    assert importers
    assert [m for m in importers if not any(m == a or m.startswith(a + ".") for a in allowed)] == []


def test_every_command_module_adds_its_arguments_and_runs():
    """The launcher's dispatch as ARCHITECTURE.md states it: each sub-command's module defines
    ``add_arguments(parser)`` and ``main(args)`` (read from the source, importing nothing)."""
    tree = ast.parse(LAUNCHER.read_text())
    table = next(n for n in tree.body if isinstance(n, ast.AnnAssign) and n.target.id == "COMMANDS")
    commands = ast.literal_eval(table.value)
    paths = sources()
    lacking = []
    for name, (module, _) in commands.items():
        assert module in paths, f"{name}: no module {module}"
        defined = {n.name for n in ast.parse(paths[module].read_text()).body
                   if isinstance(n, ast.FunctionDef)}  # fmt: skip
        lacking += [
            f"{name} ({module}): {f}" for f in ("add_arguments", "main") if f not in defined
        ]
    assert lacking == []
    # and where ARCHITECTURE.md says argument parsing lives, each named module is a command's
    named = re.search(r"So argument parsing lives in each command's own module[^:]*:(.*?)\(the",
                      " ".join(architecture().split()))  # fmt: skip
    assert named
    listed = {path_module(token) for token in re.findall(r"`([^`]+)`", named.group(1))}
    assert listed == {module for module, _ in commands.values()}


def test_private_name_finder_finds_planted_uses(tmp_path):
    modules = {
        "timm_pushpull",
        "timm_pushpull.a",
        "timm_pushpull.b",
        "timm_pushpull.pkg",
        "timm_pushpull.pkg.c",
    }
    source = tmp_path / "timm_pushpull" / "b.py"
    source.parent.mkdir()
    source.write_text(
        "from .a import _hidden, public, __version__\n"
        "from . import pkg\n"
        "import timm_pushpull.pkg.c as c\n"
        "def f(self):\n"
        "    return pkg.c._x, c._y, self._own, pkg.__name__, _local\n"
    )
    uses = private_uses("timm_pushpull.b", source, modules)
    assert uses == ["timm_pushpull.a._hidden", "timm_pushpull.pkg.c._x", "timm_pushpull.pkg.c._y"]


def test_no_module_imports_a_private_name_of_another():
    paths = sources()
    modules = set(paths)
    uses = {m: private_uses(m, path, modules) for m, path in paths.items()}
    assert {m: u for m, u in uses.items() if u} == {}
