"""The W&B callback of the runner (imported lazily: it imports Ray and wandb).

Ray's ``WandbLoggerCallback`` starts two Ray actors per trial (a queue and a logger that imports wandb and
starts its own wandb-core), and every result crosses a blocking remote call: about 4 s of CPU per trial and
18 ms per report, while the trial waits (``benchmarks/overhead.py``). Here a plain Tune ``LoggerCallback``
hands every result to one thread of the driver, which writes every trial's run
(``wandb.init(reinit="create_new")``: several runs in one process, one wandb-core), so a result costs the driver
a ``put``. The runs look as Ray's callback makes them (id = trial id, name = trial name, the trial's config,
the same results left out or moved to the config). A W&B error is logged and never reaches the study.
"""

from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from numbers import Number

from ray.tune.logger import LoggerCallback
from ray.tune.utils import flatten_dict

from tlsearch.search import tracking
from tlsearch.search.tracking import earlier_history

log = logging.getLogger("tlsearch.wandb")
_RESULT, _END = "result", "end"
EXCLUDE = ("done", "should_checkpoint")  # Tune's bookkeeping in every result, not metrics
TO_CONFIG = ("trial_id", "experiment_tag", "node_ip", "experiment_id", "hostname", "pid", "date")  # run facts


def _trial_dir(trial: Any, which: str) -> str | None:
    """``trial.path`` or ``trial.local_path``, or None for a trial Tune never started: it names the directory
    at the first start, and before that both raise RuntimeError (a resumed driver ends its experiment with the
    trials its searcher planned but never ran)."""
    try:
        return getattr(trial, which)
    except RuntimeError:
        return None


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


@dataclass
class _Orphan:
    """What the callback needs of a trial that Tune does not know (see ``_backfill_unknown``)."""
    trial_id: str
    experiment_dir_name: str
    local_path: str
    config: dict[str, Any]
    path: str = ""

    def __str__(self) -> str:  # Tune names its trials so: the run keeps its name
        return f"trainable_{self.trial_id}"


def _loggable(value: Any) -> bool:
    """A history value: a number (numpy scalars included); strings and lists stay out, as in Ray's callback."""
    if hasattr(value, "item") and getattr(value, "size", None) == 1:
        value = value.item()
    return isinstance(value, Number)


def _split(result: dict[str, Any], exclude: set[str], to_config: set[str]) -> tuple[dict, dict]:
    """What is logged (numbers) and what goes to the run's config."""
    config = dict(result.get("config", {}))
    config.pop("callbacks", None)
    data = {}
    for k, v in flatten_dict(result, delimiter="/").items():
        if any(k == e or k.startswith(e + "/") for e in exclude):
            continue
        if any(k == c or k.startswith(c + "/") for c in to_config):
            config[k] = v
        elif _loggable(v):
            data[k] = v
    return data, config


class WandbCallback(LoggerCallback):
    """Every trial a W&B run (id = Ray trial id, group = study name), written by one driver thread.

    Every W&B step (= Tune's training_iteration) once. A trial restored from a checkpoint reports again the
    iterations after it: after a retry (same driver, same W&B run) those are skipped; a trial restored by
    ``tlsearch resume`` gets a second W&B run with the same id (offline W&B cannot reopen a run file),
    created with resume="allow" so that ``wandb sync`` uploads both into one run, which starts after the last
    step the earlier files hold, with the iterations the killed driver recorded in result.json but W&B lost
    (its writer buffers; a SIGKILL loses the tail) up to the checkpoint the trial restarts from."""

    def __init__(self, project: str, group: str | None = None, log_config: bool = False,
                 excludes: list[str] | None = None, upload_timeout: float = 1800, **kwargs: Any) -> None:
        self.project, self.group, self.log_config = project, group, log_config
        self.excludes = list(excludes or [])
        self.upload_timeout = upload_timeout
        self.kwargs = kwargs  # more wandb.init arguments: mode, dir, entity, notes
        self._open: set[str] = set()  # trials whose run this driver has started and not finished
        self._writer: _Writer | None = None

    def relocate(self, exp: Any) -> None:
        """A resume from a moved experiment directory or on another machine: its W&B directory is here now."""
        if "dir" in self.kwargs:
            self.kwargs["dir"] = str(exp.root)

    def _start(self, trial: Any, resume: bool) -> None:
        if trial.trial_id in self._open:  # a retried trial keeps its run
            return
        if self._writer is None:
            self._writer = _Writer()
        config = {k: v for k, v in trial.config.items() if k != "callbacks" and k not in self.excludes}
        exclude = [*EXCLUDE, *self.excludes, *([] if self.log_config else ["config"])]
        init = {"id": trial.trial_id, "name": str(trial), "resume": "allow" if resume else False, "reinit": True,
                "allow_val_change": True, "group": self.group or trial.experiment_dir_name,
                "project": self.project, "config": config, **self.kwargs}
        self._writer.send("start", trial.trial_id, (exclude, TO_CONFIG, trial.local_path, init))
        self._open.add(trial.trial_id)

    def _stop(self, trial: Any) -> None:
        # a trial lost before its run started (e.g. its node died during a retry) has none
        if trial.trial_id in self._open and self._writer is not None:
            self._writer.send(_END, trial.trial_id)
            self._open.discard(trial.trial_id)

    def _log(self, trial: Any, result: dict) -> None:
        if trial.trial_id not in self._open:
            self.log_trial_start(trial)
        if self._writer is not None:
            self._writer.send(_RESULT, trial.trial_id, result)

    def _continued(self, trial: Any) -> dict[str, Any]:
        if not hasattr(self, "_steps"):
            self._steps: dict[str, dict[str, Any]] = {}
        if trial.trial_id not in self._steps:  # its first start under this driver
            # the trial's result.json in the experiment (trial.path; the driver's staging copy, local_path,
            # is new in a resumed driver and filled from it only when Tune's JSON logger starts the trial)
            found = [Path(d, "result.json") for w in ("path", "local_path") if (d := _trial_dir(trial, w))]
            results = next((r for r in found if r.exists()), None)  # None: Tune never started it
            self._steps[trial.trial_id] = earlier_history(Path(self.kwargs.get("dir") or "."), trial.trial_id,
                                                          results)
        return self._steps[trial.trial_id]

    def log_trial_start(self, trial: Any) -> None:
        self._start(trial, resume=bool(self._continued(trial)["resumed"]))

    def log_trial_result(self, iteration: int, trial: Any, result: dict) -> None:
        s = self._continued(trial)
        step = result.get("training_iteration")
        if step is None:
            return self._log(trial, result)
        for row in s["backfill"]:  # what W&B lost, up to the checkpoint this attempt restarted from
            if s["last"] < row["training_iteration"] < step:
                self._log(trial, row)
                s["last"] = row["training_iteration"]
        s["backfill"] = []
        if step > s["last"]:
            self._log(trial, result)
            s["last"] = step

    def _flush_backfill(self, trial: Any) -> None:
        """Log the result.json rows that W&B lost and that this trial will not report again: it ends here
        without a new result (stopped at the resume, e.g. at a rung), or it ended under the killed driver and
        is only restored as ended (never started again, so ``log_trial_result`` never runs for it)."""
        s = self._continued(trial)
        rows = [r for r in s["backfill"] if r["training_iteration"] > s["last"]]
        s["backfill"] = []
        for row in rows:
            self._log(trial, row)  # starts its run if none is open
            s["last"] = row["training_iteration"]

    def log_trial_end(self, trial: Any, failed: bool = False) -> None:
        self._flush_backfill(trial)
        self._stop(trial)

    def on_experiment_end(self, trials: list[Any], **info: Any) -> None:
        for trial in trials:  # every trial's W&B history ends complete, whichever driver ran its epochs
            self._flush_backfill(trial)
        staged = next((d for t in trials if (d := _trial_dir(t, "local_path"))), None)
        self._backfill_unknown({t.trial_id for t in trials}, staged)
        self._close(self.upload_timeout)

    def _backfill_unknown(self, known: set[str], a_trial_dir: str | None) -> None:
        """Trials this driver's Tune never knew: a dead driver started them after Tune's last snapshot (the
        restored Tune plans their configuration again as new trials). Their result.json may hold epochs whose W&B
        run the driver's death cut short (or never wrote): those are logged to a run with their id too."""
        root = Path(self.kwargs.get("dir") or ".")
        dirs = {p.parent for p in root.glob("tune/t*/result.json")}
        if a_trial_dir:  # the driver's staging copy of the experiment, where Tune may not have synced from
            dirs |= {p.parent for p in Path(a_trial_dir).parent.glob("t*/result.json")}
        for d in sorted(dirs):
            run_id = tracking.first_result(d / "result.json").get("trial_id")
            if not run_id or run_id in known:
                continue
            known.add(run_id)
            orphan = _Orphan(run_id, self.group or d.parent.name, str(d), tracking.trial_config(d))
            self._steps = {**getattr(self, "_steps", {}), run_id: earlier_history(root, run_id, d / "result.json")}
            self._flush_backfill(orphan)
            self._stop(orphan)

    def _close(self, timeout: float) -> None:
        """Finish every open run and wait (at most ``timeout`` s) for W&B to write them."""
        if self._writer is not None:
            self._open.clear()
            self._writer.close(timeout)
            self._writer = None

    def __getstate__(self) -> dict[str, Any]:  # Tune pickles its callbacks with the run config
        return {k: v for k, v in self.__dict__.items() if k not in ("_writer", "_steps", "_open")}

    def __setstate__(self, state: dict[str, Any]) -> None:  # a resumed driver has no run open yet
        self.__dict__.update(state, _writer=None, _open=set())

    def __del__(self) -> None:  # at interpreter exit: finish what is open, briefly
        try:
            self._close(2)
        except Exception:  # noqa: BLE001
            pass
