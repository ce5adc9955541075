"""Synchronous successive halving per FT size (imported lazily: it imports Ray).

ASHA decides at a rung from the trials that reached it first: the first trial at every rung goes on, and
in a small discrete space (strategy x freeze: 11 configurations per size) the early arrivals run to the end
while a later, better configuration may be cut. Synchronous successive halving waits for the whole bracket:
a trial that reaches a rung pauses (its checkpoint at that epoch is kept, its CPU/GPU freed for the next
trial), and once every trial of the bracket is there the best ``1/eta`` by validation MAE so far go on and
the rest stop. "So far" is the best epoch's value, because that is what a trial delivers (the trainer keeps
its best epoch). Rungs sit at ``grace_period * eta**i`` epochs of the first repeat, below the last epoch;
the survivors of the last rung run every repeat. One bracket per FT size, sized to that size's share of the
trial budget (trials of different sizes have incomparable validation errors).

The scheduler also keeps the number of running trials at ``max_concurrent``: paused trials still count as
live for the searcher's concurrency limit, so the runner lets the searcher run ahead by one bracket and this
scheduler starts at most ``max_concurrent`` trials at a time.
"""

from __future__ import annotations

import math
import pickle
from typing import Any

from ray.tune.experiment import Trial
from ray.tune.schedulers import FIFOScheduler, TrialScheduler


def rungs(grace_period: int, eta: float, max_epochs: int) -> list[int]:
    """Rung epochs: grace_period * eta**i below the last epoch (a finished trial's summary comes after it)."""
    out, e = [], float(grace_period)
    while round(e) < max_epochs:
        if not out or round(e) > out[-1]:
            out.append(round(e))
        e *= eta
    return out


def quotas(sizes: list[Any], trials: int) -> dict[str, int]:
    """Each FT size's share of the trial budget, as the FT-size cycle hands them out (first sizes first)."""
    n = len(sizes)
    return {str(s): trials // n + (1 if j < trials % n else 0) for j, s in enumerate(sizes)}


class _Bracket:
    def __init__(self, capacity: int, rung_epochs: list[int], eta: float) -> None:
        self.capacity, self.rungs, self.eta = capacity, list(rung_epochs), eta
        self.members: list[str] = []
        self.alive: set[str] = set()
        self.best: dict[str, float] = {}  # best validation MAE so far
        self.at_rung: dict[str, float] = {}  # trials waiting at the current rung, with their value there
        self.k = 0  # current rung
        self.go: set[str] = set()  # paused trials cleared to go on
        self.stopped = 0

    def add(self, trial_id: str) -> None:
        self.members.append(trial_id)
        self.alive.add(trial_id)

    def rung(self) -> int | None:
        return self.rungs[self.k] if self.k < len(self.rungs) else None

    def full(self) -> bool:
        return len(self.members) >= self.capacity

    def ready(self) -> bool:
        return self.rung() is not None and bool(self.alive) and all(t in self.at_rung for t in self.alive)

    def halve(self) -> tuple[list[str], list[str]]:
        ranked = sorted(self.alive, key=lambda t: (self.at_rung[t], self.members.index(t)))
        n_keep = max(1, math.ceil(len(ranked) / self.eta))
        keep, drop = ranked[:n_keep], ranked[n_keep:]
        self.alive, self.at_rung, self.k = set(keep), {}, self.k + 1
        self.stopped += len(drop)
        return keep, drop

    def remove(self, trial_id: str) -> None:
        self.alive.discard(trial_id)
        self.at_rung.pop(trial_id, None)
        self.go.discard(trial_id)


class GroupedSH(FIFOScheduler):
    def __init__(self, group_key: str, default_group: Any, quotas: dict[str, int], rung_epochs: list[int],
                 eta: float, max_concurrent: int) -> None:
        super().__init__()
        self._group_key, self._default = group_key, default_group
        self._quotas, self._rungs, self._eta = dict(quotas), list(rung_epochs), eta
        self._max_concurrent = max_concurrent
        self._brackets: dict[str, list[_Bracket]] = {}
        self._of_trial: dict[str, _Bracket] = {}
        self._rank_by: str = "val_mae"
        self._synced: set[str] = set()

    def group_of(self, trial: Any) -> str:
        return str(trial.config.get(self._group_key, self._default))

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        if mode not in (None, "min"):
            raise ValueError(f"GroupedSH ranks by a validation error: mode must be 'min', not {mode!r}")
        self._rank_by = metric or self._rank_by
        return super().set_search_properties(metric, mode, **spec)

    def _bracket(self, trial: Any) -> _Bracket:
        b = self._of_trial.get(trial.trial_id)
        if b is None:
            group = self.group_of(trial)
            brackets = self._brackets.setdefault(group, [])
            if not brackets or brackets[-1].full():
                brackets.append(_Bracket(max(1, self._quotas.get(group, 1)), self._rungs, self._eta))
            b = self._of_trial[trial.trial_id] = brackets[-1]
            b.add(trial.trial_id)
        return b

    def on_trial_add(self, tune_controller: Any, trial: Any) -> None:
        self._bracket(trial)

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        b = self._bracket(trial)
        b.go.discard(trial.trial_id)
        self._synced.discard(trial.trial_id)
        if result.get("final") or trial.trial_id not in b.alive:
            return TrialScheduler.CONTINUE
        value = result.get(self._rank_by)
        value = float(value) if isinstance(value, (int, float)) and math.isfinite(value) else math.inf
        b.best[trial.trial_id] = min(b.best.get(trial.trial_id, math.inf), value)
        rung = b.rung()
        epoch = result.get("epoch", result.get("training_iteration", 0))
        if rung is None or epoch < rung:
            return TrialScheduler.CONTINUE
        b.at_rung[trial.trial_id] = b.best[trial.trial_id]
        return self._process(tune_controller, b, trial) or TrialScheduler.PAUSE

    def _process(self, tune_controller: Any, b: _Bracket, current: Any = None, force: bool = False) -> str | None:
        """Halve the bracket if every live trial is at its rung (and the bracket is full, or ``force``); the
        action for ``current`` (the trial whose result triggered this), or None to pause it."""
        if not (b.ready() and (b.full() or force)):
            return None
        keep, drop = b.halve()
        action = None
        by_id = {t.trial_id: t for t in tune_controller.get_trials()}
        for tid in drop:
            t = by_id.get(tid)
            if current is not None and tid == current.trial_id:
                action = TrialScheduler.STOP
            elif t is not None and (t.status in (Trial.PAUSED, Trial.PENDING) or getattr(t, "is_saving", False)):
                tune_controller.stop_trial(t)
        for tid in keep:
            if current is not None and tid == current.trial_id:
                action = TrialScheduler.CONTINUE
            else:
                b.go.add(tid)
        return action

    def _remove(self, tune_controller: Any, trial: Any) -> None:
        b = self._of_trial.get(trial.trial_id)
        if b is None:
            return
        b.remove(trial.trial_id)
        self._process(tune_controller, b)

    def on_trial_complete(self, tune_controller: Any, trial: Any, result: dict) -> None:
        self._remove(tune_controller, trial)

    def on_trial_remove(self, tune_controller: Any, trial: Any) -> None:
        self._remove(tune_controller, trial)

    def on_trial_error(self, tune_controller: Any, trial: Any) -> None:
        self._remove(tune_controller, trial)

    def _waiting(self, trial: Any) -> bool:
        b = self._of_trial.get(trial.trial_id)
        return b is not None and trial.trial_id in b.at_rung

    def choose_trial_to_run(self, tune_controller: Any) -> Any:
        trials = tune_controller.get_trials()
        running = sum(1 for t in trials if t.status == Trial.RUNNING and not getattr(t, "is_saving", False))
        if running >= self._max_concurrent:
            return None
        for t in trials:  # survivors first: they finish the bracket
            b = self._of_trial.get(t.trial_id)
            if t.status in (Trial.PAUSED, Trial.PENDING) and b is not None and t.trial_id in b.go:
                return self._resumable(tune_controller, t)
        for t in trials:
            if t.status == Trial.PENDING and not self._waiting(t):
                return t
        if running == 0 and not any(t.status == Trial.PENDING and not self._waiting(t) for t in trials):
            # nothing runs and the searcher has nothing more: a bracket that will not fill (the budget ran
            # out, trials failed) is halved with what it has
            for brackets in self._brackets.values():
                for b in brackets:
                    if b.ready() and not b.full():
                        self._process(tune_controller, b, force=True)
                        for t in trials:
                            if t.status in (Trial.PAUSED, Trial.PENDING) and t.trial_id in b.go:
                                return self._resumable(tune_controller, t)
        return None

    def _resumable(self, tune_controller: Any, trial: Any) -> Any:
        """A trial about to resume restores its result.json from the experiment directory, which Tune syncs
        from its staging copy only every few seconds: without a sync first, the epochs it reported since the
        last one would be lost from its history. Once per resume."""
        if trial.trial_id not in self._synced:
            tune_controller.checkpoint(force=True, wait=True)
            self._synced.add(trial.trial_id)
        return trial

    def stopped(self) -> dict[str, int]:
        return {k: sum(b.stopped for b in bs) for k, bs in self._brackets.items()}

    def debug_string(self) -> str:
        return "successive halving per " + self._group_key + ": " + ", ".join(
            f"{k}: {n} stopped" for k, n in self.stopped().items())

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as fh:
            pickle.dump(self.__dict__, fh)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as fh:
            self.__dict__.update(pickle.load(fh))
        self._synced = set()  # a restored driver syncs before every resume again
