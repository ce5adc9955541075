"""The scheduler registry (tlsearch/search/schedulers.py): every spec type has a plug-in and every plug-in a spec
type; each plug-in's decision epochs follow its formula; and where a scheduler really decides, driven through its
own factory with a formula objective standing in for training (validation MAE = size offset + penalty), no
decision falls outside those epochs. The last part imports Ray's classes but starts no Ray."""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import get_args

import pytest
import yaml

from tlsearch.errors import UserInputError
from tlsearch.search import schedulers
from tlsearch.search._sh_bracket import rungs
from tlsearch.search.spec import SearchSpec, spec_from_dict

SMOKE = yaml.safe_load((Path(__file__).resolve().parents[2] / "search_spaces" / "smoke.yaml").read_text())
TYPES = {"asha", "sh", "none", "median"}


def _spec(scheduler: dict, max_epochs: int = 9, sizes: tuple = (20, 40)) -> SearchSpec:
    data = copy.deepcopy(SMOKE)
    data["scheduler"], data["budget"]["max_epochs"] = scheduler, max_epochs
    data["search"]["ft_size"] = list(sizes)
    return spec_from_dict(data)


# ---- the registry and the spec ------------------------------------------------------------------------------
def test_the_spec_union_and_the_registry_hold_the_same_types():
    union = get_args(SearchSpec.model_fields["scheduler"].annotation)
    assert {m.model_fields["type"].annotation.__args__[0] for m in union} == set(schedulers.SCHEDULERS) == TYPES
    mapping = SearchSpec.model_json_schema()["properties"]["scheduler"]["discriminator"]["mapping"]
    assert set(mapping) == TYPES  # what a schema reader (and the spec page) sees
    for name, plugin in schedulers.SCHEDULERS.items():
        assert plugin.type == name and plugin.spec.model_config["extra"] == "forbid"
        spec = _spec({"type": name})
        assert type(spec.scheduler) is plugin.spec and schedulers.plugin(spec) is plugin
    assert schedulers.DEFAULT == "asha" and _spec({"grace_period": 1}).scheduler.type == "asha"


def test_an_unknown_type_names_every_registered_one():
    with pytest.raises(UserInputError) as info:
        _spec({"type": "hyperband"})
    assert all(f"'{t}'" in str(info.value) for t in TYPES), info.value


def test_median_fields_are_validated():
    spec = _spec({"type": "median", "grace_period": 2, "min_samples_required": 1})
    assert (spec.scheduler.grace_period, spec.scheduler.min_samples_required) == (2, 1)
    with pytest.raises(UserInputError, match="scheduler.min_samples_required:.*greater than or equal to 1"):
        _spec({"type": "median", "min_samples_required": 0})
    with pytest.raises(UserInputError, match="scheduler.reduction_factor: Extra inputs are not permitted"):
        _spec({"type": "median", "reduction_factor": 2})


# ---- decision epochs: formulas ------------------------------------------------------------------------------
@pytest.mark.parametrize("scheduler, max_epochs, epochs", [
    ({"type": "asha"}, 30, {3, 9, 27}),  # grace 3 x 3^k, all below the last epoch
    ({"type": "asha", "grace_period": 2, "reduction_factor": 2}, 4, {2}),  # the smoke space: 4 is the last epoch
    ({"type": "asha", "grace_period": 1, "reduction_factor": 3}, 9, {1, 3}),  # a rung on the last epoch is dropped
    ({"type": "asha", "grace_period": 2, "reduction_factor": 1.5}, 6, {2, 3, 5}),  # rungs 2, 3, 4.5 -> epoch 5
    ({"type": "asha", "grace_period": 5}, 4, set()),  # grace beyond the budget: no decision
    ({"type": "sh"}, 15, {1, 3, 9}),
    ({"type": "sh", "grace_period": 2, "reduction_factor": 2}, 15, {2, 4, 8}),
    ({"type": "none"}, 9, set()),
    ({"type": "median"}, 9, {3, 4, 5, 6, 7, 8}),  # every epoch from grace_period, not the last
    ({"type": "median", "grace_period": 1}, 4, {1, 2, 3}),
    ({"type": "median", "grace_period": 9}, 9, set()),
])
def test_decision_epochs_follow_each_schedulers_formula(scheduler, max_epochs, epochs):
    spec = _spec(scheduler, max_epochs)
    assert schedulers.decision_epochs(spec) == epochs
    if spec.scheduler.type == "sh":
        assert epochs == set(rungs(spec.scheduler.grace_period, spec.scheduler.reduction_factor, max_epochs))


@pytest.mark.parametrize("name", sorted(TYPES))
def test_a_trial_checkpoints_at_the_decisions_of_a_scheduler_that_pauses_only(name):
    spec = _spec({"type": name} if name == "none" else {"type": name, "grace_period": 1}, 9)
    expected = {1, 3} if name == "sh" else set()  # sh pauses at its rungs and resumes from them
    assert schedulers.checkpoint_epochs(spec) == expected
    assert schedulers.SCHEDULERS[name].pauses == (name == "sh")


@pytest.mark.parametrize("grace, eta, last", [(1, 2, 9), (3, 3, 30), (2, 1.5, 6), (1, 3, 26), (1, 3, 27), (2, 4, 40),
                                              (4, 2, 33), (1, 1.5, 12)])
def test_asha_decision_epochs_are_the_rungs_of_grouped_asha(grace, eta, last):
    from tlsearch.search._compat import asha_rungs

    spec = _spec({"type": "asha", "grace_period": grace, "reduction_factor": eta}, last)
    _, scheduler = schedulers.make(spec, _searcher(), Path("unused"))
    asha = scheduler._new()  # the ASHA each FT size gets
    assert {math.ceil(m) for rs in asha_rungs(asha) for m, _ in rs} == schedulers.decision_epochs(spec)


# ---- decisions of the real schedulers on a formula objective -----------------------------------------------
OFFSET = {20: 10.0, 40: 1.0}  # the small size always has the higher validation error
PENALTIES = (1.0, 2.0, 3.0, 4.0)


def _searcher():
    from ray.tune.search import Searcher

    return Searcher(metric="val_mae", mode="min")


class _Controller:
    """What a scheduler asks of Tune's controller: the trials and their states."""

    def __init__(self, trials: list) -> None:
        self.trials = trials

    def get_trials(self) -> list:
        return self.trials

    def get_live_trials(self) -> list:
        from ray.tune.experiment import Trial

        return [t for t in self.trials if t.status != Trial.TERMINATED]


def _drive(scheduler, max_epochs: int = 9) -> tuple[dict, dict, list]:
    """Every trial added up front (the later ones wait, PENDING), then run one at a time, best penalty first,
    sizes alternating. Returns {(size, penalty): last epoch}, {(size, penalty): finished} and the decisions
    (epoch, decision) on epoch results."""
    from ray.tune.experiment import Trial
    from ray.tune.schedulers import TrialScheduler

    trials = [Trial("formula", config={"ft_size": s, "penalty": p, "strategy": "scratch"}, stub=True,
                    trial_id=f"t{s}_{int(p)}") for p in PENALTIES for s in OFFSET]
    ctl = _Controller(trials)
    scheduler.set_search_properties("val_mae", "min")
    for t in trials:
        scheduler.on_trial_add(ctl, t)
    last, finished, decisions = {}, {}, []
    for t in trials:
        size, p = t.config["ft_size"], t.config["penalty"]
        t.set_status(Trial.RUNNING)
        result: dict = {}
        for epoch in range(1, max_epochs + 1):
            result = {"val_mae": OFFSET[size] + p * (1 + 1 / epoch), "training_iteration": epoch, "epoch": epoch}
            decision = scheduler.on_trial_result(ctl, t, result)
            decisions.append((epoch, decision))
            last[(size, p)] = epoch
            if decision == TrialScheduler.STOP:
                break
        else:
            result = {"val_mae": OFFSET[size] + p, "training_iteration": max_epochs + 1, "final": True}
            scheduler.on_trial_result(ctl, t, result)
        finished[(size, p)] = bool(result.get("final"))
        t.set_status(Trial.TERMINATED)
        scheduler.on_trial_complete(ctl, t, result)
    return last, finished, decisions


@pytest.mark.parametrize("scheduler", [{"type": "asha", "grace_period": 1, "reduction_factor": 2},
                                       {"type": "median", "grace_period": 2, "min_samples_required": 2},
                                       {"type": "none"}], ids=["asha", "median", "none"])
def test_decisions_fall_only_at_the_declared_epochs(scheduler):
    from ray.tune.schedulers import TrialScheduler

    spec = _spec(scheduler)
    _, sched = schedulers.make(spec, _searcher(), Path("unused"))
    last, finished, decisions = _drive(sched)
    at = {e for e, d in decisions if d != TrialScheduler.CONTINUE}
    assert at <= schedulers.decision_epochs(spec), (at, decisions)
    assert TrialScheduler.PAUSE not in {d for _, d in decisions}  # these schedulers never pause a trial
    for size in OFFSET:
        assert finished[(size, 1.0)], finished  # each size's best runs to the end
    stops = sum(not f for f in finished.values())
    assert stops > 0 if spec.scheduler.type != "none" else stops == 0, finished


def test_median_rule_stops_trials_per_ft_size():
    """Per size, the two worst trials stop at the first decision epoch and the two best finish. One median
    over both sizes would stop the small size's second trial: its error is above the large size's at any
    strategy."""
    from ray.tune.schedulers import MedianStoppingRule

    spec = _spec({"type": "median", "grace_period": 2, "min_samples_required": 2})
    _, grouped = schedulers.make(spec, _searcher(), Path("unused"))
    last, finished, _ = _drive(grouped)
    for size in OFFSET:
        assert [finished[(size, p)] for p in PENALTIES] == [True, True, False, False], finished
        assert [last[(size, p)] for p in PENALTIES] == [9, 9, 2, 2], last
    assert grouped.stopped() == {"20": 2, "40": 2} and "median stopping per ft_size" in grouped.debug_string()
    _, plain, _ = _drive(MedianStoppingRule(time_attr="training_iteration", grace_period=2, min_samples_required=2))
    assert not plain[(20, 2.0)], plain  # the failure grouping prevents
