"""ResumableOptunaSearch never pays twice for one configuration: a suggestion that repeats a finished trial is
answered from it (the same value, told to Optuna) and the searcher asks again. Driven directly through the
Ray Searcher API (suggest / on_trial_complete) with a formula objective: no Ray cluster, no training."""

from __future__ import annotations

from collections import Counter

import optuna
import pytest
from ray.tune.search.optuna import OptunaSearch

from tlsearch.search._optuna import MAX_TRIES, CycleSampler, ResumableOptunaSearch
from tlsearch.search.experiment import FINAL_ATTR, RAY_TRIAL_ATTR, REUSED_ATTR

SIZES = [100, 800]
STRATEGIES = ["scratch", "finetune", "mpt"]
FREEZE = ["all_unfrozen", "new_head", "last_layer", "2b", "3b"]


def _space(trial: optuna.Trial) -> None:  # the benchmark's shape: small, discrete, conditional
    trial.suggest_categorical("ft_size", SIZES)
    if trial.suggest_categorical("strategy", STRATEGIES) != "scratch":
        trial.suggest_categorical("freeze", FREEZE)


def _value(config: dict) -> float:
    base = {"scratch": 1.0, "finetune": 0.8, "mpt": 0.9}[config["strategy"]]
    return base + 0.05 * FREEZE.index(config.get("freeze", "all_unfrozen")) + (1.0 if config["ft_size"] == 100 else 0.0)


def _searcher(cls: type, seed: int = 0) -> OptunaSearch:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    tpe = optuna.samplers.TPESampler(seed=seed, constant_liar=True, multivariate=True, group=True, n_startup_trials=4)
    return cls(_space, metric="val_mae", mode="min", sampler=CycleSampler(tpe, "ft_size", SIZES), seed=seed)


def _drive(searcher: OptunaSearch, n: int, final: bool = True) -> list[dict]:
    """n Ray trials, one at a time, each finishing with the formula's value."""
    configs = []
    for i in range(n):
        config = searcher.suggest(f"t{i}")
        configs.append(config)
        searcher.on_trial_complete(f"t{i}", {"val_mae": _value(config), "final": final})
    return configs


def _key(config: dict) -> tuple:
    return tuple(sorted(config.items()))


def test_plain_optuna_search_repeats_finished_configurations():
    configs = _drive(_searcher(OptunaSearch), 16)
    assert len({_key(c) for c in configs}) < len(configs)  # the waste the dedup removes


def test_repeated_suggestions_are_answered_from_history_and_not_run():
    searcher = _searcher(ResumableOptunaSearch)
    configs = _drive(searcher, 16)
    assert len({_key(c) for c in configs}) == 16  # every Ray trial trains a new configuration
    assert Counter(c["ft_size"] for c in configs) == {100: 8, 800: 8}  # the size cycle skips the reused asks
    trials = searcher._ot_study.get_trials(deepcopy=False)
    reused = [t for t in trials if REUSED_ATTR in t.user_attrs]
    assert reused, "TPE never repeated itself: the test does not exercise the dedup"
    by_number = {t.number: t for t in trials}
    for t in reused:
        twin = by_number[t.user_attrs[REUSED_ATTR]]
        assert t.params == twin.params and t.value == twin.value and RAY_TRIAL_ATTR not in t.user_attrs
        assert twin.user_attrs.get(FINAL_ATTR) is True
    ran = [t for t in trials if REUSED_ATTR not in t.user_attrs]
    assert sorted(t.user_attrs[RAY_TRIAL_ATTR] for t in ran) == sorted(f"t{i}" for i in range(16))


def test_trials_stopped_early_are_not_reused():
    searcher = _searcher(ResumableOptunaSearch)
    configs = _drive(searcher, 12, final=False)  # every trial "stopped early": no FINAL_ATTR, nothing to reuse
    trials = searcher._ot_study.get_trials(deepcopy=False)
    assert not any(REUSED_ATTR in t.user_attrs for t in trials)
    assert len(trials) == len(configs) == 12


@pytest.mark.parametrize("n", [5])
def test_an_exhausted_space_runs_the_repeat_instead_of_looping(n):
    def tiny(trial: optuna.Trial) -> None:
        trial.suggest_categorical("strategy", ["scratch", "finetune"])

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    searcher = ResumableOptunaSearch(tiny, metric="val_mae", mode="min",
                                     sampler=optuna.samplers.TPESampler(seed=0, n_startup_trials=2), seed=0)
    configs = []
    for i in range(n):
        config = searcher.suggest(f"t{i}")
        assert isinstance(config, dict)
        configs.append(config)
        searcher.on_trial_complete(f"t{i}", {"val_mae": 1.0 if config["strategy"] == "scratch" else 0.5, "final": True})
    assert {c["strategy"] for c in configs} == {"scratch", "finetune"}
    trials = searcher._ot_study.get_trials(deepcopy=False)
    assert len(trials) <= n * MAX_TRIES
    assert sum(1 for t in trials if RAY_TRIAL_ATTR in t.user_attrs) == n


def test_budget_counts_what_the_journal_ran_after_a_driver_crash(tmp_path):
    """Tune's snapshot can predate trials the journal closed; the restored searcher counts from the journal: a
    second driver plans only the rest of the budget (orphans of the first driver are re-planned)."""
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend
    from ray.tune.search import Searcher

    def make() -> ResumableOptunaSearch:
        storage = JournalStorage(JournalFileBackend(str(tmp_path / "optuna.journal")))
        tpe = optuna.samplers.TPESampler(seed=0, n_startup_trials=2)
        return ResumableOptunaSearch(_space, metric="val_mae", mode="min", sampler=tpe, seed=0, study_name="s",
                                     storage=storage, max_trials=6)

    first = make()
    for i in range(5):
        first.suggest(f"a{i}")
    for i in range(3):  # 3 finish, 2 are still running when the driver dies
        first.on_trial_complete(f"a{i}", {"val_mae": 1.0 + i, "final": True})
    second = make()  # the resumed driver: its searcher state knows none of them
    planned = []
    for i in range(10):
        config = second.suggest(f"b{i}")
        if config == Searcher.FINISHED:
            break
        planned.append(config)
        second.on_trial_complete(f"b{i}", {"val_mae": 2.0, "final": True})
    assert len(planned) == 3  # 3 done + 3 = the budget; the 2 orphans (RUNNING, no live Ray trial) re-planned


def test_every_strategy_family_is_tried_at_every_size_first():
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    tpe = optuna.samplers.TPESampler(seed=0, constant_liar=True, multivariate=True, group=True, n_startup_trials=2)
    searcher = ResumableOptunaSearch(_space, metric="val_mae", mode="min", seed=0,
                                     sampler=CycleSampler(tpe, "ft_size", SIZES, cover=("strategy", STRATEGIES)))
    configs = _drive(searcher, 12)
    first = [(c["ft_size"], c["strategy"]) for c in configs[:6]]
    assert sorted(first) == sorted((z, s) for z in SIZES for s in STRATEGIES), first
    assert Counter(c["ft_size"] for c in configs) == {100: 6, 800: 6}
    late = Counter(c["strategy"] for c in configs[6:])
    assert late["finetune"] >= 3, late  # then TPE's: the best family (finetune in the formula) is chosen most


def _combo_searcher() -> tuple[ResumableOptunaSearch, list[dict]]:
    """A searcher whose cover lists every strategy x freeze combination, and that list."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    combos = [{"strategy": "scratch"}] + [{"strategy": s, "freeze": f} for s in STRATEGIES[1:] for f in FREEZE]
    tpe = optuna.samplers.TPESampler(seed=0, constant_liar=True, multivariate=True, group=True, n_startup_trials=2)
    return ResumableOptunaSearch(_space, metric="val_mae", mode="min", seed=0,
                                 sampler=CycleSampler(tpe, "ft_size", SIZES, cover=combos)), combos


def test_every_strategy_x_freeze_combination_is_tried_at_every_size_when_listed():
    searcher, combos = _combo_searcher()
    n = len(combos) * len(SIZES)
    configs = _drive(searcher, n + 2)
    first = sorted((c["ft_size"], c["strategy"], c.get("freeze")) for c in configs[:n])
    assert first == sorted((z, c["strategy"], c.get("freeze")) for z in SIZES for c in combos), first
    assert [c["ft_size"] for c in configs[:4]] == [100, 800, 100, 800]


def test_a_trial_whose_ask_a_crash_cut_short_takes_no_place_in_the_cover():
    """The driver died while Optuna sampled a trial (its strategy drawn, never given to Tune: no Ray trial id).
    The resumed searcher closes it as failed (CUT_SHORT) and the cover goes on where it was: every strategy x
    freeze combination still runs once (it counted as asked, so one combination was never tried and another
    ran twice: CI, 2026-12-02)."""
    from tlsearch.search._compat import optuna_study
    from tlsearch.search.experiment import CUT_SHORT, NOTE_ATTR

    searcher, combos = _combo_searcher()
    n = len(combos) * len(SIZES)
    configs = _drive(searcher, 5)
    study = optuna_study(searcher)
    cut = study.ask()  # what the dead driver left: RUNNING, some parameters, no Ray trial
    cut.suggest_categorical("ft_size", SIZES)
    cut.suggest_categorical("strategy", STRATEGIES)
    for i in range(n - 5):  # the resumed driver's trials
        configs.append(searcher.suggest(f"r{i}"))
        searcher.on_trial_complete(f"r{i}", {"val_mae": _value(configs[-1]), "final": True})
    got = sorted((c["ft_size"], c["strategy"], c.get("freeze")) for c in configs)
    assert got == sorted((z, c["strategy"], c.get("freeze")) for z in SIZES for c in combos), got
    closed = study.trials[cut.number]
    assert closed.state == optuna.trial.TrialState.FAIL and closed.user_attrs[NOTE_ATTR] == CUT_SHORT


def test_an_old_pickled_family_cover_still_works():
    sampler = CycleSampler(optuna.samplers.RandomSampler(seed=0), "ft_size", SIZES, cover=("strategy", STRATEGIES))
    sampler._cover = ("strategy", STRATEGIES)  # what a sampler pickled by an earlier tlsearch holds
    del sampler.__dict__["_covers"]  # (no per-condition covers then)
    assert sampler._items(0) == [{"strategy": s} for s in STRATEGIES]
    assert sampler._conditions() == [{"ft_size": z} for z in SIZES]
