"""Every private part of Ray, Optuna and W&B that tlsearch uses (tlsearch/search/_compat.py) still exists and
does what tlsearch needs, on real objects of the installed versions. A failure names the package, the
attribute and the pin in constraints.txt to revisit: an upgrade moved something tlsearch relies on."""

from __future__ import annotations

import json
import os
import re
from importlib import metadata
from pathlib import Path
from typing import Any

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


def test_ray_tuner_restored_callbacks():
    from ray.tune import Callback, RunConfig, Tuner

    cb = Callback()
    tuner = Tuner(lambda config: None, run_config=RunConfig(callbacks=[cb]))
    assert _compat.restored_callbacks(tuner) == [cb], _moved("ray", "Tuner._local_tuner._run_config.callbacks")


def _private(obj: object) -> set[str]:
    """Private names of a class or an instance (instance attributes included)."""
    return {n for n in dir(obj) if n.startswith("_") and not n.startswith("__")}


def test_private_parts_of_ray_optuna_and_wandb_only_in_the_seam():
    """Outside _compat.py, tlsearch imports no private name of Ray, Optuna or W&B and reads no private attribute
    of their objects (nor, in a subclass of theirs, of itself), read from the source."""
    import ast

    from ray.tune import Tuner
    from ray.tune.execution.tune_controller import TuneController
    from ray.tune.experiment import Trial
    from ray.tune.logger import LoggerCallback
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, MedianStoppingRule, TrialScheduler
    from ray.tune.search import ConcurrencyLimiter, Searcher
    from ray.tune.search.optuna import OptunaSearch

    study = optuna.create_study()
    study.tell(study.ask(), 1.0)
    search = OptunaSearch(metric="val_mae", mode="min")
    instances = {OptunaSearch: search, ConcurrencyLimiter: ConcurrencyLimiter(search, 1), Searcher: search,
                 FIFOScheduler: FIFOScheduler(), TrialScheduler: FIFOScheduler(), ASHAScheduler: ASHAScheduler(),
                 MedianStoppingRule: MedianStoppingRule(), LoggerCallback: LoggerCallback()}
    bases = {c.__name__: o for c, o in instances.items()}
    foreign = set().union(*(_private(o) for o in (TuneController, Tuner(lambda config: None), Trial, study,
                                                  study.trials[0], study.ask(), *instances.values())))
    found = []
    for f in sorted((ROOT / "tlsearch").rglob("*.py")):
        if f.name == "_compat.py":
            continue
        tree = ast.parse(f.read_text())
        inherited: dict[ast.AST, set[str]] = {}
        for cls in [n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)]:
            names = set().union(*(_private(bases[b.id]) for b in cls.bases if isinstance(b, ast.Name) and b.id in bases))
            for node in ast.walk(cls):
                inherited[node] = names
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in ("ray", "optuna",
                                                                                               "wandb"):
                found += [f"{f.name}:{node.lineno} imports {node.module}.{a.name}" for a in node.names
                          if a.name.startswith("_") or any(p.startswith("_") for p in node.module.split("."))]
            elif isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
                own = isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")
                if (not own and node.attr in foreign) or (own and node.attr in inherited.get(node, set())):
                    found.append(f"{f.name}:{node.lineno} {ast.unparse(node)}")
    assert not found, f"private parts of Ray/Optuna/W&B outside tlsearch/search/_compat.py: {found}"


def test_wandb_record_protobuf():
    record = _compat.wandb_record_class()()
    for field in ("history", "run"):
        assert field in record.DESCRIPTOR.fields_by_name, _moved("wandb", f"Record.{field} of wandb.proto")


class _Syncer:
    """The storage's background syncer, as Tune's snapshot manager uses it (no Ray session needed): ``wait``
    raises while ``failing`` (the upload failed)."""

    def __init__(self) -> None:
        self.waits, self.failing = 0, False

    def wait(self, *a, **k):
        self.waits += 1
        if self.failing:
            raise OSError("upload failed")

    def sync_up(self, *a, **k):
        return True


def _snapshot_manager(tmp_path: Path) -> tuple[Any, _Syncer]:
    try:
        from ray.train._internal.storage import StorageContext
        from ray.tune.execution.experiment_state import _ExperimentCheckpointManager
    except ImportError as exc:
        pytest.fail(_moved("ray", f"ray.tune.execution.experiment_state._ExperimentCheckpointManager ({exc})"))
    import inspect
    from types import SimpleNamespace

    params = list(inspect.signature(_ExperimentCheckpointManager.sync_up_experiment_state).parameters)
    assert params[:4] == ["self", "save_fn", "force", "wait"], _moved("ray", f"sync_up_experiment_state{params}")
    _compat.serialize_experiment_syncs()
    _compat.serialize_experiment_syncs()  # idempotent
    m = _ExperimentCheckpointManager(storage=None, checkpoint_period=1000)
    for name in ("_should_force_sync_up", "_last_save_time", "_checkpoint_period", "_storage"):
        assert hasattr(m, name), _moved("ray", f"_ExperimentCheckpointManager.{name}")
    assert "syncer" in inspect.getsource(StorageContext.__init__), _moved("ray", "StorageContext.syncer")
    syncer = _Syncer()
    m._storage = SimpleNamespace(syncer=syncer, experiment_driver_staging_path=str(tmp_path),
                                 experiment_fs_path=str(tmp_path / "store"))
    return m, syncer


def test_ray_checkpoint_deletion_waits_until_the_stored_snapshot_no_longer_names_it(tmp_path):
    """Ray Train's retention deletes old checkpoints through checkpoint_manager._delete_fs_path, at once;
    defer_checkpoint_deletions queues them: a queued one is deleted after the next snapshot is written and its
    upload has succeeded (a failed upload keeps it for the next); one already gone is skipped; the rest go when
    the experiment has ended (flush)."""
    import pyarrow.fs

    try:
        import ray.train._internal.checkpoint_manager as manager
    except ImportError:
        pytest.fail(_moved("ray", "ray.train._internal.checkpoint_manager"))
    assert hasattr(manager, "_delete_fs_path"), _moved("ray", "checkpoint_manager._delete_fs_path")
    _compat.defer_checkpoint_deletions()
    _compat.defer_checkpoint_deletions()  # idempotent
    _compat.flush_checkpoint_deletions()  # what earlier tests of this process left
    m, syncer = _snapshot_manager(tmp_path)
    fs, saves = pyarrow.fs.LocalFileSystem(), []

    def checkpoint(name: str) -> Path:
        d = tmp_path / name
        d.mkdir()
        (d / "state.pt").write_bytes(b"x")
        manager._delete_fs_path(fs=fs, fs_path=str(d))  # retention gives it up
        return d

    first = checkpoint("checkpoint_000001")
    assert first.exists()  # the snapshot on storage may name it
    m.sync_up_experiment_state(lambda: saves.append(1), force=True)  # the snapshot without it: uploading
    assert first.exists() and saves == [1]
    second = checkpoint("checkpoint_000002")
    syncer.failing = True
    m.sync_up_experiment_state(lambda: saves.append(2), force=True)  # the upload of snapshot 1 failed
    assert first.exists() and second.exists()
    syncer.failing = False
    m.sync_up_experiment_state(lambda: saves.append(3), force=True)  # snapshot 2 (repeating 1) is on storage
    assert not first.exists() and not second.exists() and saves == [1, 2, 3]
    third = checkpoint("checkpoint_000003")
    manager._delete_fs_path(fs=fs, fs_path=str(tmp_path / "checkpoint_000000"))  # a dead driver deleted it
    _compat.flush_checkpoint_deletions()
    assert not third.exists()


def test_ray_experiment_snapshot_waits_for_the_previous_upload(tmp_path):
    """Tune's experiment snapshots (_ExperimentCheckpointManager.sync_up_experiment_state) are serialised after
    the previous background upload by serialize_experiment_syncs, which reads the manager's throttle state and
    its storage's syncer: a snapshot that is due waits for the syncer; one that is not due does not."""
    m, syncer = _snapshot_manager(tmp_path)
    saves = []
    m.sync_up_experiment_state(lambda: saves.append(1))  # first snapshot: due
    m.sync_up_experiment_state(lambda: saves.append(1))  # within the period: not due, no save, no wait
    assert saves == [1] and syncer.waits == 1, (saves, syncer.waits)
    m.sync_up_experiment_state(lambda: saves.append(2), wait=True)  # not due: Tune's own throttle
    before = syncer.waits
    m.sync_up_experiment_state(lambda: saves.append(2), force=True, wait=True)  # waits before and after
    assert saves == [1, 2] and syncer.waits >= before + 2, (saves, syncer.waits)


def _check_no_stored_snapshot_names_a_deleted_checkpoint(tmp: str) -> None:
    """Real Tune, a checkpoint every iteration, retention keeping one: whenever a checkpoint registers, the
    experiment snapshot on storage (what a resume after `ray job stop` reads) names as each trial's latest only
    checkpoints that exist; when the experiment has ended, retention has kept one per trial."""
    import glob

    import ray
    from ray import tune
    from ray.tune.trainable.metadata import _TrainingRunMetadata

    stale = []

    class Inspect(tune.Callback):
        def on_step_end(self, iteration, trials, **info):  # noqa: ANN001, ANN003
            snaps = sorted(glob.glob(f"{tmp}/e/experiment_state-*.json"))
            try:
                state = json.loads(Path(snaps[-1]).read_text()) if snaps else {"trial_data": []}
            except ValueError:  # being uploaded
                return
            for _, meta in state["trial_data"]:
                latest = _TrainingRunMetadata.from_json_state(meta).checkpoint_manager.latest_checkpoint_result
                if latest is not None and not os.path.exists(latest.checkpoint.path):
                    stale.append(latest.checkpoint.path)

    def trainable(config: dict) -> None:
        import tempfile
        import time

        for i in range(1, 9):
            with tempfile.TemporaryDirectory() as d:
                Path(d, "state.txt").write_text(str(i))
                tune.report({"i": i}, checkpoint=tune.Checkpoint.from_directory(d))
            time.sleep(0.05)

    _compat.serialize_experiment_syncs()
    _compat.defer_checkpoint_deletions()
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, _temp_dir=f"{tmp}/ray")
    try:
        tune.Tuner(trainable, param_space={"x": tune.grid_search([0, 1])},
                   run_config=tune.RunConfig(storage_path=tmp, name="e", verbose=0, callbacks=[Inspect()],
                                             checkpoint_config=tune.CheckpointConfig(num_to_keep=1))).fit()
    finally:
        ray.shutdown()
    _compat.flush_checkpoint_deletions()
    assert not stale, f"the stored snapshot named deleted checkpoints: {stale}"
    kept = sorted(Path(p).name for p in glob.glob(f"{tmp}/e/*/checkpoint_*"))
    assert kept == ["checkpoint_000007"] * 2, kept


def test_ray_stored_snapshot_never_names_a_deleted_checkpoint():
    from tests.search.test_scheduling import in_fresh_process

    in_fresh_process("test_compat", "_check_no_stored_snapshot_names_a_deleted_checkpoint(sys.argv[1])")


def _check_stop_trial_never_started(tmp: str) -> None:
    """A scheduler stops a trial before Tune starts it: with Tune's stop_trial alone Ray 2.60's own end of the
    experiment raises RuntimeError (its output reads Trial.error_file, ResultGrid reads trial.path); through
    _compat.stop_trial the study ends, every trial in its results."""
    import ray
    from ray import tune
    from ray.tune.experiment import Trial
    from ray.tune.schedulers import FIFOScheduler

    class StopTheSecond(FIFOScheduler):
        def choose_trial_to_run(self, tune_controller):  # noqa: ANN001, ANN202
            for t in tune_controller.get_trials():
                if t.status == Trial.PENDING and t.config["x"] == 1:
                    _compat.stop_trial(tune_controller, t)
            return super().choose_trial_to_run(tune_controller)

    def trainable(config: dict) -> None:
        tune.report({"v": config["x"]})

    ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False, _temp_dir=f"{tmp}/ray")
    try:
        results = tune.Tuner(trainable, param_space={"x": tune.grid_search([0, 1, 2])},
                             tune_config=tune.TuneConfig(scheduler=StopTheSecond(), max_concurrent_trials=1),
                             run_config=tune.RunConfig(storage_path=tmp, name="e", verbose=1)).fit()
        assert len(results) == 3 and not results.errors, results.errors
        assert sorted(r.metrics.get("v", -1) for r in results) == [-1, 0, 2]  # the stopped one never reported
    finally:
        ray.shutdown()


def test_ray_stop_of_a_trial_never_started():
    from tests.search.test_scheduling import in_fresh_process

    in_fresh_process("test_compat", "_check_stop_trial_never_started(sys.argv[1])")
