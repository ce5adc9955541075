"""One scheduler per FT size: the base of tlsearch's schedulers (imported lazily: it imports Ray).

The FT size is a condition of the study, not a knob to optimise: a trial on 100 structures has a higher
validation MAE than one on 800 whatever its strategy, so one scheduler over all trials would stop every
small-size trial at its first decision and the report would have nothing to say about small data. Each FT
size gets its own scheduler (its own cut-offs, medians, brackets); trials compete only with trials of the
same size.

``GroupedScheduler`` puts a trial in its group (the config's ``group_key``, else ``default_group``; the group
is fixed when the trial is added), makes the group's Ray scheduler on first use (``new``: any factory of a
Ray ``TrialScheduler``, e.g. a ``functools.partial`` of ``MedianStoppingRule``) and counts the trials each
group stopped early. On top of the group's own rule:

- a trial's final summary (``final``: the mean over its repeats, one past the last epoch) is no decision;
- with ``decision_epochs``, results after the last of them are not passed on: no stop can cut a trial just
  before its summary, which is where its test metrics come from;
- a group's PAUSE becomes CONTINUE: the trainable checkpoints at the decision epochs of a scheduler that
  pauses (successive halving, ``_sh.py``, which keeps its own brackets), so a trial paused anywhere else
  would resume from an older checkpoint and train epochs twice.

Subclasses (``_scheduler.GroupedASHA``, ``_sh.GroupedSH``) override ``_make`` and ``_decide`` or the
callbacks themselves. Tune pickles the scheduler with the experiment (``tuner.pkl``) and ``tlsearch resume``
unpickles it: attributes added later are read with a default, so an older experiment still resumes.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from tlsearch.search.conditions import group_name
from tlsearch.search.dimensions import family_key


class GroupedScheduler(FIFOScheduler):
    label = "scheduler"  # what debug_string calls it

    def __init__(self, group_key: str | tuple[str, ...], default_group: Any,
                 new: Callable[[], TrialScheduler] | None = None,
                 decision_epochs: Iterable[int] | None = None, label: str | None = None) -> None:
        super().__init__()
        self._group_key, self._default = group_key, default_group
        self._new_group = new
        self._until = None if decision_epochs is None else max(decision_epochs, default=0)
        self._groups: dict[str, TrialScheduler] = {}
        self._of_trial: dict[str, str] = {}  # trial -> its group, fixed when it is added
        self._metric_mode: tuple[str | None, str | None] = (None, None)
        self._stops: dict[str, int] = {}
        if label:
            self.label = label

    # ---- groups ------------------------------------------------------------------------------------------
    def group_of(self, trial: Any) -> str:
        """The trial's condition (``conditions.group_name``): its FT size, and its target with several."""
        key, default = self._group_key, self._default
        if isinstance(key, tuple):
            return group_name(tuple(trial.config.get(k, d) for k, d in zip(key, default)))
        return group_name(trial.config.get(key, default))

    @staticmethod
    def family_of(trial: Any) -> str:
        """The trial's strategy family (scratch, PT->FT per source, MPT per property set)."""
        return family_key(trial.config)

    def _make(self) -> TrialScheduler:
        """A new group's scheduler, before the study's metric and mode are set on it."""
        new = getattr(self, "_new_group", None)
        if new is None:
            raise NotImplementedError(f"{type(self).__name__} needs `new` or its own _make()")
        return new()

    def _new(self) -> TrialScheduler:
        s = self._make()
        metric, mode = self._metric_mode
        if metric or mode:
            s.set_search_properties(metric, mode)
        return s

    def _key(self, trial: Any) -> str:
        return self._of_trial.get(trial.trial_id) or self.group_of(trial)

    def _sched(self, trial: Any) -> TrialScheduler:
        key = self._key(trial)
        if key not in self._groups:
            self._groups[key] = self._new()
        return self._groups[key]

    def _knows(self, s: TrialScheduler, trial: Any) -> bool:
        """Whether the group's scheduler has this trial (one added before a restore may be missing)."""
        return True

    # ---- Tune's callbacks --------------------------------------------------------------------------------
    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        self._metric_mode = (metric, mode)
        for s in self._groups.values():
            s.set_search_properties(metric, mode, **spec)
        return super().set_search_properties(metric, mode, **spec)

    def on_trial_add(self, tune_controller: Any, trial: Any) -> None:
        self._of_trial[trial.trial_id] = self.group_of(trial)
        self._sched(trial).on_trial_add(tune_controller, trial)

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        until = getattr(self, "_until", None)
        if result.get("final") or (until is not None and result.get("training_iteration", 0) > until):
            return TrialScheduler.CONTINUE
        s = self._sched(trial)
        if not self._knows(s, trial):
            s.on_trial_add(tune_controller, trial)
        decision = self._decide(s, tune_controller, trial, result)
        return self._count(trial, result, TrialScheduler.CONTINUE if decision == TrialScheduler.PAUSE else decision)

    def _decide(self, s: TrialScheduler, tune_controller: Any, trial: Any, result: dict) -> str:
        """The group's decision on a result (subclasses add rules of their own)."""
        return s.on_trial_result(tune_controller, trial, result)

    def _count(self, trial: Any, result: dict, decision: str) -> str:
        if decision == TrialScheduler.STOP and not result.get("final"):
            stops = self.__dict__.setdefault("_stops", {})
            stops[self._key(trial)] = stops.get(self._key(trial), 0) + 1
        return decision

    def on_trial_complete(self, tune_controller: Any, trial: Any, result: dict) -> None:
        s = self._sched(trial)
        # a trial that ended without a result (no training_iteration) gives its group nothing to compare
        if self._knows(s, trial) and result and "training_iteration" in result:
            s.on_trial_complete(tune_controller, trial, result)

    def on_trial_remove(self, tune_controller: Any, trial: Any) -> None:
        s = self._sched(trial)
        if self._knows(s, trial):
            s.on_trial_remove(tune_controller, trial)

    def on_trial_error(self, tune_controller: Any, trial: Any) -> None:
        self.on_trial_remove(tune_controller, trial)

    # ---- what it did -------------------------------------------------------------------------------------
    def stopped(self) -> dict[str, int]:
        """Trials each group stopped early (group -> count)."""
        stops = self.__dict__.get("_stops", {})
        return {k: stops.get(k, 0) for k in self._groups}

    def debug_string(self) -> str:
        keys = self._group_key if isinstance(self._group_key, tuple) else (self._group_key,)
        return f"{self.label} per {' and '.join(keys)}: " + ", ".join(
            f"{k}: {n} stopped" for k, n in self.stopped().items())
