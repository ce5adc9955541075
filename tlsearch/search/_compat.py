"""The private parts of Ray, Optuna and W&B that tlsearch relies on, in one module (imported lazily: it
imports Ray). Each entry says what it does and which public API is missing; tests/search/test_compat.py
fails loudly, naming the pin in constraints.txt to revisit, when one of them moves in an upgrade.

The W&B callback (``_wandb.WandbCallback``) is a plain Tune ``LoggerCallback`` with its own writer thread: it
uses nothing private of Ray's ``WandbLoggerCallback`` (it used to subclass it and override three private
methods).
"""

from __future__ import annotations

from typing import Any

__all__ = ["asha_knows", "asha_rungs", "optuna_study", "optuna_trials", "rebind_study", "restored_callbacks",
           "restored_scheduler", "searcher_seed", "serialize_experiment_syncs", "set_asha_rungs",
           "set_stored_user_attr", "stop_trial", "defer_checkpoint_deletions", "flush_checkpoint_deletions",
           "wandb_record_class"]

# ---- Optuna ----------------------------------------------------------------------------------------------
def set_stored_user_attr(study: Any, frozen: Any, key: str, value: Any) -> None:
    """A user attribute on a trial the driver holds only as a FrozenTrial (a trial of a dead driver, read back
    from the journal). Public API missing: ``Trial.set_user_attr`` needs the live Trial object of the process
    that asked for it."""
    study._storage.set_trial_user_attr(frozen._trial_id, key, value)


# ---- Ray Tune's OptunaSearch (subclassed in _optuna.py) ------------------------------------------------------
def optuna_study(searcher: Any) -> Any:
    """The Optuna study OptunaSearch drives. Public API missing: OptunaSearch takes a study name or storage
    but gives no access to the study it made (to read the journal, tell reused values, enqueue re-plans)."""
    return searcher._ot_study


def optuna_trials(searcher: Any) -> dict[str, Any]:
    """Ray trial id -> the live Optuna trial OptunaSearch asked for it. Public API missing: none maps them."""
    return searcher._ot_trials


def rebind_study(searcher: Any, storage: Any) -> None:
    """Point a restored OptunaSearch, and the live trials it asked for, at ``storage``. Public API missing: the
    searcher pickles its study with the journal's path of the machine (or directory) that saved it, and a resume
    from another machine or a moved experiment directory would write to that path instead."""
    import optuna

    study = optuna.load_study(study_name=searcher._study_name, storage=storage, sampler=searcher._ot_study.sampler)
    searcher._storage, searcher._ot_study = storage, study
    for trial in searcher._ot_trials.values():
        trial.study, trial.storage = study, storage


def searcher_seed(searcher: Any) -> int | None:
    """The seed OptunaSearch was given (to seed the random fallback sampler alike). Public API missing."""
    return searcher._seed


# ---- Ray Tune's ASHA (one per FT size in _scheduler.py) ----------------------------------------------------
def asha_rungs(asha: Any) -> list[list[tuple[float, Any]]]:
    """The (milestone, recorded) rungs of each of ASHA's brackets. Public API missing: ASHA has no way to ask
    for its milestones or to leave out the one at the last epoch (a decision that stops nothing)."""
    return [b._rungs for b in getattr(asha, "_brackets", [])]


def set_asha_rungs(asha: Any, rungs: list[list[tuple[float, Any]]]) -> None:
    for bracket, r in zip(getattr(asha, "_brackets", []), rungs):
        bracket._rungs = r


def asha_knows(asha: Any, trial_id: str) -> bool:
    """Whether ASHA placed this trial in a bracket. Public API missing: a trial added before a restore must be
    placed again, and one it never placed must not be reported to it."""
    return trial_id in asha._trial_info


# ---- Ray Tune's Tuner ----------------------------------------------------------------------------------------
def restored_scheduler(tuner: Any) -> Any:
    """The scheduler a ``Tuner.restore`` brought back (None if it cannot be found). Public API missing: the
    restored TuneConfig is not exposed, and a moved experiment directory must be told to the scheduler."""
    return getattr(getattr(getattr(tuner, "_local_tuner", None), "_tune_config", None), "scheduler", None)


def restored_callbacks(tuner: Any) -> list[Any]:
    """The callbacks a ``Tuner.restore`` brought back (pickled with the run config). Public API missing: the
    restored RunConfig is not exposed, and a resume on another machine must tell them where the experiment's
    local files are now (W&B's directory, the object-store mirror)."""
    return list(getattr(getattr(getattr(tuner, "_local_tuner", None), "_run_config", None), "callbacks", None) or [])


def stop_trial(tune_controller: Any, trial: Any) -> None:
    """Stop a trial, also one Tune never started (successive halving stops a re-planned trial whose place in
    its bracket had been dropped before the driver died). Tune names a trial's directory when it starts the
    trial; at the end of the experiment Tune's own output (``Trial.error_file``), its ``ResultGrid``
    (``trial.path``) and the callbacks read every trial's directory, and for a trial without one they raise
    RuntimeError ("without setting trial_dir_name"): the study ended with a traceback after every trial had
    finished (CI, 2026-12-02). ``Trial.init_local_path`` is what Tune calls when it starts a trial: it names
    and creates the (empty) directory. Public API missing: ``TuneController.stop_trial`` does not do it."""
    try:
        trial.local_path
    except RuntimeError:
        trial.init_local_path()
    tune_controller.stop_trial(trial)


# Checkpoints Ray Train's retention (CheckpointConfig.num_to_keep) gave up: "queued" until the next experiment
# snapshot is written (it no longer names them), then "uploading" until that snapshot is on storage
_DELETIONS: dict[str, list[tuple[Any, str]]] = {"queued": [], "uploading": []}
_DELETE: list[Any] = []  # Ray's own deletion, once defer_checkpoint_deletions has replaced it


def defer_checkpoint_deletions() -> None:
    """Delete a trial's old checkpoint (``CheckpointConfig.num_to_keep``) only once the experiment snapshot
    that no longer names it is on storage. Ray Train deletes it the moment a newer checkpoint registers, while
    the snapshot on storage (refreshed only at the next upload) may still name it as the trial's latest: a
    driver stopped in that window (``ray job stop``, a crash) left a state whose trial could not be restored
    ("Could not recover from checkpoint as it does not exist on storage anymore"; CI, 2026-12-02,
    tests/search/test_ray_jobs.py). Here a deletion is queued; the next snapshot Tune writes takes the queue and
    the deletions happen once its upload has finished (``serialize_experiment_syncs``, turned on here too);
    ``flush_checkpoint_deletions`` does the rest when the experiment has ended. A checkpoint already gone (a
    dead driver deleted it and the restored state still lists it) is skipped. A driver that dies leaves the
    checkpoints it had queued on storage. Public API missing: no hook between retention and snapshots, and no
    option to ignore a missing old checkpoint. Idempotent."""
    import ray.train._internal.checkpoint_manager as manager

    serialize_experiment_syncs()  # its snapshot uploads are what release the queued deletions
    if getattr(manager._delete_fs_path, "tlsearch_deferred", False):
        return
    _DELETE[:] = [manager._delete_fs_path]

    def deferred(fs: Any, fs_path: str) -> None:
        _DELETIONS["queued"].append((fs, fs_path))

    deferred.tlsearch_deferred = True  # type: ignore[attr-defined]
    manager._delete_fs_path = deferred


def _delete(batch: list[tuple[Any, str]]) -> None:
    for fs, fs_path in batch:
        try:
            _DELETE[0](fs=fs, fs_path=fs_path)
        except FileNotFoundError:
            pass


def flush_checkpoint_deletions() -> None:
    """Carry out every deferred checkpoint deletion: the experiment has ended and its last snapshot is stored."""
    batch = _DELETIONS["uploading"] + _DELETIONS["queued"]
    _DELETIONS["uploading"], _DELETIONS["queued"] = [], []
    if _DELETE:
        _delete(batch)


def serialize_experiment_syncs() -> None:
    """Let Tune's experiment snapshot wait for its previous background upload before it writes the next one.
    Tune uploads the driver's staging directory in the background and, at the next snapshot, writes new state
    files there (``tmp-searcher-state-*.pkl``, renamed into place) while that upload may still be listing them:
    the upload then fails on a file already renamed, and Tune logs a traceback ("Saving experiment state to
    storage ... failed"; seen with ``storage: s3://...`` in tests/search/test_object_storage.py). The next upload
    copies everything again, so the only loss was the log and a late snapshot. Also the clock of the deferred
    checkpoint deletions (``defer_checkpoint_deletions``): those queued before a snapshot is written are done
    once its upload has succeeded (a failed upload keeps them for the one that repeats it). Public API missing:
    no option orders the two. Idempotent."""
    import logging
    import time

    from ray.tune.execution.experiment_state import _ExperimentCheckpointManager as manager

    sync_up = manager.sync_up_experiment_state
    if getattr(sync_up, "tlsearch_serial", False):
        return

    def settle(self: Any) -> None:
        """Wait for the background upload; once it has succeeded, the stored snapshot no longer names the
        checkpoints queued before it was written: delete them."""
        if self._storage is None:
            return
        try:
            self._storage.syncer.wait()
        except Exception as exc:  # noqa: BLE001 - the upload launched next repeats it
            logging.getLogger(__name__).warning("an experiment snapshot upload failed (the next repeats it): %s", exc)
            return
        batch, _DELETIONS["uploading"] = _DELETIONS["uploading"], []
        _delete(batch)

    def serial(self: Any, save_fn: Any, force: bool = False, wait: bool = False) -> Any:
        due = force or self._should_force_sync_up or time.monotonic() - self._last_save_time >= self._checkpoint_period
        if not due:
            return sync_up(self, save_fn, force=force, wait=wait)
        settle(self)

        def save() -> None:
            batch, _DELETIONS["queued"] = _DELETIONS["queued"], []
            save_fn()
            _DELETIONS["uploading"].extend(batch)

        out = sync_up(self, save, force=force, wait=False)
        if wait:
            settle(self)
        return out

    serial.tlsearch_serial = True  # type: ignore[attr-defined]
    manager.sync_up_experiment_state = serial


# ---- W&B ----------------------------------------------------------------------------------------------------
def wandb_record_class() -> Any:
    """W&B's Record protobuf, to read a run's ``.wandb`` transaction log. Public API missing: W&B reads its own
    logs only through ``wandb sync`` / ``wandb leet`` (subprocesses, seconds each)."""
    from wandb.proto import wandb_internal_pb2

    return wandb_internal_pb2.Record
