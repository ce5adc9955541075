"""The W&B callback of the runner (imported lazily: it imports Ray and wandb).

Ray's ``WandbLoggerCallback`` starts two Ray actors per trial (a queue and a logger that imports wandb and
starts its own wandb-core), and every result crosses a blocking remote call: about 4 s of CPU per trial and
18 ms per report, while the trial waits (``benchmarks/overhead.py``). Here one thread of the driver writes
every trial's run (``wandb.init(reinit="create_new")``: several runs in one process, one wandb-core), fed by a
queue, so a result costs the driver a ``put``. Ray's callback keeps its bookkeeping (which trial has a run,
what is excluded, what goes to the config); only the transport changes. A W&B error is logged and never
reaches the study.
"""

from __future__ import annotations

import logging
import queue
import threading
from pathlib import Path
from typing import Any

from ray.air.integrations.wandb import WandbLoggerCallback
from ray.tune.utils import flatten_dict

from tlsearch.search._compat import WandbQueueItem, wandb_loggable
from tlsearch.search.tracking import earlier_history

log = logging.getLogger("tlsearch.wandb")
_RESULT, _END = "result", "end"


class _Writer:
    """One daemon thread: ``start`` / ``result`` / ``end`` messages per run key, in order."""

    def __init__(self) -> None:
        self._q: queue.Queue[tuple[str, str, Any]] = queue.Queue()
        self._runs: dict[str, tuple[Any, set[str], set[str]]] = {}
        self._thread = threading.Thread(target=self._loop, name="tlsearch-wandb", daemon=True)
        self._thread.start()

    def send(self, op: str, key: str, payload: Any = None) -> None:
        self._q.put((op, key, payload))

    def close(self, timeout: float) -> None:
        """Finish every open run, wait for wandb-core to write them (at most ``timeout`` s)."""
        self._q.put(("stop", "", None))
        self._thread.join(timeout)

    def _loop(self) -> None:
        import wandb

        while True:
            op, key, payload = self._q.get()
            if op == "stop":
                for k in list(self._runs):
                    self._finish(k)
                try:
                    wandb.teardown()  # waits for wandb-core to write every run to disk
                except Exception as e:  # noqa: BLE001 - W&B must never take the study down
                    log.warning("W&B teardown failed: %s", e)
                return
            try:
                if op == "start":
                    exclude, to_config, logdir, kwargs = payload
                    settings = wandb.Settings(console="off", silent=True, disable_git=True, x_disable_stats=True)
                    run = wandb.init(**{**kwargs, "reinit": "create_new"}, settings=settings)
                    run.config.update({"trial_log_path": logdir}, allow_val_change=True)
                    self._runs[key] = (run, set(exclude), set(to_config))
                elif op == _RESULT and key in self._runs:
                    run, exclude, to_config = self._runs[key]
                    data, config = _split(payload, exclude, to_config)
                    if config:
                        run.config.update(config, allow_val_change=True)
                    run.log(data, step=data.get("training_iteration"))
                elif op == _END and key in self._runs:
                    self._finish(key)
            except Exception as e:  # noqa: BLE001
                log.warning("W&B %s for trial %s failed: %s", op, key, e)

    def _finish(self, key: str) -> None:
        run = self._runs.pop(key)[0]
        try:
            run.finish()
        except Exception as e:  # noqa: BLE001
            log.warning("W&B finish for trial %s failed: %s", key, e)


def _split(result: dict[str, Any], exclude: set[str], to_config: set[str]) -> tuple[dict, dict]:
    """What Ray's logging actor logs (numbers) and what it moves to the run's config."""
    config = dict(result.get("config", {}))
    config.pop("callbacks", None)
    data = {}
    for k, v in flatten_dict(result, delimiter="/").items():
        if any(k == e or k.startswith(e + "/") for e in exclude):
            continue
        if any(k == c or k.startswith(c + "/") for c in to_config):
            config[k] = v
        elif wandb_loggable(v):
            data[k] = v
    return data, config


class _TrialQueue:
    """What Ray's callback calls ``put`` on: results and the end of the run go to the writer under the trial's
    key (checkpoint uploads are not used)."""

    def __init__(self, writer: _Writer, key: str) -> None:
        self._writer, self._key = writer, key

    def put(self, item: tuple[Any, Any]) -> None:
        kind, content = item
        if kind.name in ("RESULT", "END"):
            self._writer.send(_RESULT if kind.name == "RESULT" else _END, self._key, content)


class WandbCallback(WandbLoggerCallback):
    """Every trial a W&B run (id = Ray trial id, group = study name), written by one driver thread.

    Every W&B step (= Tune's training_iteration) once. A trial restored from a checkpoint reports again the
    iterations after it: after a retry (same driver, same W&B run) those are skipped; a trial restored by
    ``tlsearch resume`` gets a second W&B run with the same id (offline W&B cannot reopen a run file),
    created with resume="allow" so that ``wandb sync`` uploads both into one run, which starts after the last
    step the earlier files hold, with the iterations the killed driver recorded in result.json but W&B lost
    (its writer buffers; a SIGKILL loses the tail) up to the checkpoint the trial restarts from."""

    _writer: _Writer | None = None

    def _start_logging_actor(self, trial: Any, exclude_results: list[str], **wandb_init_kwargs: Any) -> None:
        if trial in self._trial_logging_futures:  # a retried trial keeps its run
            return
        if self._writer is None:
            self._writer = _Writer()
        key = trial.trial_id
        self._writer.send("start", key, (exclude_results, self.AUTO_CONFIG_KEYS, trial.local_path,
                                         wandb_init_kwargs))
        self._trial_queues[trial] = _TrialQueue(self._writer, key)
        self._trial_logging_actors[trial] = self._trial_logging_futures[trial] = key

    def _signal_logging_actor_stop(self, trial: Any) -> None:
        # a trial lost before its run started (e.g. its node died during a retry) has none
        q = self._trial_queues.pop(trial, None)
        if q is not None:
            q.put((WandbQueueItem.END, None))
            self._trial_logging_actors.pop(trial, None)
            self._trial_logging_futures.pop(trial, None)

    def _cleanup_logging_actors(self, timeout: int = 0, kill_on_timeout: bool = False) -> None:
        if timeout and self._writer is not None:  # the end of the experiment: finish and write every run
            for trial in list(self._trial_queues):
                self._signal_logging_actor_stop(trial)
            self._writer.close(timeout)
            self._writer = None

    def _continued(self, trial: Any) -> dict[str, Any]:
        if not hasattr(self, "_steps"):
            self._steps: dict[str, dict[str, Any]] = {}
        if trial.trial_id not in self._steps:  # its first start under this driver
            # the trial's result.json in the experiment (trial.path; the driver's staging copy, local_path,
            # is new in a resumed driver and filled from it only when Tune's JSON logger starts the trial)
            results = Path(trial.path or "", "result.json")
            if not results.exists():
                results = Path(trial.local_path or "", "result.json")
            self._steps[trial.trial_id] = earlier_history(Path(self.kwargs.get("dir") or "."), trial.trial_id,
                                                          results)
        return self._steps[trial.trial_id]

    def log_trial_start(self, trial: Any) -> None:
        if not self._continued(trial)["resumed"] or trial in self._trial_logging_actors:
            return super().log_trial_start(trial)
        self.kwargs["resume"] = "allow"
        try:
            super().log_trial_start(trial)
        finally:
            self.kwargs.pop("resume", None)

    def log_trial_result(self, iteration: int, trial: Any, result: dict) -> None:
        s = self._continued(trial)
        step = result.get("training_iteration")
        if step is None:
            return super().log_trial_result(iteration, trial, result)
        for row in s["backfill"]:  # what W&B lost, up to the checkpoint this attempt restarted from
            if s["last"] < row["training_iteration"] < step:
                super().log_trial_result(iteration, trial, row)
                s["last"] = row["training_iteration"]
        s["backfill"] = []
        if step > s["last"]:
            super().log_trial_result(iteration, trial, result)
            s["last"] = step

    def _flush_backfill(self, trial: Any) -> None:
        """Log the result.json rows that W&B lost and that this trial will not report again: it ends here
        without a new result (stopped at the resume, e.g. at a rung), or it ended under the killed driver and
        is only restored as ended (never started again, so ``log_trial_result`` never runs for it)."""
        s = self._continued(trial)
        rows = [r for r in s["backfill"] if r["training_iteration"] > s["last"]]
        s["backfill"] = []
        for row in rows:
            super().log_trial_result(row["training_iteration"], trial, row)  # starts its run if none is open
            s["last"] = row["training_iteration"]

    def log_trial_end(self, trial: Any, failed: bool = False) -> None:
        self._flush_backfill(trial)
        super().log_trial_end(trial, failed)

    def on_experiment_end(self, trials: list[Any], **info: Any) -> None:
        for trial in trials:  # every trial's W&B history ends complete, whichever driver ran its epochs
            self._flush_backfill(trial)
            self._signal_logging_actor_stop(trial)
        super().on_experiment_end(trials, **info)

    def __getstate__(self) -> dict[str, Any]:  # Tune pickles its callbacks with the run config
        return {k: v for k, v in self.__dict__.items() if k not in ("_writer", "_steps")}

    def __del__(self) -> None:  # at interpreter exit: finish what is open, briefly
        try:
            self._cleanup_logging_actors(timeout=2)
        except Exception:  # noqa: BLE001
            pass
