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

Concurrency: Ray's ConcurrencyLimiter counts a paused trial as live, so a bracket would stall once
``max_concurrent`` trials wait at a rung; ``PauseAwareLimiter`` leaves out the trials waiting at a rung, and
the scheduler resumes a paused trial only while fewer than ``max_concurrent`` run or are about to.

Tune does not keep a scheduler's state across a driver crash (``resume`` starts from the scheduler as it was
created), so the brackets are written to ``state_path`` (JSON, in the experiment directory) whenever they
change and read back on the first call after a resume: trials waiting at a rung keep waiting, trials the
bracket had stopped (shown as unfinished by an older Tune snapshot) are stopped again, and a member started
after Tune's last snapshot keeps its place for the trial the searcher plans again with its configuration.
Tune's snapshot also holds the decisions of checkpoint saves in flight, and a resumed Tune applies them: a
trial the dead driver was pausing at a rung is paused again after its next save, although its bracket may
have cleared it since. Such a pause is not the bracket's, and the trial runs again.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any

from ray.tune.experiment import Trial
from ray.tune.schedulers import TrialScheduler
from ray.tune.search import ConcurrencyLimiter, Searcher

from tlsearch.search._compat import stop_trial
from tlsearch.search._grouped import GroupedScheduler
from tlsearch.search._sh_bracket import _Bracket, config_key, quotas, rungs

__all__ = ["GroupedSH", "PauseAwareLimiter", "quotas", "rungs"]


class GroupedSH(GroupedScheduler):
    """Groups by FT size like every scheduler here, but keeps brackets of its own per group instead of one Ray
    scheduler (a bracket decides for all its trials at once, and pauses them): it overrides every callback."""
    label = "successive halving"

    def __init__(self, group_key: Any, default_group: Any, quotas: dict[str, int], rung_epochs: list[int],
                 eta: float, max_concurrent: int, state_path: str | None = None,
                 protect_families: bool = False) -> None:
        super().__init__(group_key, default_group)
        self._quotas, self._rungs, self._eta = dict(quotas), list(rung_epochs), eta
        self._max_concurrent = max_concurrent
        self._protect = protect_families
        self._brackets: dict[str, list[_Bracket]] = {}
        self._of_trial: dict[str, _Bracket] = {}  # type: ignore[assignment]  # trial -> its bracket
        self._rank_by: str = "val_mae"
        self._synced: set[str] = set()
        self._state_path, self._loaded, self._reconciled = state_path, False, True

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        if mode not in (None, "min"):
            raise ValueError(f"GroupedSH ranks by a validation error: mode must be 'min', not {mode!r}")
        self._rank_by = metric or self._rank_by
        return super().set_search_properties(metric, mode, **spec)

    def _bracket(self, trial: Any) -> _Bracket:
        b = self._of_trial.get(trial.trial_id)
        if b is None:
            group, key = self.group_of(trial), config_key(trial.config)
            brackets = self._brackets.setdefault(group, [])
            b = next((c for c in brackets if c.adopt(key, trial.trial_id)), None)  # a replanned orphan's place
            if b is None:
                if not brackets or brackets[-1].full():
                    brackets.append(_Bracket(max(1, self._quotas.get(group, 1)), self._rungs, self._eta,
                                             getattr(self, "_protect", False)))
                b = brackets[-1]
                b.add(trial.trial_id)
                b.families[trial.trial_id] = self.family_of(trial)
                b.configs[trial.trial_id] = key
            self._of_trial[trial.trial_id] = b
        return b

    def relocate(self, state_path: str) -> None:
        """Where the state file is now (a resumed experiment directory may have moved)."""
        self._state_path, self._loaded, self._reconciled = state_path, False, True

    def _ensure_loaded(self) -> None:
        if not self._loaded:
            self._loaded = True
            if self._state_path and os.path.exists(self._state_path):
                self.restore(self._state_path)

    def _persist(self) -> None:
        if self._state_path:
            self.save(self._state_path + ".tmp")
            os.replace(self._state_path + ".tmp", self._state_path)

    def _reconcile(self, tune_controller: Any) -> None:
        """After a resume: a member Tune does not know (it started after Tune's last snapshot) is an orphan; the
        searcher plans its configuration again and the new trial takes its place in the bracket (``_bracket``),
        so a bracket that had halved stays the bracket it was: a place it had dropped stays dropped."""
        if self._reconciled:
            return
        self._reconciled = True
        known = {t.trial_id for t in tune_controller.get_trials()}
        for bs in self._brackets.values():
            for b in bs:
                for tid in [m for m in b.members if m not in known and m not in b.orphans]:
                    b.orphan(tid)
                    self._of_trial.pop(tid, None)

    def on_trial_add(self, tune_controller: Any, trial: Any) -> None:
        self._ensure_loaded()
        known = trial.trial_id in self._of_trial
        if not known and trial.status not in (Trial.TERMINATED, Trial.ERROR):
            self._reconcile(tune_controller)  # a new trial: Tune has added every restored one by now
        b = self._bracket(trial)
        if not known and trial.status in (Trial.TERMINATED, Trial.ERROR):  # ended before the state was written
            b.remove(trial.trial_id)
        self._persist()

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        self._ensure_loaded()
        b = self._bracket(trial)
        b.go.discard(trial.trial_id)
        self._synced.discard(trial.trial_id)
        if result.get("final") or trial.trial_id in b.done:
            return TrialScheduler.CONTINUE
        if trial.trial_id not in b.alive:  # its bracket stopped it (a resumed driver started it again)
            return TrialScheduler.STOP
        value = result.get(self._rank_by)
        value = float(value) if isinstance(value, (int, float)) and math.isfinite(value) else math.inf
        b.best[trial.trial_id] = min(b.best.get(trial.trial_id, math.inf), value)
        rung = b.rung()
        epoch = result.get("epoch", result.get("training_iteration", 0))
        if rung is None or epoch < rung:
            return TrialScheduler.CONTINUE
        b.at_rung[trial.trial_id] = b.best[trial.trial_id]
        action = self._process(tune_controller, b, trial) or TrialScheduler.PAUSE
        self._persist()
        return action

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
            elif t is not None and t.status in (Trial.PAUSED, Trial.PENDING, Trial.RUNNING):
                stop_trial(tune_controller, t)  # running: Tune started it after a resume, before its rung
        for tid in keep:
            if current is not None and tid == current.trial_id:
                action = TrialScheduler.CONTINUE
            else:
                b.go.add(tid)
        return action

    def _remove(self, tune_controller: Any, trial: Any) -> None:
        self._ensure_loaded()
        b = self._of_trial.get(trial.trial_id)
        if b is None:
            return
        b.remove(trial.trial_id)
        self._process(tune_controller, b)
        self._persist()

    def on_trial_complete(self, tune_controller: Any, trial: Any, result: dict) -> None:
        self._ensure_loaded()
        b = self._of_trial.get(trial.trial_id)
        if b is not None and trial.trial_id in b.alive:
            b.done.add(trial.trial_id)
        self._remove(tune_controller, trial)

    def on_trial_remove(self, tune_controller: Any, trial: Any) -> None:
        self._remove(tune_controller, trial)

    def on_trial_error(self, tune_controller: Any, trial: Any) -> None:
        self._remove(tune_controller, trial)

    def _waiting(self, trial: Any) -> bool:
        b = self._of_trial.get(trial.trial_id)
        return b is not None and trial.trial_id in b.at_rung

    def waiting_ids(self) -> set[str]:
        """Trials waiting at a rung for their bracket (they hold no CPU/GPU)."""
        self._ensure_loaded()
        return {t for bs in self._brackets.values() for b in bs for t in b.at_rung}

    def choose_trial_to_run(self, tune_controller: Any) -> Any:
        self._ensure_loaded()
        self._reconcile(tune_controller)
        trials = tune_controller.get_trials()
        for t in trials:
            b = self._of_trial.get(t.trial_id)
            if b is None or t.status not in (Trial.PENDING, Trial.PAUSED) or t.trial_id in b.done:
                continue
            if t.trial_id not in b.alive:  # after a resume: its bracket stopped it, an older snapshot did not know
                stop_trial(tune_controller, t)  # or a re-planned trial that took a dropped place, never started
            elif t.status == Trial.PAUSED and t.trial_id not in b.at_rung:
                # paused but not waiting at a rung: a pause that was not the bracket's (Tune applies the decisions
                # of saves its dead driver had in flight): the trial may go on
                b.go.add(t.trial_id)
        running = sum(1 for t in trials if t.status == Trial.RUNNING and not getattr(t, "is_saving", False))
        starting = sum(1 for t in trials if t.status == Trial.PENDING and not self._waiting(t))  # Tune starts them
        if running + starting >= self._max_concurrent:
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
            search = getattr(tune_controller, "search_alg", None)
            finished = search is None or search.is_finished()
            for brackets in self._brackets.values():
                for b in brackets:
                    # orphans whose configurations the searcher did not plan again once it has finished: no
                    # trial will take their places (until then a replan may still come: after a resume, every
                    # known member can be waiting at a rung before the searcher was asked)
                    abandoned = finished and b.abandon_orphans()
                    if b.ready() and (not b.full() or abandoned):
                        self._process(tune_controller, b, force=True)
                        self._persist()
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

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "w") as fh:
            json.dump({g: [b.to_dict() for b in bs] for g, bs in self._brackets.items()}, fh)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path) as fh:
            data = json.load(fh)
        self._brackets = {g: [_Bracket.from_dict(d) for d in bs] for g, bs in data.items()}
        self._of_trial = {t: b for bs in self._brackets.values() for b in bs for t in b.members}
        self._reconciled = False
        self._synced = set()  # a restored driver syncs before every resume again


class PauseAwareLimiter(ConcurrencyLimiter):
    """ConcurrencyLimiter that does not count trials waiting at a rung of ``scheduler`` (paused, no CPU/GPU):
    otherwise a bracket larger than ``max_concurrent`` would never fill."""

    def __init__(self, searcher: Searcher, max_concurrent: int, scheduler: GroupedSH) -> None:
        super().__init__(searcher, max_concurrent=max_concurrent)
        self._scheduler = scheduler

    def get_state(self) -> dict:  # the scheduler is the live one, never a copy from a saved state
        scheduler = self.__dict__.pop("_scheduler", None)
        try:
            return super().get_state()
        finally:
            self._scheduler = scheduler

    def set_state(self, state: dict) -> None:
        super().set_state({k: v for k, v in state.items() if k != "_scheduler"})

    def suggest(self, trial_id: str) -> dict | str | None:
        waiting = self._scheduler.waiting_ids() if getattr(self, "_scheduler", None) is not None else set()
        if len(self.live_trials - waiting) >= self.max_concurrent:
            return None
        suggestion = self.searcher.suggest(trial_id)
        if suggestion not in (None, Searcher.FINISHED):
            self.live_trials.add(trial_id)
            self.num_unfinished_live_trials += 1
        return suggestion
