"""Study status from the experiment directory alone (the Optuna journal plus Ray Tune's trial results):
no Ray needed, so it works while the study runs, after it ends, or after it was killed."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from tlsearch.search.experiment import Experiment


def _trial_results(exp: Experiment) -> dict[str, dict[str, Any]]:
    """Last reported result of each Ray trial (plus the last line of its error, if it failed), keyed by trial
    directory."""
    from tlsearch.analysis._load import read_ray_trials

    out: dict[str, dict[str, Any]] = {}
    for r in read_ray_trials(exp):
        last = dict(r.last)
        # Tune writes error.txt at every failure and keeps it when a retry from the checkpoint then finishes
        # the trial (e.g. after its node died): a trial with its final summary did not fail
        if r.error is not None and r.final is None:
            last["error"] = r.error[:200]
        out[r.dir.name] = last
    return out


def study_rows(exp: Experiment) -> list[dict[str, Any]]:
    import optuna

    spec = exp.spec()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.load_study(study_name=spec.name, storage=exp.optuna_storage())
        trials = study.trials
    except KeyError:
        trials = []
    summaries = [r for r in _trial_results(exp).values() if r.get("config") is not None]

    def ray_result(params: dict[str, Any]) -> dict[str, Any]:
        for r in summaries:
            if r["config"] == params:
                return r
        return {}

    rows = []
    for t in trials:
        p = t.params
        strategy = p.get("strategy", spec.search.strategy[0])
        detail = []
        for key in ("pt_source", "mpt_size", "freeze", "freeze_depth", "ft_size", "ft_lr"):
            if key in p:
                v = p[key]
                detail.append(f"{key}={v:.2g}" if isinstance(v, float) else f"{key}={v}")
        value = t.value if t.value is not None and not math.isnan(t.value) else None
        r = ray_result(p)
        test = r.get("test_mae") if r.get("final") else None
        if test is not None and r.get("repeats", 1) > 1:
            test_s = f"{test:.4g} +/- {r.get('test_mae_std', 0):.2g}"
        else:
            test_s = f"{test:.4g}" if test is not None else ""
        state = t.state.name.lower()
        if state == "complete" and r and not r.get("final"):
            state = "stopped early"  # the scheduler ended it; its last validation value stands
        rows.append({"trial": t.number, "state": state, "strategy": strategy, "details": " ".join(detail),
                     "val": f"{value:.4g}" if value is not None else "", "value": value, "test": test_s,
                     "epochs": r.get("epochs_run", r.get("training_iteration", "")),
                     "ft_size": p.get("ft_size", spec.search.ft_size[0])})
    return rows


def failures(exp: Experiment) -> list[tuple[str, str]]:
    return [(name, r["error"]) for name, r in _trial_results(exp).items() if "error" in r]


def best(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    done = [r for r in rows if r["value"] is not None and r["state"] in ("complete", "stopped early")]
    return min(done, key=lambda r: r["value"]) if done else None


def offline_wandb(exp: Experiment) -> list[Path]:
    return sorted(exp.root.rglob("offline-run-*/run-*.wandb"))
