"""The `bnmodels` command: links to each sweep's runs in the MLflow UI, the registry of
when each claim was fixed (from git), and the version."""

from __future__ import annotations

import re
import subprocess
from dataclasses import replace
from pathlib import Path

import click
import yaml


@click.group()
@click.version_option(package_name="bnmodels")
def main():
    """Batch Normalization experiments, tracked (run the pipeline with `dvc repro`)."""


@main.command()
@click.option("--ui", default="http://127.0.0.1:5000", show_default=True)
def links(ui: str):
    """Print the MLflow UI link of each sweep: its landing view (the configurations of
    its latest execution compared), or its runs table before the view exists."""
    from bnmodels.tracking import store

    uri = store.default_tracking_uri(Path.cwd())
    if (path := store.sqlite_path(uri)) is not None and not path.exists():
        click.echo(f"no MLflow store yet at {path}: run `make run` first")
        return
    for name, url in sweep_links(uri, ui).items():
        click.echo(f"{name:32s} {url}")


def sweep_links(uri: str, ui: str) -> dict[str, str]:
    """{experiment name: UI link} of each sweep in the store at `uri`, by name: its landing
    view (`bnmodels.tracking.ui_view`), or its runs table before the view exists."""
    from mlflow import MlflowClient

    from bnmodels.tracking import store, ui_view

    exps = MlflowClient(uri).search_experiments(
        filter_string=f"name LIKE '{store.EXPERIMENT_PREFIX}%'"
    )
    out = {}
    for e in sorted(exps, key=lambda e: e.name):
        url = store.experiment_url(uri, e.experiment_id, ui)
        view = ui_view.TAG_PREFIX + ui_view.VIEW_KEY in e.tags
        out[e.name] = ui_view.view_url(url) if view else url
    return out


SWEEP_SECTION = re.compile(r"^## Sweep `([^`]+)`", re.M)
SEEDS_LINE = re.compile(r"Seeds \(\d+\): ([^.\n]+)\.")


def report_results(text: str) -> dict[str, frozenset | None]:
    """Each sweep section of a committed report, with the seeds it lists (None: an older
    report that lists none)."""
    out: dict[str, frozenset | None] = {}
    parts = SWEEP_SECTION.split(text)  # [before, name, body, name, body, ...]
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        m = SEEDS_LINE.search(body)
        out[name] = frozenset(x.strip() for x in m.group(1).split(",")) if m else None
    return out


def _git(*args: str, cwd: Path) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, text=True, check=True
    ).stdout


def git_history(repo: Path, params: str = "params.yaml", report: str = "reports/report.md"):
    """One registry.Snapshot per commit (oldest first) that changed params.yaml or the
    committed report: its claims, its sweeps, and the sweeps its report has results for."""
    from bnmodels.study.registry import Snapshot

    out = []
    log = _git("log", "--reverse", "--format=%H %cs", "--", params, report, cwd=repo)
    for line in log.splitlines():
        commit, date = line.split()
        shown = subprocess.run(
            ["git", "show", f"{commit}:{params}"], cwd=repo, capture_output=True, text=True
        )
        try:
            raw = yaml.safe_load(shown.stdout) if shown.returncode == 0 else {}
        except yaml.YAMLError:  # a commit with a broken params.yaml: nothing fixed there
            raw = {}
        raw = raw if isinstance(raw, dict) else {}
        text = subprocess.run(
            ["git", "show", f"{commit}:{report}"], cwd=repo, capture_output=True, text=True
        ).stdout
        claims = raw.get("claims") if isinstance(raw.get("claims"), dict) else {}
        if "claims" not in raw and out:  # a commit without the section: it changed none
            claims = out[-1].claims
        out.append(
            Snapshot(
                commit=commit[:10],
                date=date,
                claims={str(k): v for k, v in claims.items() if isinstance(v, dict)},
                sweeps=raw.get("sweeps") if isinstance(raw.get("sweeps"), dict) else {},
                results=report_results(text),
                default_seed=(raw.get("defaults") or {}).get("seed")
                if isinstance(raw.get("defaults"), dict)
                else None,
            )
        )
    return out


@main.command()
@click.option("--out", default="registry.yaml", show_default=True)
@click.option("--rules", default="bnmodels/study", show_default=True, help="the verdict rules")
def registry(out: str, rules: str):
    """Write registry.yaml from git: when each claim of params.yaml was fixed, whether that
    came before its sweep's first results (primary) or not (exploratory), and every claim
    or sweep changed after its sweep had results. Commit a claim before its runs exist,
    then run this and commit registry.yaml, to make the claim primary."""
    from bnmodels.study import registry as reg

    repo = Path(_git("rev-parse", "--show-toplevel", cwd=Path.cwd()).strip())
    if _git("rev-parse", "--is-shallow-repository", cwd=repo).strip() == "true":
        raise click.ClickException("a shallow clone has no history to prove dates: fetch it all")
    last = _git("log", "-1", "--format=%H %cs", "--", rules, cwd=repo).split()
    derived = reg.derive(git_history(repo), (last[0][:10], last[1]) if last else None)
    order = [c[:10] for c in _git("log", "--reverse", "--format=%H", cwd=repo).split()]
    first = reg.first_primary_results(derived, order)
    if first is not None:  # the rules' commits since: listed with the claims' changes
        log = _git(
            "log", "--reverse", "--format=%H %cs %s", f"{first}..HEAD", "--", rules, cwd=repo
        )
        since = [tuple(line.split(" ", 2)) for line in log.splitlines() if line.strip()]
        derived = replace(derived, changes=derived.changes + reg.rule_changes(since))
    header = (
        "# Written by `bnmodels registry` from git history (do not edit by hand): when each\n"
        "# claim was fixed and when its sweep first had results (bnmodels/study/registry.py).\n"
    )
    Path(out).write_text(header + yaml.safe_dump(reg.to_dict(derived), sort_keys=False))
    n = sum(e.preregistered for e in derived.claims.values())
    click.echo(f"{out}: {n} of {len(derived.claims)} claims fixed before their runs existed")


if __name__ == "__main__":
    main()
