"""What a study left in its experiment directory, per Ray trial: the rows of its ``result.json`` (the last
attempt of each epoch), its final summary and its error; and the join of Optuna's trials to them. Files only
(no Ray, no torch): `tlsearch status` and the analysis both read a study through here, with one join."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tlsearch.search.experiment import RAY_TRIAL_ATTR, Experiment


@dataclass
class RayTrial:
    trial_id: str
    dir: Path
    config: dict[str, Any]
    epochs: list[dict[str, Any]]
    final: dict[str, Any] | None
    last: dict[str, Any]
    error: str | None
    first_timestamp: float


def _last_attempt(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per ``training_iteration``: the last one written. A trial restored from a checkpoint (a retry after
    its node or worker died, or ``tlsearch resume`` after the driver died) reports again the iterations after
    that checkpoint, and Tune appends them to the same result.json; the later report is the attempt the trial's
    final model descends from."""
    last: dict[Any, dict[str, Any]] = {}
    for i, r in enumerate(rows):
        last[r.get("training_iteration", ("row", i))] = r
    if len(last) == len(rows):
        return rows
    return sorted(last.values(), key=lambda r: r.get("training_iteration", 0))


def read_ray_trials(exp: Experiment) -> list[RayTrial]:
    out = []
    for path in sorted(exp.tune_dir.glob("*/result.json")) if exp.tune_dir.exists() else []:
        rows = []
        for line in path.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except ValueError:  # a line cut by a crash
                continue
        error = None
        err = path.parent / "error.txt"
        if err.exists():
            lines = [ln for ln in err.read_text().strip().splitlines() if ln.strip()]
            error = lines[-1][:300] if lines else "error"
        if not rows and error is None:
            continue
        rows = _last_attempt(rows)
        finals = [r for r in rows if r.get("final")]
        last = rows[-1] if rows else {}
        params = path.parent / "params.json"
        config = last.get("config") or (json.loads(params.read_text()) if params.exists() else {})
        out.append(RayTrial(trial_id=str(last.get("trial_id", path.parent.name)), dir=path.parent, config=config,
                            epochs=[r for r in rows if not r.get("final")], final=finals[-1] if finals else None,
                            last=last, error=error, first_timestamp=float(rows[0].get("timestamp", 0)) if rows else 0.0))
    return out


def match_trials(optuna_trials: list[Any], ray_trials: list[RayTrial]) -> dict[int, RayTrial]:
    """Optuna trial number -> Ray trial: by the id the searcher recorded, else (older experiments) by equal
    parameters, pairing duplicates in order."""
    by_id = {r.trial_id: r for r in ray_trials}
    out: dict[int, RayTrial] = {}
    used: set[str] = set()
    for t in optuna_trials:
        rid = t.user_attrs.get(RAY_TRIAL_ATTR)
        if rid in by_id:
            out[t.number] = by_id[rid]
            used.add(rid)
    rest = sorted((r for r in ray_trials if r.trial_id not in used), key=lambda r: r.first_timestamp)
    for t in optuna_trials:
        if t.number in out:
            continue
        for r in rest:
            if r.trial_id not in used and r.config == t.params:
                out[t.number] = r
                used.add(r.trial_id)
                break
    return out


def eval_maes(summary: dict[str, Any]) -> dict[str, float]:
    """Out-of-domain MAEs of a trial's summary, keyed by the eval set's full label: the trainable reports
    ``eval/<dataset>/<property>/mae``, and a dataset reference holds ':' and '/' (``folder:/data/x``)."""
    return {k[len("eval/"):-len("/mae")]: v for k, v in summary.items() if k.startswith("eval/") and k.endswith("/mae")}
