"""FT size as a condition, not a knob: CycleSampler spreads trials evenly over the sizes, GroupedASHA runs one
ASHA per size. A formula objective stands in for training (validation MAE = size offset + lr penalty)."""

from __future__ import annotations

import math
import sys
import tempfile
from collections import Counter

import optuna

from tlsearch.search._optuna import CycleSampler

SIZES = [100, 800]
OFFSET = {100: 10.0, 800: 1.0}  # small data: always a higher validation error


def _space(trial: optuna.Trial) -> tuple[int, float]:
    size = trial.suggest_categorical("ft_size", SIZES)
    lr = trial.suggest_float("ft_lr", 1e-5, 1e-1, log=True)
    return size, lr


def _objective(trial: optuna.Trial) -> float:
    size, lr = _space(trial)
    return OFFSET[size] + (math.log10(lr) + 3) ** 2  # best lr: 1e-3 at every size


def _study(sampler: optuna.samplers.BaseSampler, n: int) -> optuna.Study:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="minimize", sampler=sampler)
    study.optimize(_objective, n_trials=n)
    return study


def test_plain_tpe_drifts_to_the_size_with_the_lower_error():
    study = _study(optuna.samplers.TPESampler(seed=0, multivariate=True, n_startup_trials=5), 40)
    counts = Counter(t.params["ft_size"] for t in study.trials)
    assert counts[800] > 2 * counts[100], counts  # the failure CycleSampler exists for


def test_cycle_sampler_gives_every_size_its_share_and_tpe_still_learns_the_rest():
    sampler = CycleSampler(optuna.samplers.TPESampler(seed=0, multivariate=True, n_startup_trials=5), "ft_size", SIZES)
    study = _study(sampler, 40)
    counts = Counter(t.params["ft_size"] for t in study.trials)
    assert counts == {100: 20, 800: 20}
    assert [t.params["ft_size"] for t in study.trials[:4]] == [100, 800, 100, 800]
    late = [abs(math.log10(t.params["ft_lr"]) + 3) for t in study.trials[-10:]]
    # lr is still TPE's: it concentrates at the optimum 1e-3 (uniform sampling on [1e-5, 1e-1]: mean distance 1.0)
    assert sum(late) / len(late) < 0.4, late


def test_cycle_sampler_continues_the_cycle_after_a_reload(tmp_path):
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    storage = JournalStorage(JournalFileBackend(str(tmp_path / "j.log")))
    make = lambda: CycleSampler(optuna.samplers.TPESampler(seed=1), "ft_size", SIZES)  # noqa: E731
    s1 = optuna.create_study(study_name="s", storage=storage, sampler=make())
    s1.optimize(_objective, n_trials=3)
    s2 = optuna.load_study(study_name="s", storage=storage, sampler=make())
    s2.optimize(_objective, n_trials=3)
    assert [t.params["ft_size"] for t in s2.trials] == [100, 800, 100, 800, 100, 800]


def _formula_trainable(config: dict) -> None:
    from ray import tune

    for epoch in range(1, 10):
        tune.report({"val_mae": OFFSET[config["ft_size"]] + config["penalty"] / epoch, "epoch": epoch})
    tune.report({"val_mae": OFFSET[config["ft_size"]] + config["penalty"] / 9, "final": True})


def _run(scheduler, tmp_path):
    from ray import tune

    configs = [{"ft_size": s, "penalty": p} for p in (1.0, 2.0, 3.0, 4.0) for s in SIZES]
    tuner = tune.Tuner(
        _formula_trainable, param_space={"ft_size": tune.grid_search(SIZES[::-1]), "penalty": tune.grid_search([1.0, 2.0, 3.0, 4.0])},
        tune_config=tune.TuneConfig(metric="val_mae", mode="min", scheduler=scheduler, max_concurrent_trials=1),
        run_config=tune.RunConfig(storage_path=str(tmp_path), name="x", verbose=0))
    results = tuner.fit()
    assert len(results) == len(configs)
    return {(r.config["ft_size"], r.config["penalty"]): bool(r.metrics.get("final")) for r in results}


def _check_grouped_asha(tmp: str) -> None:
    """Run in a fresh process (Ray state of earlier in-process tests must not leak in)."""
    from pathlib import Path

    import ray
    from ray import cloudpickle
    from ray.tune.schedulers import ASHAScheduler

    from tlsearch.search._scheduler import GroupedASHA

    tmp_path = Path(tmp)
    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import this test module
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, _temp_dir=str(tmp_path / "ray"))
    try:
        plain = _run(ASHAScheduler(time_attr="training_iteration", max_t=10, grace_period=2, reduction_factor=2),
                     tmp_path / "a")
        assert not any(done for (size, _), done in plain.items() if size == 100), plain  # one ASHA: small size starved
        grouped = _run(GroupedASHA("ft_size", 100, max_t=10, grace_period=2, reduction_factor=2, last_epoch=9),
                       tmp_path / "b")
        for size in SIZES:
            assert grouped[(size, 1.0)], grouped  # the best trial of every size runs to the end
            assert not all(grouped[(size, p)] for p in (1.0, 2.0, 3.0, 4.0)), grouped  # and ASHA still stops some
    finally:
        ray.shutdown()


def in_fresh_process(module: str, call: str) -> None:
    """Run ``<module>.<call>`` with a new temporary directory as its last argument in a fresh Python process
    (Ray state of earlier in-process tests must not leak in); it must succeed."""
    import os
    import subprocess

    here = os.path.dirname(os.path.abspath(__file__))
    code = f"import sys; sys.path.insert(0, {here!r}); import {module} as t; t.{call}"
    tmp = tempfile.mkdtemp(prefix="tlss", dir="/tmp")  # short: Ray's socket paths are limited
    proc = subprocess.run([sys.executable, "-c", code, tmp], env=dict(os.environ, RAY_AUTH_MODE="disabled"),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def test_grouped_asha_lets_each_size_finish_its_best_trials():
    in_fresh_process("test_scheduling", "_check_grouped_asha(sys.argv[1])")



# strategy family -> (plateau, early penalty): "slow" starts far behind and ends ahead (a pre-trained body with a
# fresh head can look like this); cases run one at a time in this order, so the fast family sets every cut-off
FAMILY_CASES = [("fast", 0.5, 1.0), ("fast", 0.5, 1.2), ("fast", 0.5, 1.4), ("slow", 0.0, 4.0), ("slow", 0.0, 5.0)]


def _family_trainable(config: dict) -> None:
    from ray import tune

    strategy, plateau, penalty = FAMILY_CASES[config["case"]]
    for epoch in range(1, 10):
        tune.report({"val_mae": plateau + penalty / epoch, "epoch": epoch})
    tune.report({"val_mae": plateau + penalty / 9, "final": True})


def _run_families(scheduler, tmp_path):
    from ray import tune

    tuner = tune.Tuner(
        tune.with_parameters(_family_trainable),
        param_space={"case": tune.grid_search(list(range(len(FAMILY_CASES)))),
                     "strategy": tune.sample_from(lambda spec: FAMILY_CASES[spec.config.case][0]),
                     "ft_size": 100},
        tune_config=tune.TuneConfig(metric="val_mae", mode="min", scheduler=scheduler, max_concurrent_trials=1),
        run_config=tune.RunConfig(storage_path=str(tmp_path), name="f", verbose=0))
    results = tuner.fit()
    return {r.config["case"]: (bool(r.metrics.get("final")), r.metrics["val_mae"]) for r in results}


def _check_family_rule(tmp: str) -> None:
    from pathlib import Path

    import ray
    from ray import cloudpickle

    from tlsearch.search._scheduler import GroupedASHA

    tmp_path = Path(tmp)
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, _temp_dir=str(tmp_path / "ray"))
    try:
        def asha(protect: bool) -> GroupedASHA:
            return GroupedASHA("ft_size", 100, max_t=10, grace_period=2, reduction_factor=2, last_epoch=9,
                               protect_families=protect)

        plain = _run_families(asha(False), tmp_path / "plain")
        slow = [c for c, (s, *_) in enumerate(FAMILY_CASES) if s == "slow"]
        assert not any(plain[c][0] for c in slow), plain  # the failure: a whole family dropped on early epochs
        fair = _run_families(asha(True), tmp_path / "fair")
        assert fair[slow[0]][0], fair  # the slow family's best at each rung ran to the end ...
        finished = {c: v for c, (done, v) in fair.items() if done}
        assert min(finished, key=finished.get) == slow[0], fair  # ... and it is the study's best trial
        assert not all(done for done, _ in fair.values()), fair  # ASHA still stops trials within a family
    finally:
        ray.shutdown()


def test_grouped_asha_keeps_every_strategy_family_to_the_end():
    in_fresh_process("test_scheduling", "_check_family_rule(sys.argv[1])")


def test_family_key_separates_strategies_and_pt_sources():
    from tlsearch.search.space import family_key

    assert family_key({"strategy": "scratch", "freeze": "x", "ft_lr": 1e-3}) == "scratch"
    a = family_key({"strategy": "finetune", "pt_source": "a/fe", "freeze": "2b"})
    assert a == family_key({"strategy": "finetune", "pt_source": "a/fe", "freeze": "3b", "pt_lr": 1e-2})
    assert a != family_key({"strategy": "finetune", "pt_source": "b/bg"})
    assert family_key({"strategy": "mpt", "mpt_size": 2, "mpt_combo_2": 0}) != family_key(
        {"strategy": "mpt", "mpt_size": 2, "mpt_combo_2": 1})
