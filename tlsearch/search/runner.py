"""Run a study: Ray Tune ``Tuner`` + ``OptunaSearch`` (TPE, constant liar, persistent journal storage) +
the spec's scheduler per FT size (``schedulers.py``; ASHA by default), bounded concurrency, fractional GPUs,
retries, per-epoch checkpoints, W&B per trial, the Ray dashboard, and the live view.
``run_study(..., restore=True)`` restores the Tuner and the searcher state."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from tlsearch.search import objectives, tracking
from tlsearch.search.conditions import conditions, several_targets
from tlsearch.search.dimensions import per_target
from tlsearch.search.experiment import NOTE_ATTR, ORPHANED, RAY_TRIAL_ATTR, TIME_BUDGET, TUNE_NAME, Experiment
from tlsearch.search.live import LiveView
from tlsearch.search.space import make_space
from tlsearch.search.spec import SearchSpec
from tlsearch.search.trainable import trainable

METRIC, MODE = "val_mae", "min"
SH_STATE = "sh_state.json"  # successive halving's brackets, in the experiment directory


def strategy_cover(spec: SearchSpec, target: int = 0) -> list[dict[str, Any]]:
    """What every condition (FT size; and FT target ``target``, an index, in a study with several) tries first:
    each strategy x freeze combination when that condition's share of the budget holds them all (the paper's
    grid: scratch + 5 freezes x PT->FT and MPT = 11), else each strategy family. With several PT sources for
    the target, PT->FT counts once per source (the atlas compares every source on every target)."""
    s = spec.search
    label = spec.data.ft_targets[target].label
    sources = [p.label for p in spec.pt_sources_for(label)] if "finetune" in s.strategy else []
    param = per_target(spec, "pt_source", target)

    def family(st: str) -> list[dict[str, Any]]:
        if st == "finetune" and len(sources) > 1:
            return [{"strategy": st, param: x} for x in sources]
        return [{"strategy": st}]

    families = [f for st in s.strategy for f in family(st)]
    if s.freeze_depth is not None or len(s.freeze) < 2:
        return families
    combos = [f if f["strategy"] == "scratch" else {**f, "freeze": fr} for f in families
              for fr in (s.freeze if f["strategy"] != "scratch" else [None])]
    per_condition = spec.budget.trials // len(conditions(spec))
    return combos if len(combos) <= per_condition else families


def _quiet() -> None:
    """Keep Ray's and Optuna's chatter out of the terminal: the live view says what matters."""
    import logging
    import warnings

    import optuna

    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "0")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    logging.getLogger("ray.tune").setLevel(logging.ERROR)


def start_ray(spec: SearchSpec, address: str | None, console: Console, metrics_port: int | None = None) -> str:
    """Start a local Ray with the dashboard on 127.0.0.1 (or join a cluster); return the dashboard URL."""
    import ray

    env = tracking.worker_env(spec)
    if ray.is_initialized():
        return ""
    addr = address or spec.cluster.address
    kwargs: dict[str, Any] = {"runtime_env": {"env_vars": env}, "log_to_driver": False,
                              "configure_logging": True, "logging_level": "ERROR"}
    if addr:
        ctx = ray.init(address=addr, **kwargs)
    else:
        extra = {"_metrics_export_port": metrics_port} if metrics_port else {}
        host, port = spec.cluster.dashboard_host, spec.cluster.dashboard_port
        if not _port_free(host, port):  # another Ray (or anything) holds it: Ray would fail with a traceback
            free = _free_port(host)
            console.print(f"dashboard port {port} on {host} is in use (another Ray?); using {free} instead")
            port = free
        # address="local": always a fresh local instance, never a stray `ray start` cluster found on the machine
        for attempt in range(2):
            try:
                ctx = ray.init(address="local", include_dashboard=True, dashboard_host=spec.cluster.dashboard_host,
                               dashboard_port=port, **kwargs, **extra)
                break
            except Exception as exc:  # noqa: BLE001 - another Ray took the port between the check and the bind
                if attempt or ("address already in use" not in str(exc) and "bind" not in str(exc)):
                    raise
                ray.shutdown()
                port = _free_port(host)
                console.print(f"the dashboard port was taken while Ray started; using {port} instead")
    url = getattr(ctx, "dashboard_url", "") or ""
    url = url if url.startswith("http") or not url else f"http://{url}"
    if url:
        token = Path(os.environ.get("RAY_AUTH_TOKEN_PATH", Path.home() / ".ray" / "auth_token"))
        auth = (f" (token auth: the token is in {token})" if token.exists() and
                os.environ.get("RAY_AUTH_MODE") != "disabled" else "")
        console.print(f"Ray dashboard: [link={url}]{url}[/link]{auth}")
    return url


def _port_free(host: str, port: int) -> bool:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _free_port(host: str) -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _tuner(spec: SearchSpec, exp: Experiment, console: Console, restore: bool) -> Any:
    import optuna
    from ray import tune
    from ray.tune import CheckpointConfig, FailureConfig, RunConfig, TuneConfig, Tuner

    from tlsearch.search._compat import defer_checkpoint_deletions, restored_callbacks, restored_scheduler

    from tlsearch.search._optuna import CycleSampler, ResumableOptunaSearch

    # a snapshot never writes files its previous background upload is listing, and a checkpoint the snapshot on
    # storage names is not deleted (a stopped driver's state restores every trial)
    defer_checkpoint_deletions()  # (serialize_experiment_syncs with it)
    # graphs and PT models live in the shared caches ($TLSEARCH_CACHE), so later studies reuse them
    fn = tune.with_parameters(trainable, spec=spec.model_dump(mode="json"), paths=_paths(spec))
    res = spec.resources
    fn = tune.with_resources(fn, {"cpu": res.cpus_per_trial, "gpu": res.gpus_per_trial})
    if restore:  # the run config (callbacks included) and the searcher come back from the experiment state
        from tlsearch.search._optuna import JOURNAL_ENV

        # the searcher's pickle names the journal where it was saved: another machine, or a moved directory
        os.environ[JOURNAL_ENV] = str(exp.journal)
        tuner = Tuner.restore(exp.tune_location, trainable=fn, resume_errored=True)
        for callback in restored_callbacks(tuner):  # they name the local files of the driver that made them
            if hasattr(callback, "relocate"):
                callback.relocate(exp)
        scheduler = restored_scheduler(tuner)
        if hasattr(scheduler, "relocate"):  # the experiment directory may have moved since it was created
            scheduler.relocate(str(exp.root / SH_STATE))
        return tuner
    callbacks = [*tracking.callbacks(spec, exp, console), LiveView(spec.budget.trials, METRIC, console,
                                                                  spec.data.names(), spec.search.ft_size[0])]
    if exp.uri:  # first: a restored trial's earlier results come down before any other callback reads them
        from tlsearch.search._remote_sync import RemoteSync

        callbacks.insert(0, RemoteSync(exp))
    run_config = RunConfig(
        name=TUNE_NAME, storage_path=exp.tune_storage, verbose=0, callbacks=callbacks,
        failure_config=FailureConfig(max_failures=res.max_failures),
        checkpoint_config=CheckpointConfig(num_to_keep=res.checkpoints_kept),
    )
    seed = spec.seed if spec.search_seed is None else spec.search_seed
    sampler = optuna.samplers.TPESampler(seed=seed, constant_liar=True, multivariate=True, group=True,
                                         n_startup_trials=min(10, max(2, spec.budget.trials // 3)))
    conds = conditions(spec)
    if several_targets(spec):  # a cover per condition: the PT-source parameter is the target's own
        labels = [t.label for t in spec.data.ft_targets]
        covers = [strategy_cover(spec, labels.index(c["target"])) for c in conds]
        sampler = CycleSampler(sampler, None, conds, cover=covers)
    elif len(conds) > 1 or len(strategy_cover(spec)) > 1:
        # the FT size is a condition to compare at: every size gets its share of trials; and every strategy
        # (x freeze, when the budget allows) gets a first trial at every size before TPE chooses
        sampler = CycleSampler(sampler, "ft_size", spec.search.ft_size, cover=strategy_cover(spec))
    # two objectives: Optuna's multi-objective TPE gets both (the cost at each trial's end); the scheduler and
    # Tune keep ranking epochs by val_mae
    metric, mode = ((list(spec.objectives), objectives.directions(spec.objectives)) if spec.multi_objective
                    else (METRIC, MODE))
    searcher = ResumableOptunaSearch(make_space(spec), metric=metric, mode=mode, sampler=sampler,
                                     study_name=spec.name, storage=exp.optuna_storage(), seed=seed,
                                     max_trials=spec.budget.trials)
    if spec.budget.time_budget_s:  # Tune's clock starts with fit(), moments from now
        searcher.budget_deadline = time.time() + spec.budget.time_budget_s
    searcher, scheduler = _scheduling(spec, searcher, exp.root / SH_STATE)
    tune_config = TuneConfig(metric=METRIC, mode=MODE, search_alg=searcher, scheduler=scheduler,
                             num_samples=spec.budget.trials, time_budget_s=spec.budget.time_budget_s,
                             reuse_actors=True,  # a worker keeps torch, alignn and the datasets loaded
                             trial_dirname_creator=lambda t: f"t{t.trial_id[-5:]}")
    return Tuner(fn, tune_config=tune_config, run_config=run_config)


def _paths(spec: SearchSpec) -> dict[str, str]:
    """Where trials find graphs and PT models: the shared caches ($TLSEARCH_CACHE, the PT store), so later
    studies reuse them."""
    return {k: v for k, v in {"cache_dir": os.environ.get("TLSEARCH_CACHE", ""),
                              "store_dir": spec.cluster.pt_store or ""}.items() if v}


def _scheduling(spec: SearchSpec, searcher: Any, state_path: Path) -> tuple[Any, Any]:
    """The concurrency-limited searcher and the trial scheduler, from the registry by ``scheduler.type``
    (tlsearch/search/schedulers.py): early stopping per FT size (trials of different sizes have incomparable
    validation errors), or plain FIFO. ``state_path`` is where a scheduler keeps state Tune does not restore
    on resume (successive halving's brackets)."""
    from tlsearch.search import schedulers

    return schedulers.make(spec, searcher, state_path)


def run_study(spec: SearchSpec, exp: Experiment, console: Console, address: str | None = None,
              restore: bool = False, metrics_port: int | None = None) -> Any:
    _quiet()
    tracking.announce(spec, exp, console)
    start_ray(spec, address, console, metrics_port)
    console.print(f"experiment: {exp.where}" + (f" (local copy: {exp.root})" if exp.uri else ""))
    if spec.multi_objective:
        # the cost exists only in a trial's final result, where the searcher adds it: Tune's check that every
        # result holds every objective would fail each epoch's report (the scheduler's val_mae is in all)
        os.environ["TUNE_DISABLE_STRICT_METRIC_CHECKING"] = "1"
    tuner = _tuner(spec, exp, console, restore)
    noted = _budget_noted(spec, exp) if restore else set()
    results = tuner.fit()
    from tlsearch.search._compat import flush_checkpoint_deletions

    flush_checkpoint_deletions()  # the experiment's last snapshot is stored: no trial restores from them
    console.print()
    exp.pull_tune()  # an experiment on an object store: the trials' files, for the report
    ended = {r.metrics.get("trial_id"): int(r.metrics.get("epoch") or 0) for r in results if r.metrics}
    _close_unfinished(spec, exp, console, ended, noted)
    if spec.budget.race_repeats:
        from tlsearch.search.racing import race

        finals = [(r.metrics["trial_id"], dict(r.config), dict(r.metrics)) for r in results
                  if r.metrics and r.metrics.get("final") and r.config]
        race(spec, exp, console, finals, _paths(spec))
        exp.pull_tune()
    return results


def _budget_noted(spec: SearchSpec, exp: Experiment) -> set[int]:
    """Optuna trials an earlier driver already closed as stopped by the time budget (said then, not again)."""
    import optuna

    try:
        study = optuna.load_study(study_name=spec.name, storage=exp.optuna_storage())
    except KeyError:  # a new study
        return set()
    return {t.number for t in study.get_trials(deepcopy=False) if t.user_attrs.get(NOTE_ATTR) == TIME_BUDGET}


def _close_unfinished(spec: SearchSpec, exp: Experiment, console: Console, ended: dict[str, int],
                      noted: set[int] = frozenset()) -> None:
    """Once Tune has finished, a trial still RUNNING in the Optuna journal either ran in this driver until the
    study's time budget ran out (Tune stopped it: PRUNED with its last validation value, note TIME_BUDGET) or
    was started by a driver that died before Tune's last snapshot, and Tune re-planned it (FAIL, ORPHANED).
    ``ended``: Ray trial id -> the last epoch it reported in this driver (a two-objective study keeps no
    intermediate values in Optuna, so the epochs come from Tune)."""
    import optuna

    from tlsearch.search._compat import set_stored_user_attr

    study = optuna.load_study(study_name=spec.name, storage=exp.optuna_storage())
    budget = spec.budget.time_budget_s
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        if budget and t.user_attrs.get(RAY_TRIAL_ATTR) in ended:
            set_stored_user_attr(study, t, NOTE_ATTR, TIME_BUDGET)
            study.tell(t.number, state=optuna.trial.TrialState.PRUNED)
            continue
        set_stored_user_attr(study, t, NOTE_ATTR, ORPHANED)
        study.tell(t.number, state=optuna.trial.TrialState.FAIL)
        console.print(f"optuna trial {t.number}: orphaned by the interrupted driver, marked failed")
    # the searcher notes the trials Tune told it complete once the budget had run out, this function the rest
    for t in study.get_trials(deepcopy=False):
        if t.user_attrs.get(NOTE_ATTR) == TIME_BUDGET and t.number not in noted:
            epochs = max(len(t.intermediate_values), ended.get(t.user_attrs.get(RAY_TRIAL_ATTR), 0))
            console.print(f"optuna trial {t.number}: stopped by the study's time budget ({budget:g} s) after "
                          f"{epochs} epoch(s)")
