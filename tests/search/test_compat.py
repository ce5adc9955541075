"""Every private part of Ray, Optuna and W&B that tlsearch uses (tlsearch/search/_compat.py) still exists and
does what tlsearch needs, on real objects of the installed versions. A failure names the package, the
attribute and the pin in constraints.txt to revisit: an upgrade moved something tlsearch relies on."""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

import optuna
import pytest

from tlsearch.search import _compat

ROOT = Path(__file__).resolve().parents[2]


def _pin(package: str) -> str:
    m = re.search(rf"^{package}==(\S+)", (ROOT / "constraints.txt").read_text(), re.M)
    return m.group(1) if m else "?"


def _moved(package: str, what: str) -> str:
    return (f"{package} {metadata.version(package)} moved {what} (tlsearch/search/_compat.py relies on it; "
            f"constraints.txt pins {package}=={_pin(package)}): revisit the pin or the seam")


def test_optuna_user_attr_of_a_frozen_trial(tmp_path):
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 's.db'}")
    study.ask()
    (frozen,) = study.get_trials(deepcopy=False)
    try:
        _compat.set_stored_user_attr(study, frozen, "note", "x")
    except AttributeError as exc:
        pytest.fail(_moved("optuna", f"Study._storage / FrozenTrial._trial_id ({exc})"))
    assert study.get_trials()[0].user_attrs == {"note": "x"}, _moved("optuna", "Study._storage.set_trial_user_attr")


def test_ray_optuna_search_internals():
    from ray import tune
    from ray.tune.search.optuna import OptunaSearch

    searcher = OptunaSearch(space={"x": tune.uniform(0, 1)}, metric="m", mode="min", seed=7)
    config = searcher.suggest("trial_a")
    try:
        study, trials, seed = (_compat.optuna_study(searcher), _compat.optuna_trials(searcher),
                               _compat.searcher_seed(searcher))
    except AttributeError as exc:
        pytest.fail(_moved("ray", f"OptunaSearch._ot_study/_ot_trials/_seed ({exc})"))
    assert isinstance(study, optuna.Study) and seed == 7, _moved("ray", "OptunaSearch._ot_study or _seed")
    assert isinstance(trials.get("trial_a"), optuna.Trial) and trials["trial_a"].params == config, \
        _moved("ray", "OptunaSearch._ot_trials (Ray trial id -> optuna.Trial)")


def test_ray_asha_internals():
    from ray.tune.experiment import Trial
    from ray.tune.schedulers import ASHAScheduler

    asha = ASHAScheduler(time_attr="training_iteration", metric="m", mode="min", max_t=9, grace_period=1,
                         reduction_factor=3)
    try:
        rungs = _compat.asha_rungs(asha)
    except AttributeError as exc:
        pytest.fail(_moved("ray", f"ASHAScheduler._brackets[*]._rungs ({exc})"))
    assert rungs and sorted(m for m, _ in rungs[0]) == [1, 3, 9], _moved("ray", "ASHA's rung milestones")
    _compat.set_asha_rungs(asha, [[(m, r) for m, r in rs if m < 9] for rs in rungs])
    assert sorted(m for m, _ in _compat.asha_rungs(asha)[0]) == [1, 3], _moved("ray", "ASHA rung assignment")
    trial = Trial("trainable", config={}, stub=True, trial_id="t1")
    try:
        assert not _compat.asha_knows(asha, "t1")
        asha.on_trial_add(None, trial)
        assert _compat.asha_knows(asha, "t1"), _moved("ray", "ASHAScheduler._trial_info (placed trials)")
    except AttributeError as exc:
        pytest.fail(_moved("ray", f"ASHAScheduler._trial_info ({exc})"))


def test_ray_tuner_restored_scheduler():
    from ray.tune import TuneConfig, Tuner
    from ray.tune.schedulers import FIFOScheduler

    scheduler = FIFOScheduler()
    tuner = Tuner(lambda config: None, tune_config=TuneConfig(scheduler=scheduler))
    assert _compat.restored_scheduler(tuner) is scheduler, _moved("ray", "Tuner._local_tuner._tune_config")


def test_ray_wandb_callback_internals():
    from ray.air.integrations.wandb import WandbLoggerCallback

    assert _compat.wandb_loggable(1.5) and not _compat.wandb_loggable("text"), _moved("ray", "_is_allowed_type")
    assert {"RESULT", "END"} <= {k.name for k in _compat.WandbQueueItem}, _moved("ray", "_QueueItem")
    cb = WandbLoggerCallback(project="p", mode="offline")
    missing = [a for a in _compat.WANDB_CALLBACK_INTERNALS if not hasattr(cb, a)]
    assert not missing, _moved("ray", f"WandbLoggerCallback internals {missing} (tlsearch/search/_wandb.py)")


def test_wandb_record_protobuf():
    record = _compat.wandb_record_class()()
    for field in ("history", "run"):
        assert field in record.DESCRIPTOR.fields_by_name, _moved("wandb", f"Record.{field} of wandb.proto")
