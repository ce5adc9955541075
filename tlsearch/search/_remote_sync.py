"""Keeps an experiment on an object store in step with its driver (``storage: s3://...``; see experiment.py).

Ray Tune writes its own state and every trial's checkpoints to the store. Two things it does not do, done here
through Tune's public Callback hooks:

* the driver's files (the Optuna journal, the W&B offline runs, the scheduler's state) go up at every Tune
  snapshot (``get_state`` is called while Tune saves one, before Tune uploads it), so the journal on the store
  always holds every trial the stored Tune state knows, and a resume on another machine finds both;
* a trial that Tune restores on a fresh driver gets its earlier ``result.json`` (and params) back into the
  driver's staging directory before Tune's JSON logger appends to it: Tune copies only the experiment's
  top-level state down, and its logger would otherwise start the file again and upload it over the old one.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ray.tune import Callback

from tlsearch import remote
from tlsearch.errors import StorageError
from tlsearch.search.experiment import Experiment

log = logging.getLogger(__name__)


class RemoteSync(Callback):
    def __init__(self, exp: Experiment) -> None:
        self.exp = exp
        self._sent: dict[str, tuple[int, int]] = {}
        self._seeded: set[str] = set()

    def __getstate__(self) -> dict[str, Any]:  # pickled into Tune's state: what was sent is this driver's
        return {"exp": self.exp}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["exp"])

    def relocate(self, exp: Experiment) -> None:
        """A resume, maybe on another machine: this driver's mirror."""
        self.exp = exp

    def _seed(self, trial: Any) -> None:
        if trial.trial_id in self._seeded or not trial.local_path:
            return
        self._seeded.add(trial.trial_id)
        local = Path(trial.local_path)
        if not (local / "result.json").exists():
            remote.download(remote.join(self.exp.tune_location, local.name), local, exclude=("checkpoint_*",))

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._seed(trial)

    def on_trial_restore(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._seed(trial)

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        self._seed(trial)

    def _push(self) -> None:
        try:
            self.exp.push(sent=self._sent)
        except StorageError as exc:  # the store is unreachable for now: the study goes on, the next snapshot retries
            log.warning("could not upload the driver's files: %s", exc)

    def get_state(self) -> dict[str, Any] | None:
        self._push()
        return None  # nothing of its own to restore

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        self._push()
