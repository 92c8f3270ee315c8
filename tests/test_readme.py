"""The commands of the README and of docs/ work as written (those that a test can run in
seconds here; `make run` and `make test` are run by CI and tests/test_pipeline.py runs
`dvc repro`)."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
# the README and the pages it links to: every command they show must work as written
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
README = "\n".join(p.read_text() for p in DOCS)


def inline_commands(prefix: str) -> list[str]:
    """Every `code span` of the README that starts with `prefix`."""
    return sorted({c for c in re.findall(r"`([^`\n]+)`", README) if c.startswith(prefix)})


def commands_in_code() -> str:
    """The README's code: fenced blocks and `code spans` (prose like "make variables" is
    not a command)."""
    blocks = re.findall(r"```[a-z]*\n(.*?)```", README, flags=re.S)
    return "\n".join(blocks + re.findall(r"`([^`\n]+)`", README))


def test_every_make_target_the_readme_names_exists():
    targets = set(re.findall(r"(?:^|\s|`)make ([a-z][a-z-]*)", commands_in_code(), flags=re.M))
    assert {"run", "test", "ui"} <= targets
    for target in sorted(targets):
        dry = subprocess.run(["make", "-n", target], cwd=ROOT, capture_output=True, text=True)
        assert dry.returncode == 0, f"make {target}: {dry.stderr}"


@pytest.mark.parametrize(
    "command",
    [c for c in inline_commands("dvc exp run") if "-S '" in c or "--set-param '" in c],
)
def test_every_dvc_exp_run_override_in_the_readme_applies_to_params_yaml(command, tmp_path):
    """DVC applies `-S` overrides with Hydra, which refuses a key that does not exist yet
    unless it is written `+key=value`; applied to a copy of params.yaml, as DVC does."""
    from dvc.utils.hydra import apply_overrides

    args = shlex.split(command)
    overrides = [args[i + 1] for i, a in enumerate(args) if a in ("-S", "--set-param")]
    assert overrides, command
    params = tmp_path / "params.yaml"
    shutil.copy(ROOT / "params.yaml", params)
    apply_overrides(params, overrides)  # raises on a key that is not in params.yaml
    applied = yaml.safe_load(params.read_text())
    for override in overrides:
        path, value = override.lstrip("+").split("=", 1)
        node = applied
        for key in path.split("."):
            node = node[key]
        assert node == yaml.safe_load(value), override


def test_the_readme_console_command_answers():
    bnmodels = shutil.which("bnmodels", path=str(ROOT / ".venv" / "bin")) or "bnmodels"
    out = subprocess.run([bnmodels, "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and "bnmodels" in out.stdout


def comparison_commands() -> list[str]:
    """The README's `dvc exp show`, `dvc exp diff` and `dvc plots diff` command lines."""
    lines = [line.split("#")[0].strip() for line in commands_in_code().splitlines()]
    prefixes = ("dvc exp show", "dvc exp diff", "dvc plots diff")
    return sorted({line for line in lines if line.startswith(prefixes)})


@pytest.mark.parametrize("command", comparison_commands())
def test_every_experiment_comparison_command_in_the_readme_is_one_dvc_accepts(command):
    """Parsed by DVC's own command line parser (an unknown flag raises); its column
    patterns compile, and a `dvc.yaml::` plot target names a plot that dvc.yaml declares."""
    from dvc.cli import parse_args

    args = parse_args(shlex.split(command)[1:])
    for pattern in [*(getattr(args, "drop", None) or []), *(getattr(args, "keep", None) or [])]:
        re.compile(pattern)
    declared = {
        p if isinstance(p, str) else next(iter(p))
        for p in yaml.safe_load((ROOT / "dvc.yaml").read_text())["plots"]
    }
    for target in getattr(args, "targets", None) or []:
        if target.startswith("dvc.yaml::"):
            assert target.removeprefix("dvc.yaml::") in declared, target


def test_the_readme_says_how_to_compare_experiments():
    assert {"dvc exp show", "dvc exp diff", "dvc plots diff"} <= {
        " ".join(c.split()[:3]) for c in comparison_commands()
    }


def team_setup() -> str:
    """The fenced block of docs/tracking.md's team server section: its set-up in order."""
    text = (ROOT / "docs" / "tracking.md").read_text()
    section = text[text.index("## A tracking server for a team") :]
    return re.search(r"```bash\n(.*?)```", section, flags=re.S).group(1)


@pytest.mark.slow
@pytest.mark.skipif(
    not Path("/usr/lib/postgresql/15/bin/initdb").exists(), reason="no PostgreSQL 15 binaries"
)
def test_the_team_server_setup_in_docs_runs_as_written(tmp_path):
    """Every line of the set-up (server, users, certificate, client, stop), run in order by
    bash as written, on a server of its own: `make` with this test's state folder and
    ports, `.server` and port 5000 replaced by them. The client's line must answer with
    the editor's credentials (the pipeline itself through such a server:
    tests/test_server.py)."""
    import socket

    block = team_setup()
    assert [line.split()[:2] for line in block.splitlines() if line.startswith("make")] == [
        ["make", "server"],
        ["make", "server-user"],
        ["make", "server-user"],
        ["make", "server-stop"],
    ]
    ports = []
    for _ in range(2):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
    # PostgreSQL runs as the postgres user when we are root: pytest's folders are private
    state = Path(tempfile.mkdtemp(prefix="bnmodels-docs-server-"))
    state.chmod(0o755)
    script = block.replace("$PWD/.server", str(state)).replace(".server", str(state))
    script = script.replace("127.0.0.1:5000", f"127.0.0.1:{ports[0]}")
    make = f"make -s -C {ROOT} SERVER_DIR={state} PORT={ports[0]} PG_PORT={ports[1]}"
    prelude = f'set -euo pipefail\nexport PATH="{ROOT / ".venv" / "bin"}:$PATH"\n'
    prelude += f'make() {{ command {make} "$@"; }}\ntrap "make server-stop >/dev/null" EXIT\n'
    out = subprocess.run(
        ["bash", "-c", prelude + script], cwd=tmp_path, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    shutil.rmtree(state, ignore_errors=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"MLflow server: https://127.0.0.1:{ports[0]}" in out.stdout
    assert f"Admin credentials: {state}/credentials" in out.stdout
    assert "user alice: EDIT" in out.stdout and "user bob: READ" in out.stdout
    assert "MLflow server and PostgreSQL stopped" in out.stdout
