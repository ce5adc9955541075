"""Cost-aware search (issue 15.4): ``objectives: [val_mae, cost]``. The spec checks the list; the searcher tells
Optuna both values with the PT share divided among the trials that used the model, prunes trials the scheduler
stopped; the report's Pareto front and 'cheapest within the best's spread' are checked by hand on formula
points; a real two-objective study through the CLI (ASHA stopping some trials) reports its front."""

from __future__ import annotations

import json

import optuna
import polars as pl
import pytest
import yaml

from tests.search.test_run import SMOKE, _cli, _env, _run_data
from tlsearch.analysis._pareto import cheapest_within_spread, front, pareto
from tlsearch.errors import UserInputError
from tlsearch.search import objectives
from tlsearch.search._optuna import ResumableOptunaSearch
from tlsearch.search.experiment import Experiment
from tlsearch.search.spec import spec_from_dict
from tlsearch.search.warm_start import candidates


def _smoke(**top) -> dict:
    data = yaml.safe_load(SMOKE.read_text())
    data.update(top)
    return data


@pytest.mark.parametrize("objs,why", [(["cost"], "the first objective must be val_mae"),
                                      (["cost", "val_mae"], "the first objective must be val_mae"),
                                      (["val_mae", "val_mae"], "an objective is listed twice"),
                                      (["val_mae", "seconds"], "objectives.1"),
                                      ([], "objectives")])
def test_spec_rejects_bad_objectives_naming_the_field(objs, why):
    with pytest.raises(UserInputError) as e:
        spec_from_dict(_smoke(objectives=objs), "s.yaml")
    assert "s.yaml" in str(e.value) and "objectives" in str(e.value) and why in str(e.value), str(e.value)


def test_one_objective_stays_the_default():
    spec = spec_from_dict(_smoke())
    assert spec.objectives == ["val_mae"] and not spec.multi_objective
    assert spec_from_dict(_smoke(objectives=["val_mae", "cost"])).multi_objective


def test_cost_is_ft_seconds_plus_the_pt_share():
    assert objectives.cost(10.0, 30.0, 3) == 20.0
    assert objectives.cost(10.0, None, 0) == 10.0  # scratch
    assert objectives.cost(None, 30.0, 1) is None
    assert objectives.users(["a", None, "a", "b"]) == {"a": 2, "b": 1}


def _p(trial, val, cost, std=0.0, family="scratch"):
    return {"trial": trial, "val_mae": val, "cost": cost, "val_mae_std": std, "family": family}


def test_front_keeps_exactly_the_non_dominated_points():
    pts = [_p(0, 1.0, 10), _p(1, 0.8, 20), _p(2, 0.9, 30), _p(3, 1.2, 5), _p(4, 0.8, 25), _p(5, 1.0, 10)]
    # 2 is beaten by 1 on both; 4 by 1 on cost at equal MAE; 5 ties 0 (neither dominates the other)
    assert [p["trial"] for p in front(pts)] == [3, 0, 5, 1]


def test_cheapest_within_the_best_spread():
    pts = [_p(0, 1.00, 100, std=0.10), _p(1, 1.08, 40), _p(2, 1.11, 10), _p(3, 1.05, 60)]
    best, cheap = cheapest_within_spread(pts)
    assert best["trial"] == 0 and cheap["trial"] == 1  # 1.08 <= 1.00 + 0.10 at the least cost; 2 is outside
    best, cheap = cheapest_within_spread([_p(0, 1.0, 100), _p(1, 1.01, 10)])  # one repeat: no spread
    assert best["trial"] == cheap["trial"] == 0


def test_pareto_per_target_and_size_from_the_trials_table():
    rows = [dict(trial=i, state=st, target="t", ft_size=sz, family=f, strategy="scratch" if f == "scratch"
                 else "finetune", pt_source=None if f == "scratch" else "x", mpt_properties=None,
                 freeze=None if f == "scratch" else "2b", reinit_head=None, ft_lr=1e-3, repeats=2, val_mae=v,
                 val_mae_std=0.05, test_mae=v, test_mae_std=0.0, cost=c, ft_seconds=c, pt_train_seconds=None)
            for i, (st, sz, f, v, c) in enumerate([("finished", "100", "scratch", 1.0, 10.0),
                                                   ("finished", "100", "PT->FT(x)", 0.9, 30.0),
                                                   ("stopped_early", "100", "scratch", 0.5, None),
                                                   ("finished", "800", "scratch", 0.7, 50.0)])]
    z100, z800 = pareto(pl.DataFrame(rows), ["t"], ["100", "800"])
    assert [p["trial"] for p in z100["front"]] == [0, 1] and z100["best"] == 1 and z100["cheapest_within_spread"] == 1
    assert "trial 1" in z100["conclusion"] and "also the cheapest" in z100["conclusion"]
    assert [p["trial"] for p in z800["points"]] == [3]  # conditions are never mixed; stopped trials never count


def _space(trial: optuna.Trial) -> None:
    trial.suggest_categorical("strategy", ["scratch", "finetune"])
    trial.suggest_float("ft_lr", 1e-4, 1e-2, log=True)


def test_searcher_tells_val_mae_and_the_amortised_cost_and_prunes_stopped_trials():
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    s = ResumableOptunaSearch(_space, metric=["val_mae", "cost"], mode=["min", "min"], seed=0,
                              sampler=optuna.samplers.RandomSampler(seed=0))
    for tid in ("a", "b", "c", "d"):
        s.suggest(tid)
    for tid in ("a", "b"):  # two trials load the same PT model (its key is in every epoch's result)
        s.on_trial_result(tid, {"val_mae": 1.0, "pt_key": "K", "training_iteration": 1})
    final = {"final": True, "ft_seconds": 10.0, "pt_seconds": 45.0, "pt_train_seconds": 40.0, "pt_key": "K"}
    s.on_trial_complete("a", {**final, "val_mae": 0.5})
    s.on_trial_complete("b", {**final, "val_mae": 0.6})
    s.on_trial_complete("c", {"final": True, "ft_seconds": 7.0, "pt_key": "", "val_mae": 0.7})  # scratch
    s.on_trial_complete("d", {"final": False, "val_mae": 0.9, "training_iteration": 2})  # stopped at a rung
    study = s._ot_study
    by = {t.user_attrs["ray_trial_id"]: t for t in study.get_trials(deepcopy=False)}
    assert by["a"].values == [0.5, 30.0] and by["b"].values == [0.6, 30.0]  # 10 s + 40 s / 2 users
    assert by["c"].values == [0.7, 7.0]
    assert by["d"].state == optuna.trial.TrialState.PRUNED and by["d"].values is None


def test_two_objective_study_reports_a_pareto_front(tmp_path):
    """A real study (EMT smoke data, ASHA stopping some trials by validation MAE): Optuna holds two values per
    finished trial, stopped trials are PRUNED, trials.parquet has the cost the report recomputes with the final
    PT-share divisor, and report.md / summary.json / plots show the front and name the cheapest strategy."""
    data = _smoke(objectives=["val_mae", "cost"], name="mo")
    data["budget"].update(trials=6, repeats=2, max_epochs=3, pt_epochs=2)
    data["scheduler"] = {"type": "asha", "grace_period": 1, "reduction_factor": 2}
    env = _env(tmp_path)
    _run_data(tmp_path, env, data)
    exp = tmp_path / "exp" / "mo"
    study = optuna.load_study(study_name="mo", storage=Experiment.open(exp).optuna_storage())
    assert len(study.directions) == 2
    trials = pl.read_parquet(exp / "trials.parquet")
    fin = trials.filter(pl.col("state") == "finished")
    assert fin.height >= 2 and fin["cost"].is_not_null().all() and (fin["cost"] >= fin["ft_compute_seconds"]).all()
    # compute seconds on a CPU: the trial process's CPU seconds, at most its wall seconds with one torch thread
    assert (fin["ft_compute_seconds"] > 0).all() and (fin["ft_compute_seconds"] <= fin["ft_seconds"] + 0.05).all()
    users = objectives.users(trials["pt_key"].to_list())
    for r in fin.iter_rows(named=True):  # the report's cost: FT compute + PT compute / the final user count
        share = r["pt_compute_seconds"] / users[r["pt_key"]] if r["pt_key"] else 0.0
        assert r["cost"] == pytest.approx(r["ft_compute_seconds"] + share)
        assert not r["pt_key"] or 0 < r["pt_compute_seconds"] <= r["pt_train_seconds"] + 0.05
        t = study.trials[r["trial"]]
        assert t.values[0] == pytest.approx(r["val_mae"]) and t.values[1] >= r["cost"] - 1e-9  # share known then
    for r in trials.filter(pl.col("state") == "stopped_early").iter_rows(named=True):
        assert study.trials[r["trial"]].state == optuna.trial.TrialState.PRUNED and r["cost"] is None
        assert r["val_mae"] is not None  # its last epoch's, as in a one-objective study
    s = json.loads((exp / "summary.json").read_text())
    (z,) = s["pareto"]
    pts = {p["trial"]: p for p in z["points"]}
    assert set(pts) == set(fin["trial"].to_list())
    on = {p["trial"] for p in z["front"]}
    for p in pts.values():  # by hand: on the front iff no other point is at least as good on both and better on one
        beaten = any(q["val_mae"] <= p["val_mae"] and q["cost"] <= p["cost"] and
                     (q["val_mae"] < p["val_mae"] or q["cost"] < p["cost"]) for q in pts.values())
        assert (p["trial"] in on) == (not beaten)
    best = min(pts.values(), key=lambda p: p["val_mae"])
    assert z["best"] == best["trial"] and z["cheapest_within_spread"] in on
    assert pts[z["cheapest_within_spread"]]["val_mae"] <= best["val_mae"] + best["val_mae_std"]
    assert z["conclusion"] in s["conclusions"] and s["plots"]["pareto"] == "plots/pareto.png"
    md = (exp / "report.md").read_text()
    assert "## Accuracy vs cost (Pareto front per FT size)" in md and z["conclusion"] in md
    assert (exp / "plots" / "pareto.png").stat().st_size > 5000
    out = _cli("status", str(exp), env=env, timeout=120)
    assert out.returncode == 0 and "best so far" in out.stdout and "cost (s)" in out.stdout, out.stdout[-2000:]
    # warm start into a two-objective study: each finished trial comes with both recorded values
    imported, skipped = candidates(spec_from_dict({**data, "name": "again"}), [exp])
    assert sorted(i.trial for i, _, _ in imported) == sorted(fin["trial"].to_list()) and not skipped
    assert all(i.values == [pts[i.trial]["val_mae"], pts[i.trial]["cost"]] for i, _, _ in imported)
    trials.with_columns(pl.lit(None, pl.Float64).alias("cost")).write_parquet(exp / "trials.parquet")  # older table
    imported, skipped = candidates(spec_from_dict({**data, "name": "again"}), [exp])
    assert not imported and {s.reason for s in skipped} == {
        "no cost recorded (its study ran before tlsearch measured FT seconds); a two-objective study needs one"}
