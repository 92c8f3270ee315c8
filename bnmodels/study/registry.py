"""When each claim was fixed, against when its runs first existed: what makes a claim
primary, and what was changed after seeing the data.

A claim is *primary* (confirmatory: Holm's family, verdicts) only if its definition, as
judged now, was committed before the results of its sweep first existed; every other
claim is exploratory, whatever params.yaml says. The proof is the git history: `derive`
reads a list of snapshots (one per commit: params.yaml's claims and sweeps, and the sweeps
the committed report had results for) and returns the registry, which `bnmodels registry`
writes to registry.yaml (committed; the aggregate stage reads it). A claim's *definition*
is what its verdict depends on: every key but its words (`says`, `source`, `hint`) and the
`primary` flag. A claim's *results* are the first commit whose report has its sweep's
section while that sweep trained on any of the seeds it trains on now: a sweep rerun on
fresh seeds (none shared with any run that had results) is a new, confirmatory test, and
a claim committed before it is fixed before its data; a sweep rerun on the same seeds
(a longer budget, say) is not, since those seeds' runs were seen.

`changes` lists each edit of a claim or a sweep made after that sweep had results (the
claim's keys that changed, the sweep's keys that changed, a claim added or removed then),
with its commit and date: the report's "Changed after seeing the data" section.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

# not part of what a verdict depends on: its words, its family flag, the question it asks
WORDS = ("says", "source", "hint", "primary", "question")


@dataclass(frozen=True)
class Snapshot:
    """One commit: its claims and sweeps as params.yaml had them, and the sweeps its
    committed report had results for."""

    commit: str
    date: str  # ISO date (YYYY-MM-DD)
    claims: Mapping[str, Mapping[str, Any]]
    sweeps: Mapping[str, Any]
    # sweep -> the seeds its report section lists (None: not listed, read params.yaml's)
    results: Mapping[str, frozenset | None] = field(default_factory=dict)
    default_seed: Any = None  # defaults.seed, for a sweep that sets no seed

    def result_seeds(self, sweep: str) -> frozenset:
        """The seeds the committed report has results of for `sweep` (empty: none)."""
        if sweep not in self.results:
            return frozenset()
        listed = self.results[sweep]
        return self.seeds(sweep) if listed is None else listed

    def seeds(self, sweep: str) -> frozenset:
        """The seeds the sweep trains on in this commit (empty: no such sweep)."""
        s = self.sweeps.get(sweep)
        if not isinstance(s, Mapping):
            return frozenset()
        seed = s.get("seed", self.default_seed)
        return frozenset(map(str, seed if isinstance(seed, list) else [seed]))


@dataclass(frozen=True)
class Entry:
    """A claim as registered: the digest of its definition, the commit that first had it,
    the first commit with results of its sweep (None: none yet), and whether the first
    came before the second."""

    definition: str
    fixed: tuple[str, str]  # (commit, date)
    results: tuple[str, str] | None
    preregistered: bool


RULES = "verdict rules"  # the subject of a Change to bnmodels/study (`rule_changes`)


@dataclass(frozen=True)
class Change:
    commit: str
    date: str
    subject: str  # "claim <id>" or "sweep <name>"
    what: str


@dataclass(frozen=True)
class Registry:
    claims: dict[str, Entry] = field(default_factory=dict)
    changes: tuple[Change, ...] = ()
    rules: tuple[str, str] | None = None  # last commit that changed the verdict rules

    def is_primary(self, cid: str, raw: Mapping[str, Any]) -> bool:
        """Whether claim `cid`, defined now as `raw`, is the one registered before its
        runs existed."""
        e = self.claims.get(cid)
        return bool(e and e.preregistered and e.definition == definition(raw))


def _canonical(x: Any) -> Any:
    if isinstance(x, Mapping):
        return {str(k): _canonical(v) for k, v in sorted(x.items(), key=lambda kv: str(kv[0]))}
    if isinstance(x, list | tuple):
        return [_canonical(v) for v in x]
    return x


def definition(raw: Mapping[str, Any]) -> str:
    """The digest of what a claim's verdict depends on (its words and flag left out)."""
    judged = {k: v for k, v in raw.items() if k not in WORDS}
    text = json.dumps(_canonical(judged), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _show(v: Any) -> str:
    return json.dumps(_canonical(v), default=str).replace('"', "")


def _diff(old: Mapping, new: Mapping) -> str:
    parts = []
    for k in dict.fromkeys([*old, *new]):
        if old.get(k) == new.get(k):
            continue
        if k in ("says", "source", "hint", "question"):
            parts.append(f"{k} reworded")
        elif k not in old:
            parts.append(f"{k}: set to {_show(new[k])}")
        elif k not in new:
            parts.append(f"{k}: {_show(old[k])} removed")
        else:
            parts.append(f"{k}: {_show(old[k])} -> {_show(new[k])}")
    return "; ".join(parts)


def _first_results(history: Sequence[Snapshot], sweep: str, seeds: frozenset) -> int | None:
    """Index of the first snapshot whose report has results of `sweep` on any of `seeds`
    (the seeds its section lists: params.yaml may have moved on before the report)."""
    return next((i for i, s in enumerate(history) if s.result_seeds(sweep) & seeds), None)


def _defined_since(history: Sequence[Snapshot], i: int, get) -> int:
    """The first index of the unbroken run of snapshots ending at i with the same value."""
    value = get(history[i])
    while i > 0 and get(history[i - 1]) == value:
        i -= 1
    return i


def derive(history: Sequence[Snapshot], rules: tuple[str, str] | None = None) -> Registry:
    """The registry of the last snapshot's claims, from the whole history (oldest first)."""
    if not history:
        return Registry(rules=rules)
    last = len(history) - 1
    claims = {}
    for cid, raw in history[last].claims.items():
        digest = definition(raw)
        start = _defined_since(
            history,
            last,
            lambda s, cid=cid: definition(s.claims[cid]) if cid in s.claims else None,
        )
        sweep = raw.get("sweep")
        first = _first_results(history, sweep, history[last].seeds(sweep))
        claims[cid] = Entry(
            definition=digest,
            fixed=(history[start].commit, history[start].date),
            results=None if first is None else (history[first].commit, history[first].date),
            preregistered=first is None or start < first,
        )
    return Registry(claims=claims, changes=tuple(_changes(history)), rules=rules)


def _changes(history: Sequence[Snapshot]) -> Iterable[Change]:
    """Every edit of a claim or sweep made after that sweep had results."""
    had: set[str] = set()  # sweeps with results so far
    for prev, snap in zip(history, history[1:], strict=False):
        had |= set(prev.results)
        for name in dict.fromkeys([*prev.sweeps, *snap.sweeps]):
            old, new = prev.sweeps.get(name), snap.sweeps.get(name)
            if name in had and old != new and old is not None and new is not None:
                yield Change(snap.commit, snap.date, f"sweep {name}", _diff(old, new))
        for cid in dict.fromkeys([*prev.claims, *snap.claims]):
            old, new = prev.claims.get(cid), snap.claims.get(cid)
            if old == new:
                continue
            sweep = (new or old).get("sweep") if isinstance(new or old, Mapping) else None
            if sweep not in had and (old is None or old.get("sweep") not in had):
                continue
            if old is None:
                what = f"added after {sweep} had results"
            elif new is None:
                what = "removed"
            else:
                what = _diff(old, new)
            kept = "; ".join(p for p in what.split("; ") if not p.endswith(" reworded"))
            if kept:  # rewording alone changes no verdict
                yield Change(snap.commit, snap.date, f"claim {cid}", kept)


def first_primary_results(reg: Registry, order: Sequence[str]) -> str | None:
    """The earliest commit (in `order`, oldest first) at which a primary claim's sweep had
    results: from then on, a change of the verdict rules could have been chosen by them."""
    seen = {c: i for i, c in enumerate(order)}
    firsts = [e.results[0] for e in reg.claims.values() if e.preregistered and e.results]
    known = [c for c in firsts if c in seen]
    return min(known, key=seen.__getitem__) if known else None


def rule_changes(log: Sequence[tuple[str, str, str]]) -> tuple[Change, ...]:
    """The commits (commit, date, message's first line) that changed the verdict rules
    after the primary claims' runs existed, as Changes: listed beside the claims' own, in
    the commit's words (a speed-up that moves no number says so there)."""

    def short(text: str) -> str:
        return text if len(text) <= 160 else text[:157].rstrip() + "..."

    return tuple(Change(c[:10], d, RULES, short(msg)) for c, d, msg in log)


def apply(claims: Sequence, raw: Mapping[str, Mapping[str, Any]], registry: Registry) -> list:
    """The claims with `primary` as the registry proves it: a claim marked primary in
    params.yaml stays so only if registered, unchanged, before its runs existed."""
    return [
        replace(c, primary=c.primary and registry.is_primary(c.id, raw.get(c.id, {})))
        for c in claims
    ]


def to_dict(reg: Registry) -> dict:
    return {
        "claims": {
            cid: {
                "definition": e.definition,
                "fixed": {"commit": e.fixed[0], "date": e.fixed[1]},
                "results": None
                if e.results is None
                else {"commit": e.results[0], "date": e.results[1]},
                "preregistered": e.preregistered,
            }
            for cid, e in reg.claims.items()
        },
        "changes": [
            {"commit": c.commit, "date": c.date, "subject": c.subject, "what": c.what}
            for c in reg.changes
        ],
        "rules": None if reg.rules is None else {"commit": reg.rules[0], "date": reg.rules[1]},
    }


def from_dict(d: Mapping | None) -> Registry:
    """The registry as registry.yaml holds it (None or empty: nothing registered)."""
    d = d or {}

    def pair(x):
        return None if x is None else (str(x["commit"]), str(x["date"]))

    return Registry(
        claims={
            str(cid): Entry(
                definition=str(e["definition"]),
                fixed=pair(e["fixed"]),
                results=pair(e.get("results")),
                preregistered=bool(e["preregistered"]),
            )
            for cid, e in (d.get("claims") or {}).items()
        },
        changes=tuple(
            Change(str(c["commit"]), str(c["date"]), str(c["subject"]), str(c["what"]))
            for c in d.get("changes") or ()
        ),
        rules=pair(d.get("rules")),
    )
