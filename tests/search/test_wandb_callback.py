"""The runner's W&B callback with Tune's real Trial objects (no Ray cluster needed)."""

from __future__ import annotations

import pytest
from ray.train._internal.storage import StorageContext
from ray.tune import register_trainable
from ray.tune.experiment import Trial

from tlsearch.search._wandb import WandbCallback


def _unstarted_trial(tmp_path) -> Trial:
    register_trainable("tlsearch_test_noop", lambda config: None)
    storage = StorageContext(storage_path=str(tmp_path / "tune"), experiment_dir_name="exp")
    return Trial("tlsearch_test_noop", config={"lr": 1e-3}, storage=storage, trial_id="never_started")


def test_a_trial_tune_never_started_has_no_directory_yet(tmp_path):
    """The premise of the next test: Tune names a trial's directory at its first start; until then its paths
    raise (Ray 2.60). If this fails, Ray changed it; the callback must still not fail on such a trial."""
    trial = _unstarted_trial(tmp_path)
    with pytest.raises(RuntimeError, match="trial_dir_name"):
        trial.path
    with pytest.raises(RuntimeError, match="trial_dir_name"):
        trial.local_path


def test_experiment_end_with_a_trial_never_started(tmp_path):
    """A resumed driver can end its experiment with trials its searcher planned but never started (CI run of
    test_driver_sigkill_mid_bracket_resume_keeps_successive_halving: the resume failed with a traceback here).
    The callback ends the experiment, and the trial gets no W&B run: it has no result to log."""
    cb = WandbCallback(project="p", group="g", mode="offline", dir=str(tmp_path))
    cb.on_experiment_end(trials=[_unstarted_trial(tmp_path)])
    assert not list(tmp_path.glob("wandb/offline-run-*"))
