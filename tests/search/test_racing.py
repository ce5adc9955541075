"""Racing (budget.race_repeats): more repeats only for the families validation cannot separate from the leader."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import yaml
from rich.console import Console

from tlsearch.search import selection
from tlsearch.search.racing import contenders, plan, read_race
from tlsearch.search.selection import merged_summary
from tlsearch.search.spec import spec_from_dict

SMOKE = yaml.safe_load((Path(__file__).resolve().parents[2] / "search_spaces" / "smoke.yaml").read_text())


def spec(**budget):
    return spec_from_dict({**SMOKE, "budget": {**SMOKE["budget"], "repeats": 2, "cv_folds": 1, **budget}})


def summary(cells, repeat_means=None):
    """A trial's final summary with one validation cell per repeat (formula objective: no training)."""
    per = repeat_means or cells
    return {"final": True, "repeats": len(per), "val_mae": float(np.mean(per)), "cv_folds": 1,
            "val_mae_per_repeat": json.dumps(per), "val_mae_per_fold": json.dumps([[c] for c in cells]),
            "test_mae_per_repeat": json.dumps(per), "test_mae_per_fold": json.dumps([[c] for c in cells]),
            "test_mae": float(np.mean(per)), "epochs_run": 4 * len(per)}


SCRATCH = {"strategy": "scratch", "ft_size": 40}
FT = {"strategy": "finetune", "freeze": "2b", "ft_size": 40}
FT_WORSE = {"strategy": "finetune", "freeze": "last_layer", "ft_size": 40}
MPT = {"strategy": "mpt", "freeze": "2b", "ft_size": 40}


def finals():
    """PT->FT and MPT tied (each wins one repeat), scratch hopeless; a worse PT->FT configuration too."""
    return [("a", SCRATCH, summary([0.90, 0.95])), ("b", FT, summary([0.30, 0.40])),
            ("c", MPT, summary([0.40, 0.30])), ("d", FT_WORSE, summary([0.50, 0.60]))]


def test_plan_races_the_tied_families_best_configurations_only():
    s = spec(race_repeats=2)
    todo = plan(s, contenders(s, finals(), {}))
    assert sorted(c.trial_id for c, _, _ in todo) == ["b", "c"]  # not hopeless scratch, not PT->FT's worse one
    assert all((a, b) == (2, 3) for _, a, b in todo)  # the next repeat after the search's two


def test_racing_stops_when_the_order_is_clear_or_the_budget_is_spent():
    s = spec(race_repeats=3)
    # one raced repeat that MPT wins widely is not enough (it lost the first of three cells): race on
    once = contenders(s, finals(), {"b": [summary([0.50])], "c": [summary([0.20])]})
    assert {r.trial_id: int(r.summary["repeats"]) for r in once if r.trial_id in "bc"} == {"b": 3, "c": 3}
    assert sorted((c.trial_id, a) for c, a, _ in plan(s, once)) == [("b", 3), ("c", 3)]
    # a second one makes the order clear: no more racing though budget is left
    twice = {"b": [summary([0.50]), summary([0.55])], "c": [summary([0.20]), summary([0.25])]}
    assert plan(s, contenders(s, finals(), twice)) == []
    # still tied after the budget's extra repeats: nothing more to run
    tied = {"b": [summary([0.3]), summary([0.4]), summary([0.3])], "c": [summary([0.4]), summary([0.3]),
                                                                         summary([0.35])]}
    assert plan(s, contenders(s, finals(), tied)) == []
    assert plan(spec(race_repeats=4), contenders(s, finals(), tied)) != []


def test_no_racing_without_a_budget():
    s = spec(race_repeats=0)
    assert plan(s, contenders(s, finals(), {})) == []


def test_merged_summary_extends_cells_in_repeat_order():
    m = merged_summary(summary([0.3, 0.4]), [summary([0.5])])
    assert json.loads(m["val_mae_per_repeat"]) == [0.3, 0.4, 0.5]
    assert json.loads(m["val_mae_per_fold"]) == [[0.3], [0.4], [0.5]]
    assert m["repeats"] == 3 and m["raced_repeats"] == 1 and m["val_mae"] == pytest.approx(0.4)
    assert m["epochs_run"] == 12


@pytest.mark.slow  # a real Ray study in-process (~3 min); it failed twice beside a loaded full suite, passed alone
def test_real_race_adds_repeats_to_the_contenders(tmp_path, monkeypatch):
    """A real study (Ray Tune, training on EMT data) whose order is never clear (CLEAR above 1): each family's best
    trial gets the race budget's extra repeat, cross-validated on the same folds, and the report's rows merge it."""
    import ray

    from tlsearch.analysis import load_trials
    from tlsearch.search.experiment import Experiment
    from tlsearch.search.runner import run_study

    monkeypatch.setenv("TLSEARCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    monkeypatch.setattr(selection, "CLEAR", 1.01)
    data = {**SMOKE, "search": {**SMOKE["search"], "strategy": ["scratch", "finetune"], "freeze": ["all_unfrozen"],
                                "ft_lr": 0.001},
            "budget": {"trials": 2, "max_epochs": 2, "pt_epochs": 1, "repeats": 1, "cv_folds": 2, "race_repeats": 1},
            "scheduler": {"type": "none"}, "tracking": {"mode": "disabled"}}
    s = spec_from_dict(data)
    try:
        exp = Experiment.create(s, tmp_path / "exp")
        run_study(s, exp, Console(file=open(os.devnull, "w")))
    finally:
        ray.shutdown()
    race = read_race(exp.root)
    assert len(race) == 2 and all(len(v) == 1 and v[0]["repeats"] == 1 for v in race.values())
    trials, _ = load_trials(exp)
    fin = trials.filter(trials["state"] == "finished")
    assert fin.height == 2
    for row in fin.iter_rows(named=True):
        assert row["repeats"] == 2 and row["cv_folds"] == 2
        assert len(row["val_mae_per_fold"]) == 4 and len(row["val_mae_per_repeat"]) == 2
        assert row["val_mae"] == pytest.approx(np.mean(row["val_mae_per_repeat"]))
        assert row["ray_trial_id"] in race
