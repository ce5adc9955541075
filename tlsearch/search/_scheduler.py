"""ASHA per FT size (imported lazily: it imports Ray): one Ray ASHA per size through ``GroupedScheduler``
(``_grouped.py`` says why trials compete only within their size).

Fair to transfer: within a size, the best trial of each strategy family (scratch, PT->FT per source, MPT per
property set) at a rung goes on even where ASHA would stop it, so at least one trial of every family runs to
the end. A first-epochs ranking must not drop a whole family: a pre-trained body with a fresh head can start
behind scratch and finish ahead of it, and the report's gain over scratch needs a finished trial of each.
"""

from __future__ import annotations

import math
import pickle
from typing import Any

from ray.tune.schedulers import ASHAScheduler, TrialScheduler

from tlsearch.search._compat import asha_knows, asha_rungs, set_asha_rungs
from tlsearch.search._grouped import GroupedScheduler


class GroupedASHA(GroupedScheduler):
    label = "ASHA"

    def __init__(self, group_key: Any, default_group: Any, max_t: int, grace_period: int,
                 reduction_factor: float, last_epoch: int, protect_families: bool = True) -> None:
        super().__init__(group_key, default_group)
        self._asha_args = {"time_attr": "training_iteration", "max_t": max_t, "grace_period": grace_period,
                           "reduction_factor": reduction_factor}
        self._last_epoch = last_epoch
        self._protect = protect_families
        self._family_best: dict[tuple[str, str, int], float] = {}  # (size, family, rung epoch) -> best value
        self._protected = 0

    def _make(self) -> ASHAScheduler:
        s = ASHAScheduler(**self._asha_args)
        # a finished trial reports its summary at max_t = last epoch + 1: no rung may sit on the last epoch
        # itself (it would cut a finished trial just before its summary). ASHA decides at the first epoch that
        # reaches a rung: a rung of 4.5 epochs (reduction_factor 1.5) is decided after epoch 5
        set_asha_rungs(s, [[(m, r) for m, r in rungs if math.ceil(m) < self._last_epoch] for rungs in asha_rungs(s)])
        self._rung_epochs = {math.ceil(m) for rungs in asha_rungs(s) for m, _ in rungs}  # the same in every ASHA
        return s

    def _knows(self, s: TrialScheduler, trial: Any) -> bool:
        return asha_knows(s, trial.trial_id)

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        # ASHA sees the final summary too: it stops every trial at max_t, one past the last epoch
        s = self._sched(trial)
        if not self._knows(s, trial):  # added before a restore: place it now
            s.on_trial_add(tune_controller, trial)
        return self._count(trial, result, self._decide(s, tune_controller, trial, result))

    def _decide(self, s: TrialScheduler, tune_controller: Any, trial: Any, result: dict) -> str:
        """ASHA's decision, except that the trial that is its family's best so far at this rung continues."""
        decision = s.on_trial_result(tune_controller, trial, result)
        metric, mode = self._metric_mode
        epoch, value = result.get("training_iteration"), result.get(metric or "")
        if not getattr(self, "_protect", False) or epoch not in getattr(self, "_rung_epochs", ()) or value is None:
            return decision
        key = (self.group_of(trial), self.family_of(trial), int(epoch))
        best = self._family_best.get(key)
        if best is None or (value <= best if mode != "max" else value >= best):
            self._family_best[key] = value
            if decision == TrialScheduler.STOP:
                self._protected += 1
                return TrialScheduler.CONTINUE
        return decision

    def debug_string(self) -> str:
        return super().debug_string() + f"; {getattr(self, '_protected', 0)} kept as their family's best at a rung"

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as fh:
            pickle.dump(self.__dict__, fh)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as fh:
            self.__dict__.update(pickle.load(fh))
