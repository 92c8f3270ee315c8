"""When each claim was fixed, from git: a claim is primary only if committed before its
sweep first had results on its seeds; every change after results is listed."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from bnmodels.cli import git_history, main
from bnmodels.study import registry as reg

ROOT = Path(__file__).resolve().parents[1]
SWEEP = {"bn": ["none", "pre"], "seed": [1, 2, 3]}
CLAIM = {"says": "x", "sweep": "s", "compare": {"bn": "pre"}, "against": {"bn": "none"},
         "metric": "final_test_mse", "expect": "lower"}  # fmt: skip


def _commit(repo: Path, params: dict, report: str | None, message: str, date: str) -> None:
    (repo / "params.yaml").write_text(yaml.safe_dump(params))
    if report is not None:
        (repo / "reports").mkdir(exist_ok=True)
        (repo / "reports" / "report.md").write_text(report)
    env = {"GIT_COMMITTER_DATE": f"{date}T12:00:00", "GIT_AUTHOR_DATE": f"{date}T12:00:00"}
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", message],
        cwd=repo,
        check=True,
        env={**env, "PATH": "/usr/bin:/bin"},
    )


@pytest.fixture
def history(tmp_path):
    """A repository: claim `before` committed before the sweep's first results; `after`
    added after them; `before` then narrowed; a rerun on fresh seeds with `fresh`
    committed before its results."""
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    report = "# r\n\n## Sweep `s`\n"  # an older report: no seeds listed
    _commit(tmp_path, {"sweeps": {"s": SWEEP}, "claims": {"before": CLAIM}}, "", "a", "2026-01-01")
    _commit(
        tmp_path, {"sweeps": {"s": SWEEP}, "claims": {"before": CLAIM}}, report, "b", "2026-01-02"
    )
    both = {"before": CLAIM, "after": {**CLAIM, "expect": "higher"}}
    _commit(tmp_path, {"sweeps": {"s": SWEEP}, "claims": both}, report, "c", "2026-01-03")
    narrowed = {**both, "before": {**CLAIM, "where": {"bn": ["none", "pre"]}, "hint": "h"}}
    _commit(tmp_path, {"sweeps": {"s": SWEEP}, "claims": narrowed}, report, "d", "2026-01-04")
    fresh_sweep = {**SWEEP, "seed": [7, 8, 9]}  # the same design on seeds never seen
    sweeps = {"s": SWEEP, "s2": fresh_sweep}
    claims = {**narrowed, "fresh": {**CLAIM, "says": "fresh seeds", "sweep": "s2"}}
    _commit(tmp_path, {"sweeps": sweeps, "claims": claims}, report, "e", "2026-01-05")
    report2 = report + "## Sweep `s2`\n\nAxes: bn. Seeds (3): 7, 8, 9.\n"
    _commit(tmp_path, {"sweeps": sweeps, "claims": claims}, report2, "f", "2026-01-06")
    return tmp_path


def test_a_claim_is_primary_only_if_committed_before_its_results(history):
    r = reg.derive(git_history(history))
    e = r.claims
    # `after` was written once the report had the sweep; `before` was narrowed after
    # results (its current definition is a later commit); `fresh` preceded its results
    assert not e["after"].preregistered and not e["before"].preregistered
    assert e["fresh"].preregistered and e["fresh"].fixed[1] == "2026-01-05"
    assert e["fresh"].results[1] == "2026-01-06"


def test_results_are_read_on_the_seeds_the_report_lists_not_params(tmp_path):
    """A commit that moves a sweep to fresh seeds still has the old report: its results are
    of the old seeds, so a claim committed with the move precedes its runs."""
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    old = "## Sweep `s`\n\nSeeds (3): 1, 2, 3.\n"
    _commit(tmp_path, {"sweeps": {"s": SWEEP}, "claims": {}}, old, "a", "2026-01-01")
    moved = {"sweeps": {"s": {**SWEEP, "seed": [7, 8, 9]}}, "claims": {"c": CLAIM}}
    _commit(tmp_path, moved, old, "b", "2026-01-02")
    assert reg.derive(git_history(tmp_path)).claims["c"].preregistered
    new = "## Sweep `s`\n\nSeeds (3): 7, 8, 9.\n"
    _commit(tmp_path, moved, new, "c", "2026-01-03")
    e = reg.derive(git_history(tmp_path)).claims["c"]
    assert e.preregistered and e.results[1] == "2026-01-03"
    # and the same claim on the old seeds would not have been
    back = {"sweeps": {"s": SWEEP}, "claims": {"c": CLAIM}}
    _commit(tmp_path, back, old, "d", "2026-01-04")
    assert not reg.derive(git_history(tmp_path)).claims["c"].preregistered


def test_the_changes_after_seeing_the_data_are_listed_from_git(history):
    changes = [(c.date, c.subject, c.what) for c in reg.derive(git_history(history)).changes]
    assert ("2026-01-03", "claim after", "added after s had results") in changes
    narrowed = [c for c in changes if c[1] == "claim before"]
    assert narrowed == [("2026-01-04", "claim before", "where: set to {bn: [none, pre]}")]
    # rewording alone is not a change of what is judged, and fresh's own sweep had no
    # results when it was added
    assert not any("reworded" in c[2] for c in changes)
    assert not any(c[1] == "claim fresh" for c in changes)


def test_the_registry_decides_primary_and_an_edit_undoes_it(history):
    r = reg.derive(git_history(history))
    raw = yaml.safe_load((history / "params.yaml").read_text())["claims"]
    assert r.is_primary("fresh", raw["fresh"])
    assert not r.is_primary("fresh", {**raw["fresh"], "expect": "higher"})  # edited since
    assert not r.is_primary("after", raw["after"])
    assert reg.from_dict(reg.to_dict(r)) == r  # registry.yaml round-trips


def test_bnmodels_registry_writes_the_file(history, monkeypatch):
    monkeypatch.chdir(history)
    out = CliRunner().invoke(main, ["registry", "--out", "reg.yaml"])
    assert out.exit_code == 0, out.output
    assert "1 of 3 claims fixed before their runs existed" in out.output
    written = reg.from_dict(yaml.safe_load((history / "reg.yaml").read_text()))
    assert written.claims["fresh"].preregistered


def test_the_committed_registry_agrees_with_this_repositorys_history():
    """registry.yaml was derived from git: re-deriving it now gives the same record for
    every claim (a claim's results may have arrived since, always after it was fixed)."""
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: no history to check registry.yaml against")
    shallow = subprocess.run(
        ["git", "rev-parse", "--is-shallow-repository"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    if shallow == "true":
        pytest.skip("a shallow clone: no history to check registry.yaml against")
    committed = reg.from_dict(yaml.safe_load((ROOT / "registry.yaml").read_text()))
    now = reg.derive(git_history(ROOT))
    for cid, e in committed.claims.items():
        if cid not in now.claims:
            continue  # removed since
        got = now.claims[cid]
        if got.definition != e.definition:
            continue  # edited since: not primary, whatever the file says
        assert got.fixed == e.fixed, cid
        assert got.preregistered == e.preregistered or got.results is not None, cid
        if e.preregistered and got.results is not None:
            assert got.results[1] >= e.fixed[1], cid


def test_a_change_of_the_verdict_rules_after_primary_results_is_listed(history, monkeypatch):
    """`fresh` is primary with results at commit f: a later commit to bnmodels/study is
    listed as a change of the verdict rules, in its own words; one before f is not."""
    rules = history / "bnmodels" / "study"
    rules.mkdir(parents=True)
    (rules / "rule.py").write_text("A = 1\n")
    subprocess.run(["git", "add", "-A"], cwd=history, check=True)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm"]
    subprocess.run([*git, "rules: a faster sum, no number moves"], cwd=history, check=True)
    monkeypatch.chdir(history)
    out = CliRunner().invoke(main, ["registry", "--out", "reg.yaml"])
    assert out.exit_code == 0, out.output
    written = reg.from_dict(yaml.safe_load((history / "reg.yaml").read_text()))
    listed = [c for c in written.changes if c.subject == reg.RULES]
    assert [c.what for c in listed] == ["rules: a faster sum, no number moves"]
    assert written.rules[0] == listed[0].commit
    from bnmodels.report.record_section import changes_markdown

    text = changes_markdown(written, ["fresh"], ["fresh"])
    assert "1 commit(s) changed them after the primary claims' runs" in text
    assert "rules: a faster sum, no number moves" in text
