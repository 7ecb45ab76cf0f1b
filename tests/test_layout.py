"""The package layout is the architecture: which modules may import which, no import cycles, and
config fields documented in one line each (tyro prints them in ``--help``)."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, List, Set

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"mzen_ns": ROOT / "mzen_ns", "mzen_dataparsers": ROOT / "dataparsers"}
LEAVES = (
    "mzen_ns.priming",
    "mzen_ns.geometry",
    "mzen_ns.synthetic",
    "mzen_ns.kernels",
    "mzen_ns.run_record",
    "mzen_ns.evaluation.metrics",
    "mzen_ns.evaluation.keys",
)
"""Libraries the method uses that import neither nerfstudio nor anything of mzen outside themselves."""
PARSER_CORE = (
    "mzen_dataparsers.manifest",
    "mzen_dataparsers.images",
    "mzen_dataparsers.errors",
    "mzen_dataparsers.tiff_metadata",
)
"""The scene reader: no nerfstudio, no mzen_ns."""


def module_name(path: Path) -> str:
    for package, folder in PACKAGES.items():
        if folder in path.parents:
            parts = path.relative_to(folder).with_suffix("").parts
            return ".".join((package,) + tuple(p for p in parts if p != "__init__"))
    raise ValueError(path)


def modules() -> Dict[str, Path]:
    return {module_name(path): path for folder in PACKAGES.values() for path in sorted(folder.rglob("*.py"))}


def imports(path: Path, name: str) -> Set[str]:
    """Every module ``path`` imports, at module level or inside functions (relative imports resolved)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: Set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def graph() -> Dict[str, Set[str]]:
    """Module → the project modules it imports."""
    known = modules()
    return {name: {m for m in imports(path, name) if m in known and m != name} for name, path in known.items()}


def within(name: str, prefixes) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def test_every_package_folder_is_installed():
    import tomllib

    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    folders = {module_name(path) for folder in PACKAGES.values() for path in folder.rglob("__init__.py")}
    assert folders == listed  # a folder missing here is left out of a wheel or a non-editable install


def test_the_parser_is_imported_by_its_installed_name():
    """The folder is ``dataparsers/``; an import by that name would only work from the repository root."""
    wrong = {
        name: sorted(m for m in imports(path, name) if within(m, ["dataparsers"])) for name, path in modules().items()
    }
    assert {name: found for name, found in wrong.items() if found} == {}


def test_nothing_imports_the_command_line_modules():
    edges = [
        (a, b)
        for a, targets in graph().items()
        for b in targets
        if within(b, ["mzen_ns.scripts"]) and not within(a, ["mzen_ns.scripts"])
    ]
    assert edges == []


@pytest.mark.parametrize("leaf", LEAVES + PARSER_CORE)
def test_libraries_import_no_nerfstudio_and_nothing_above_them(leaf):
    allowed = PARSER_CORE if leaf in PARSER_CORE else (leaf,)
    checked = [name for name in modules() if within(name, [leaf])]
    assert checked, f"no module {leaf}"
    for name in checked:
        assert not [m for m in imports(modules()[name], name) if within(m, ["nerfstudio"])], name
        outside = [m for m in graph()[name] if not within(m, allowed)]
        assert outside == [], f"{name} imports {outside}"


def test_the_dataparser_package_imports_nothing_of_the_method():
    assert [
        (a, b)
        for a, targets in graph().items()
        for b in targets
        if within(a, ["mzen_dataparsers"]) and within(b, ["mzen_ns"])
    ] == []


def test_no_import_cycles():
    edges = graph()
    state: Dict[str, int] = {}
    cycles: List[List[str]] = []

    def visit(node: str, stack: List[str]) -> None:
        state[node] = 1
        for target in sorted(edges[node]):
            if state.get(target) == 1:
                cycles.append(stack[stack.index(target) :] + [target])
            elif target not in state:
                visit(target, stack + [target])
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
    assert cycles == []


def config_classes():
    """Dataclasses users configure through tyro: ``*Config`` classes and the console commands' options."""
    for name, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            decorated = isinstance(node, ast.ClassDef) and any(
                (isinstance(d, ast.Name) and d.id == "dataclass")
                or (isinstance(d, ast.Call) and getattr(d.func, "id", "") == "dataclass")
                for d in node.decorator_list
            )
            if decorated and (node.name.endswith("Config") or within(name, ["mzen_ns.scripts"])):
                yield f"{name}.{node.name}", node


@pytest.mark.parametrize("qualified,node", list(config_classes()), ids=lambda v: v if isinstance(v, str) else "")
def test_every_config_field_has_a_one_line_docstring(qualified, node):
    body = node.body
    for index, statement in enumerate(body):
        if not (isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name)):
            continue
        field = statement.target.id
        following = body[index + 1] if index + 1 < len(body) else None
        docstring = (
            following.value.value
            if isinstance(following, ast.Expr) and isinstance(following.value, ast.Constant)
            else None
        )
        assert isinstance(docstring, str), f"{qualified}.{field} has no docstring"
        assert "\n" not in docstring.strip(), f"{qualified}.{field}: docstring runs to several lines"
