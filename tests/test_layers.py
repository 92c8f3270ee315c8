"""The package's map (bnmodels/__init__.py) is true: each part imports only the parts below
it, and the shared leaves import no part."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "bnmodels"
# each part, and the parts it may import (the leaves errors and atomic are open to all)
ALLOWED = {
    "experiment": set(),
    "training": {"experiment"},
    "tracking": {"experiment", "training"},
    "study": {"experiment"},
    "report": {"experiment", "study"},
}
LEAVES = {"errors", "atomic", "columns", "pools", "shutdown"}


def imported_parts(path: Path) -> set[str]:
    """The bnmodels parts or leaves an import statement of this file names, at any depth."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            if node.module == "bnmodels":
                names.update(f"bnmodels.{a.name}" for a in node.names)
    return {n.split(".")[1] for n in names if n.startswith("bnmodels.")}


@pytest.mark.parametrize("part", sorted(ALLOWED))
def test_each_part_imports_only_the_parts_below_it(part):
    for path in sorted((PACKAGE / part).rglob("*.py")):
        wrong = imported_parts(path) - ALLOWED[part] - LEAVES - {part}
        assert not wrong, f"{path.relative_to(PACKAGE)} imports {sorted(wrong)}"


def test_the_leaves_import_no_part():
    for leaf in sorted(LEAVES):
        assert not imported_parts(PACKAGE / f"{leaf}.py"), leaf


def test_every_module_of_the_package_belongs_to_a_part_or_is_a_named_leaf():
    top = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__"}
    assert top == LEAVES | {"cli"}
    assert {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()} == set(ALLOWED)


def test_the_map_in_the_package_docstring_names_every_part():
    doc = ast.get_docstring(ast.parse((PACKAGE / "__init__.py").read_text()))
    assert all(part in doc for part in ALLOWED)
