"""dvc.yaml tells the truth: each stage depends on every project module its command runs.

DVC reruns a stage when a declared dependency changes, so a module the stage imports
but does not list is a change that silently reruns nothing. The imports are read from
the source (`ast`, transitively, function-level imports included), never listed by hand.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "bnmodels"


def module_file(name: str) -> Path | None:
    """The file of a project module (`bnmodels.x` -> bnmodels/x.py), None if not ours."""
    if name != PACKAGE and not name.startswith(PACKAGE + "."):
        return None
    parts = name.split(".")
    path = ROOT.joinpath(*parts).with_suffix(".py")
    return path if path.exists() else ROOT.joinpath(*parts, "__init__.py")


def imported_modules(path: Path) -> set[str]:
    """Project modules named by the import statements of one file (at any depth)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            # `from bnmodels import tracking` imports the module bnmodels.tracking.sweep_run
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return {n for n in names if module_file(n) is not None and module_file(n).exists()}


def transitive_files(script: Path) -> set[str]:
    """Repository-relative paths of the script and every project module it reaches."""
    seen: set[Path] = set()
    todo = [script]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        todo.extend(module_file(m) for m in imported_modules(path))
    # A package __init__ holding at most a docstring has no code: a change to it cannot
    # change a result.
    return {
        p.relative_to(ROOT).as_posix() if p.is_relative_to(ROOT) else str(p)
        for p in seen
        if not (p.name == "__init__.py" and docstring_only(p))
    }


def docstring_only(path: Path) -> bool:
    body = ast.parse(path.read_text()).body
    return all(isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant) for n in body)


def code_files(dep: str) -> set[str]:
    """The project modules a code dependency stands for: a file, or every module of a part
    (a folder of the package), docstring-only __init__ files aside."""
    path = ROOT / dep
    if path.is_dir():
        return {
            p.relative_to(ROOT).as_posix()
            for p in path.rglob("*.py")
            if not (p.name == "__init__.py" and docstring_only(p))
        }
    return {dep}


def is_code(dep: str) -> bool:
    return dep.endswith(".py") or dep.startswith(PACKAGE + "/")


def stages() -> dict[str, dict]:
    """Each stage's definition (a foreach stage's `do` template)."""
    spec = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    return {name: st.get("do", st) for name, st in spec.items()}


def dep_paths(stage: dict) -> list[str]:
    return [d if isinstance(d, str) else next(iter(d)) for d in stage.get("deps", [])]


def stage_script(stage: dict) -> Path:
    match = re.match(r"python (\S+\.py)\b", stage["cmd"])
    assert match, f"stage command is not `python <script>`: {stage['cmd']}"
    return ROOT / match.group(1)


@pytest.mark.parametrize("name", sorted(stages()))
def test_every_module_a_stage_imports_is_a_declared_dependency(name):
    stage = stages()[name]
    needed = transitive_files(stage_script(stage))
    declared = set().union(*(code_files(d) for d in dep_paths(stage) if is_code(d)))
    missing = sorted(needed - declared)
    assert not missing, f"stage {name} imports {missing} but does not depend on them"


@pytest.mark.parametrize("name", sorted(stages()))
def test_every_declared_code_dependency_exists_and_is_used(name):
    stage = stages()[name]
    code = [d for d in dep_paths(stage) if is_code(d)]
    absent = [d for d in code if not (ROOT / d).exists()]
    assert not absent, f"stage {name} depends on files that do not exist: {absent}"
    # a part (folder) is declared only where the stage needs every module of it
    used = transitive_files(stage_script(stage))
    unused = sorted(set().union(*(code_files(d) for d in code)) - used)
    assert not unused, f"stage {name} depends on modules it never imports: {unused}"


def test_every_data_dependency_is_another_stages_output_or_params():
    spec = stages()
    outs = {
        next(iter(o)) if isinstance(o, dict) else o
        for st in spec.values()
        for o in st.get("outs", [])
    }
    for name, stage in spec.items():
        for dep in dep_paths(stage):
            # params.yaml, registry.yaml (bnmodels registry, from git) and a file data set's
            # own file are committed (or dvc-added) inputs
            if is_code(dep) or dep in ("params.yaml", "registry.yaml", FILE_DEP):
                continue
            # the output itself, a file inside an output folder, or a folder of outputs;
            # a foreach stage's `${key}` stands for any of its items
            produced = any(
                dep == o
                or dep.startswith(o + "/")
                or o.startswith(dep + "/")
                or re.fullmatch(re.escape(o).replace(re.escape("${key}"), "[^/]+"), dep)
                for o in outs
            )
            assert produced, f"stage {name}: {dep} is neither code nor another stage's output"


FILE_DEP = "${item.file}"  # a file data set's own file (params.yaml's file_datasets)


def test_a_file_data_set_is_a_dependency_of_its_own_read_stage_only():
    # foreach over file_datasets: read@<name> depends on <name>'s file, and no other
    # stage names a file of params.yaml (editing one file reruns what it feeds)
    spec = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    assert spec["read"]["foreach"] == "${file_datasets}"
    users = [name for name, st in stages().items() if FILE_DEP in dep_paths(st)]
    assert users == ["read"]


def test_the_import_reader_follows_function_level_and_package_imports(tmp_path):
    # A stage may import inside a function, or in the package form
    # `from bnmodels import atomic`: both must be seen, or the checks above are blind.
    script = tmp_path / "stage.py"
    script.write_text(
        "import click\nfrom bnmodels import atomic\n\ndef main():\n"
        "    from bnmodels.experiment.data import load_split\n"
    )
    files = transitive_files(script)
    assert {
        "bnmodels/atomic.py",
        "bnmodels/experiment/data.py",
        "bnmodels/experiment/config.py",
    } <= files
    assert not any(f.startswith("click") for f in files)
