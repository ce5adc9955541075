"""Load an experiment directory into polars tables: the Optuna journal (what was sampled, how each trial
ended) joined with Ray Tune's ``result.json`` per trial (per-epoch history, final summary) and ``error.txt``.

Reads files only: no torch, no Ray, so it works while a study runs, after it ends, or after it was killed.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import polars as pl

from tlsearch.analysis._schema import HISTORY, TRIALS, polars_schema
from tlsearch.search.experiment import (IMPORTED_ATTR, IMPORTED_RESULT_ATTR, NOTE_ATTR, REUSED_ATTR, TIME_BUDGET,
                                       Experiment)
from tlsearch.search import objectives
from tlsearch.search.objectives import val_of
from tlsearch.search.results import RayTrial, eval_maes, match_trials, read_ray_trials
from tlsearch.search import dimensions as dims
from tlsearch.search.space import resolve
from tlsearch.search.racing import read_race
from tlsearch.search.selection import merged_summary
from tlsearch.search.spec import SearchSpec



def _predictions(trial_dir: Path) -> str | None:
    found = sorted(trial_dir.glob("checkpoint_*/predictions.parquet"))
    return str(found[-1]) if found else None


def _model_dir(trial_dir: Path) -> str | None:
    """The checkpoint directory holding the trial's trained models (``model.pt``, ``model_repeat<i>.pt``; per fold
    ``model_fold<f>.pt``, ``model_repeat<i>_fold<f>.pt``): its
    final checkpoint, which ``tlsearch predict`` takes as a model directory."""
    # repeat 0's model: model.pt, or fold 0's of a cross-validated trial (tlsearch.training.predict.model_file)
    found = sorted([*trial_dir.glob("checkpoint_*/model.pt"), *trial_dir.glob("checkpoint_*/model_fold0.pt")])
    return str(found[-1].parent) if found else None


def _num(x: Any) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


def _imported_row(spec: SearchSpec, t: Any) -> dict[str, Any]:
    """A warm-start trial: finished in an earlier study, its recorded results (warm_start.RESULT_COLUMNS)."""
    v = resolve(spec, t.params)
    res = t.user_attrs[IMPORTED_RESULT_ATTR]
    return {"trial": t.number, "ray_trial_id": None, "state": "finished", "error": None,
            "imported_from": t.user_attrs[IMPORTED_ATTR],
            **{k: x for dim in dims.DIMENSIONS for k, x in dim.row(v).items()}, "family": dims.family_label(v),
            "ft_seconds": None, "ft_compute_seconds": None, "cost": None, "pt_train_seconds": None,
            "pt_compute_seconds": None, **res, "epochs_reported": 0,
            "max_epochs": spec.budget.max_epochs, "pt_store_hit": None, "node_id": None,
            "params": json.dumps(t.params, sort_keys=True)}


def _row(spec: SearchSpec, t: Any, r: RayTrial | None, race: dict[str, list[dict[str, Any]]] | None = None) -> dict[str, Any]:
    if IMPORTED_ATTR in t.user_attrs:
        return _imported_row(spec, t)
    v = resolve(spec, t.params)
    f = r.final if r else None
    if f and r and (race or {}).get(r.trial_id):  # repeats racing added (search/racing.py)
        f = merged_summary(f, race[r.trial_id])
    state = {"COMPLETE": "finished", "FAIL": "failed", "RUNNING": "running", "WAITING": "pending",
             "PRUNED": "stopped_early"}[t.state.name]
    if state == "finished" and f is None:  # no summary: the scheduler stopped it, or it errored (older experiments
        state = "stopped_early" if r and r.epochs and r.error is None else "failed"  # told Optuna COMPLETE)
    if t.user_attrs.get(NOTE_ATTR) == TIME_BUDGET:
        state = "stopped_budget"
    error = (r.error if r else None) if state == "failed" else None
    if state == "failed" and error is None:
        error = t.user_attrs.get(NOTE_ATTR, "failed (no error recorded)")
    epochs = r.epochs if r else []
    f = f or {}
    pt = f if f.get("pt_key") else next((e for e in epochs if e.get("pt_key")), {})  # stopped early: 1st epoch
    evals = eval_maes(f)
    per = {k: json.loads(f[k]) if isinstance(f.get(k), str) else f.get(k)
           for k in ("val_mae_per_repeat", "test_mae_per_repeat", "val_mae_per_fold", "test_mae_per_fold")}
    for k in ("val_mae_per_fold", "test_mae_per_fold"):  # per repeat, per fold -> one list, repeat-major
        per[k] = [float(x) for rep in per[k] for x in rep] if per[k] else None
    return {
        "trial": t.number, "ray_trial_id": r.trial_id if r else None, "state": state, "error": error,
        "imported_from": None,
        **{k: x for dim in dims.DIMENSIONS for k, x in dim.row(v).items()}, "family": dims.family_label(v),
        "repeats": f.get("repeats"), "raced_repeats": f.get("raced_repeats", 0) if f else None,
        "val_mae": _num(f["val_mae"]) if "val_mae" in f else _last_val(t, epochs),
        "val_mae_std": _num(f.get("val_mae_std")), "test_mae": _num(f.get("test_mae")),
        "test_mae_std": _num(f.get("test_mae_std")), "test_rmse": _num(f.get("test_rmse")),
        "test_r2": _num(f.get("test_r2")), "val_mae_per_repeat": per["val_mae_per_repeat"],
        "test_mae_per_repeat": per["test_mae_per_repeat"], "cv_folds": f.get("cv_folds"),
        "val_mae_per_fold": per["val_mae_per_fold"], "test_mae_per_fold": per["test_mae_per_fold"],
        "eval_mae": json.dumps(evals) if evals else None,
        "n_train": f.get("n_train"), "n_val": f.get("n_val"), "n_test": f.get("n_test"),
        "epochs_reported": len(epochs), "epochs_run": f.get("epochs_run", len(epochs)),
        "max_epochs": spec.budget.max_epochs, "pt_key": pt.get("pt_key") or None, "pt_epochs": pt.get("pt_epochs"),
        "pt_seconds": _num(pt.get("pt_seconds")), "pt_train_seconds": _num(pt.get("pt_train_seconds")),
        "pt_compute_seconds": _num(pt.get("pt_compute_seconds")),
        "pt_store_hit": pt.get("pt_store_hit"),
        "seconds": _num((r.last if r else {}).get("time_total_s")), "ft_seconds": _num(f.get("ft_seconds")),
        "ft_compute_seconds": _num(f.get("ft_compute_seconds")),
        "cost": None, "node_id": (r.last if r else {}).get("node_id"),
        "predictions": _predictions(r.dir) if r else None,
        "model_dir": _model_dir(r.dir) if r and state == "finished" else None,
        "params": json.dumps(t.params, sort_keys=True),
    }


def _last_val(t: Any, epochs: list[dict[str, Any]]) -> float | None:
    """A trial without a summary: the value Optuna holds (a two-objective study prunes stopped trials: none), else
    its last reported epoch's validation MAE."""
    v = val_of(t)
    return v if v is not None or not epochs else _num(epochs[-1].get("val_mae"))


def _costs(rows: list[dict[str, Any]]) -> None:
    """Each finished trial's cost (search/objectives.py), its PT share divided among every trial of this study
    that used the model (stopped and failed ones too: they loaded it); imported trials keep their recorded cost."""
    own = [r for r in rows if not r["imported_from"]]
    users = objectives.users(r["pt_key"] for r in own)
    for r in own:
        if r["state"] == "finished":
            r["cost"] = objectives.cost_of(r, users.get(r["pt_key"] or "", 0))


def load_trials(exp: Experiment | str | Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(trials, history) of an experiment, with the schemas of :mod:`tlsearch.analysis._schema`."""
    import optuna

    exp = exp if isinstance(exp, Experiment) else Experiment.open(exp)
    spec = exp.spec()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        trials = optuna.load_study(study_name=spec.name, storage=exp.optuna_storage()).trials
    except KeyError:  # the study never started
        trials = []
    # a repeated suggestion answered from an earlier trial ran nothing: it is not a trial of the study
    trials = [t for t in trials if REUSED_ATTR not in t.user_attrs]
    matched = match_trials(trials, read_ray_trials(exp))
    race = read_race(exp.root)
    rows = [_row(spec, t, matched.get(t.number), race) for t in trials]
    _costs(rows)
    hist = [{"trial": t.number, **{k: e.get(k) for k in HISTORY if k != "trial"}}
            for t in trials if t.number in matched for e in matched[t.number].epochs]
    return pl.DataFrame(rows, schema=polars_schema(TRIALS)), pl.DataFrame(hist, schema=polars_schema(HISTORY))
