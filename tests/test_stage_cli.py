"""Stage scripts misused by hand: a clean message and exit code 2, never a traceback."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from click.testing import CliRunner

STAGES = Path(__file__).resolve().parents[1] / "stages"


def stage(name: str):
    spec = importlib.util.spec_from_file_location(f"stage_{name}", STAGES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def invoke(name: str, *args: str):
    result = CliRunner().invoke(stage(name), list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"{name} {args} raised {result.exception!r}"
    )
    return result


def test_generate_of_an_undefined_data_set_names_the_defined_ones(
    write_params, raw_params, tmp_path
):
    params = write_params(raw_params)
    result = invoke("generate", "nosuch", "--params", str(params), "--out", str(tmp_path / "x"))
    assert result.exit_code == 2
    assert "no data set 'nosuch' under datasets (quad2)" in result.output
    assert not (tmp_path / "x").exists()


def test_generate_with_a_missing_params_file_is_a_usage_error(tmp_path):
    result = invoke("generate", "quad2", "--params", str(tmp_path / "absent.yaml"), "--out", "x")
    assert result.exit_code == 2 and "does not exist" in result.output


def test_normalize_with_a_missing_raw_file_is_a_usage_error(tmp_path):
    result = invoke("normalize", "quad2", "--raw", str(tmp_path / "no.pt"), "--processed", "p")
    assert result.exit_code == 2
    assert "Invalid value for '--raw'" in result.output and "does not exist" in result.output


def test_plan_without_processed_data_is_a_usage_error(write_params, raw_params, tmp_path):
    args = ["--params", str(write_params(raw_params)), "--processed", str(tmp_path / "none")]
    result = invoke("plan", *args, "--out", str(tmp_path / "plans"))
    assert result.exit_code == 2 and "'--processed'" in result.output


def test_plan_with_bad_params_lists_the_problem_without_traceback(
    write_params, raw_params, tmp_path
):
    raw_params["defaults"]["bn"] = "prre"
    (tmp_path / "processed").mkdir()
    args = ["--params", str(write_params(raw_params)), "--processed", str(tmp_path / "processed")]
    result = invoke("plan", *args, "--out", str(tmp_path / "plans"))
    assert result.exit_code == 2
    assert "defaults.bn: 'prre' is not allowed" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("name", sorted(p.stem for p in STAGES.glob("*.py")))
def test_every_stage_describes_itself_and_types_its_paths(name):
    result = invoke(name, "--help")
    assert result.exit_code == 0
    usage, _, rest = result.output.partition("\n\n")
    assert rest.strip() and not rest.lstrip().startswith("Options"), "no description"
    assert " TEXT " not in result.output.replace("DATASET", ""), "untyped path option"
