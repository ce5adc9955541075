"""ASHA per FT size (imported lazily: it imports Ray).

The FT size is a condition of the study, not a knob to optimise: a trial on 100 structures has a higher
validation MAE than one on 800 whatever its strategy, so one ASHA over all trials would stop every
small-size trial at its first rung and the report would have nothing to say about small data. Each FT size
gets its own ASHA (its own rungs and cut-offs); trials compete only with trials of the same size.

Fair to transfer: within a size, the best trial of each strategy family (scratch, PT->FT per source, MPT per
property set) at a rung goes on even where ASHA would stop it, so at least one trial of every family runs to
the end. A first-epochs ranking must not drop a whole family: a pre-trained body with a fresh head can start
behind scratch and finish ahead of it, and the report's gain over scratch needs a finished trial of each.
"""

from __future__ import annotations

import pickle
from typing import Any

from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler

from tlsearch.search._compat import asha_knows, asha_rungs, set_asha_rungs
from tlsearch.search.space import family_key


class GroupedASHA(FIFOScheduler):
    def __init__(self, group_key: str, default_group: Any, max_t: int, grace_period: int,
                 reduction_factor: float, last_epoch: int, protect_families: bool = True) -> None:
        super().__init__()
        self._group_key, self._default = group_key, default_group
        self._asha_args = {"time_attr": "training_iteration", "max_t": max_t, "grace_period": grace_period,
                           "reduction_factor": reduction_factor}
        self._last_epoch = last_epoch
        self._groups: dict[str, ASHAScheduler] = {}
        self._of_trial: dict[str, str] = {}
        self._metric_mode: tuple[str | None, str | None] = (None, None)
        self._protect = protect_families
        self._family_best: dict[tuple[str, str, int], float] = {}  # (size, family, rung epoch) -> best value
        self._protected = 0

    def _new(self) -> ASHAScheduler:
        s = ASHAScheduler(**self._asha_args)
        # a finished trial reports its summary at max_t = last epoch + 1: no rung may sit on the last epoch
        # itself (it would cut a finished trial just before its summary)
        set_asha_rungs(s, [[(m, r) for m, r in rungs if m < self._last_epoch] for rungs in asha_rungs(s)])
        self._rung_epochs = {m for rungs in asha_rungs(s) for m, _ in rungs}  # the same in every ASHA
        metric, mode = self._metric_mode
        if metric or mode:
            s.set_search_properties(metric, mode)
        return s

    def group_of(self, trial: Any) -> str:
        return str(trial.config.get(self._group_key, self._default))

    def _sched(self, trial: Any) -> ASHAScheduler:
        key = self._of_trial.get(trial.trial_id) or self.group_of(trial)
        if key not in self._groups:
            self._groups[key] = self._new()
        return self._groups[key]

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        self._metric_mode = (metric, mode)
        for s in self._groups.values():
            s.set_search_properties(metric, mode, **spec)
        return super().set_search_properties(metric, mode, **spec)

    def on_trial_add(self, tune_controller: Any, trial: Any) -> None:
        self._of_trial[trial.trial_id] = self.group_of(trial)
        self._sched(trial).on_trial_add(tune_controller, trial)

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        s = self._sched(trial)
        if not asha_knows(s, trial.trial_id):  # added before a restore: place it now
            s.on_trial_add(tune_controller, trial)
        decision = s.on_trial_result(tune_controller, trial, result)
        return self._family_rule(s, trial, result, decision)

    def _family_rule(self, s: ASHAScheduler, trial: Any, result: dict, decision: str) -> str:
        """The trial that is its family's best so far at this rung continues, whatever ASHA decided."""
        metric, mode = self._metric_mode
        epoch, value = result.get("training_iteration"), result.get(metric or "")
        if not getattr(self, "_protect", False) or epoch not in getattr(self, "_rung_epochs", ()) or value is None:
            return decision
        key = (self.group_of(trial), family_key(trial.config), int(epoch))
        best = self._family_best.get(key)
        if best is None or (value <= best if mode != "max" else value >= best):
            self._family_best[key] = value
            if decision == TrialScheduler.STOP:
                self._protected += 1
                return TrialScheduler.CONTINUE
        return decision

    def on_trial_complete(self, tune_controller: Any, trial: Any, result: dict) -> None:
        s = self._sched(trial)
        if asha_knows(s, trial.trial_id):
            s.on_trial_complete(tune_controller, trial, result)

    def on_trial_remove(self, tune_controller: Any, trial: Any) -> None:
        s = self._sched(trial)
        if asha_knows(s, trial.trial_id):
            s.on_trial_remove(tune_controller, trial)

    def on_trial_error(self, tune_controller: Any, trial: Any) -> None:
        self.on_trial_remove(tune_controller, trial)

    def stopped(self) -> dict[str, int]:
        return {k: s._num_stopped for k, s in self._groups.items()}

    def debug_string(self) -> str:
        return ("ASHA per " + self._group_key + ": " + ", ".join(f"{k}: {n} stopped" for k, n in self.stopped().items())
                + f"; {getattr(self, '_protected', 0)} kept as their family's best at a rung")

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as fh:
            pickle.dump(self.__dict__, fh)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as fh:
            self.__dict__.update(pickle.load(fh))

