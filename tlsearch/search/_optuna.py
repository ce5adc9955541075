"""Optuna pieces of the runner (imported lazily: they import Ray and Optuna): a searcher that survives a
replay after a driver crash, records each Ray trial id and never pays twice for one configuration, and a
sampler that spreads the FT size evenly."""

from __future__ import annotations

import os
import time
from typing import Any, Sequence

from optuna.exceptions import UpdateFinishedTrialError
from optuna.samplers import BaseSampler, RandomSampler
from optuna.trial import TrialState
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from tlsearch.search import objectives
from tlsearch.search._compat import optuna_study, optuna_trials, rebind_study, searcher_seed, set_stored_user_attr
from tlsearch.search.experiment import (CUT_SHORT, FINAL_ATTR, IMPORTED_ATTR, NOTE_ATTR, ORPHANED, RAY_TRIAL_ATTR,
                                       REPLANNED_ATTR, REUSED_ATTR, TIME_BUDGET)
from tlsearch.search.objectives import PT_KEY_ATTR

JOURNAL_ENV = "TLSEARCH_OPTUNA_JOURNAL"  # the journal a restored searcher writes to (the resuming driver's)

TPE_TRIES = 3  # repeated suggestions answered from history before the next asks sample at random
MAX_TRIES = 12  # then the repeat runs (the space is exhausted, or nearly)


class ResumableOptunaSearch(OptunaSearch):
    """After a driver crash, Tune replays results from its last experiment snapshot, which can be older than
    the persistent Optuna journal: a trial the journal already closed is then told again. The journal is
    right, so such a replay is ignored instead of failing the resumed study. Every Optuna trial records the
    Ray trial id that ran it (user attribute ``ray_trial_id``), so the analysis joins the two exactly.

    Repeated suggestions: TPE often proposes a configuration that already finished (small discrete spaces:
    strategy x freeze x size). A trial's result is a function of its configuration (seeds come from the
    repeat index; bit for bit on CPU, within ~2 % on a GPU, where scatter-adds are not deterministic: a rerun
    would re-draw that noise at full cost), so such a suggestion is told the earlier trial's value at once
    (user attribute ``reused_from``: TPE sees the observation, no Ray trial runs) and the searcher asks
    again; after ``TPE_TRIES`` repeats in a row the next asks sample at random (the size cycle kept), after
    ``MAX_TRIES`` the repeat runs. Trials stopped early are not reused: a rerun may get further."""

    def __init__(self, *args: Any, max_trials: int | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._max_trials = max_trials

    def restore(self, checkpoint_path: str) -> None:
        """Tune's restore of the searcher's state; the study is then bound to this driver's journal
        (``JOURNAL_ENV``, set by the runner), not the one the pickle names."""
        super().restore(checkpoint_path)
        journal = os.environ.get(JOURNAL_ENV)
        if journal:
            from optuna.storages import JournalStorage
            from optuna.storages.journal import JournalFileBackend

            rebind_study(self, JournalStorage(JournalFileBackend(journal)))

    def _objectives(self) -> list[str] | None:
        """The objectives of a two-objective study (``metric`` is their list), else None."""
        return list(self.metric) if isinstance(self.metric, (list, tuple)) else None

    def _used(self) -> int:
        """Trials of the budget the journal shows as run or running, whichever driver ran them: after a driver
        crash Tune's snapshot can predate trials the journal closed, and Tune would plan them again. Not
        counted: answers from history, and trials a dead driver left running (Tune re-plans those)."""
        live = self._live_ids()
        return sum(1 for t in optuna_study(self).get_trials(deepcopy=False)
                   if RAY_TRIAL_ATTR in t.user_attrs and REUSED_ATTR not in t.user_attrs
                   and t.user_attrs.get(NOTE_ATTR) != ORPHANED
                   and (t.state != TrialState.RUNNING or t.user_attrs[RAY_TRIAL_ATTR] in live))

    def _live_ids(self) -> set[str | None]:
        """Ray trial ids of the trials this searcher (as restored) has running."""
        return {t.user_attrs.get(RAY_TRIAL_ATTR) for t in optuna_trials(self).values()}

    def _replan_orphans(self) -> None:
        """A trial a dead driver left running that the restored Tune does not know (it started after Tune's
        last snapshot) is planned again with the same configuration (Optuna's queue), so that the strategy
        cover and successive halving's bracket get that configuration back, not a new TPE draw. A trial the
        driver died while asking for (some parameters sampled, never given to Tune: no Ray trial, and not one
        this searcher asked) is closed as failed with the note CUT_SHORT: it holds no place in the cover."""
        study, live = optuna_study(self), self._live_ids()
        asked_here = {t.number for t in optuna_trials(self).values()}
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            ray_id = t.user_attrs.get(RAY_TRIAL_ATTR)
            if ray_id is None and t.number not in asked_here:
                set_stored_user_attr(study, t, NOTE_ATTR, CUT_SHORT)
                study.tell(t.number, state=TrialState.FAIL)
            elif ray_id is not None and ray_id not in live and REPLANNED_ATTR not in t.user_attrs:
                set_stored_user_attr(study, t, REPLANNED_ATTR, True)
                study.enqueue_trial(t.params, skip_if_exists=False)

    def suggest(self, trial_id: str) -> dict | str | None:
        if trial_id not in optuna_trials(self):
            self._replan_orphans()
        budget = getattr(self, "_max_trials", None)  # None in a searcher pickled by an older tlsearch
        if budget is not None and trial_id not in optuna_trials(self) and self._used() >= budget:
            return Searcher.FINISHED
        for attempt in range(MAX_TRIES):
            config = self._ask(trial_id, explore=attempt >= TPE_TRIES)
            ot_trial = optuna_trials(self).get(trial_id)
            if ot_trial is None or not isinstance(config, dict):
                return config
            twin = self._finished_twin(ot_trial) if attempt < MAX_TRIES - 1 else None
            if twin is None:
                ot_trial.set_user_attr(RAY_TRIAL_ATTR, trial_id)
                return config
            ot_trial.set_user_attr(REUSED_ATTR, twin.number)
            optuna_study(self).tell(ot_trial, twin.values)
            del optuna_trials(self)[trial_id]
        return None  # unreachable: the last attempt always returns

    def _ask(self, trial_id: str, explore: bool) -> dict | None:
        if not explore:
            return super().suggest(trial_id)
        sampler = optuna_study(self).sampler
        n = len(optuna_study(self).get_trials(deepcopy=False))
        rnd = RandomSampler(seed=None if searcher_seed(self) is None else searcher_seed(self) * 7919 + n)
        optuna_study(self).sampler = sampler.with_base(rnd) if isinstance(sampler, CycleSampler) else rnd
        try:
            return super().suggest(trial_id)
        finally:
            optuna_study(self).sampler = sampler

    def _finished_twin(self, ot_trial: Any) -> Any:
        params = ot_trial.params
        for t in optuna_study(self).get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            if t.user_attrs.get(FINAL_ATTR) and REUSED_ATTR not in t.user_attrs and t.params == params:
                return t
        return None

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        try:
            if self._objectives() and result.get("pt_key"):  # the PT model this trial shares (objectives.py)
                ot_trial = optuna_trials(self).get(trial_id)
                if ot_trial is not None and PT_KEY_ATTR not in ot_trial.user_attrs:
                    ot_trial.set_user_attr(PT_KEY_ATTR, result["pt_key"])
            super().on_trial_result(trial_id, result)
        except UpdateFinishedTrialError:
            pass

    def _with_cost(self, ot_trial: Any, result: dict) -> dict:
        """A two-objective study's final result with the trial's cost: its FT seconds plus its share of its PT
        model's seconds, divided among the trials of the study that have used that model so far."""
        key = result.get("pt_key") or None
        n = 0
        if key:
            n = sum(1 for t in optuna_study(self).get_trials(deepcopy=False)
                    if t.user_attrs.get(PT_KEY_ATTR) == key and REUSED_ATTR not in t.user_attrs)
            n = max(n, 1) if ot_trial.user_attrs.get(PT_KEY_ATTR) == key else n + 1
        return {**result, "cost": objectives.cost_of(result, n)}

    budget_deadline: float | None = None  # set by the runner when budget.time_budget_s is

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        # Ray tells an errored trial COMPLETE with its last value; a trial that raised or diverged is a FAIL
        # (TPE must not learn from it as if it had finished, and the report must list it as failed)
        try:
            ot_trial = optuna_trials(self).get(trial_id)
            deadline = getattr(self, "budget_deadline", None)
            if (ot_trial is not None and not error and not (result or {}).get("final") and deadline is not None
                    and time.time() >= deadline - 2.0):  # Tune ended it when the study's time budget ran out
                ot_trial.set_user_attr(NOTE_ATTR, TIME_BUDGET)
                optuna_study(self).tell(ot_trial, state=TrialState.PRUNED)
                del optuna_trials(self)[trial_id]
                return
            if ot_trial is not None and not error and result and result.get("final"):
                ot_trial.set_user_attr(FINAL_ATTR, True)
                if self._objectives():
                    result = self._with_cost(ot_trial, result)
            elif ot_trial is not None and not error and self._objectives():
                # stopped early by the scheduler: no final validation MAE and no final cost (a partial cost
                # would put a cheap, unfinished trial on the Pareto front)
                optuna_study(self).tell(ot_trial, state=TrialState.PRUNED)
                del optuna_trials(self)[trial_id]
                return
            super().on_trial_complete(trial_id, None if error else result, error)
        except UpdateFinishedTrialError:
            optuna_trials(self).pop(trial_id, None)


class CycleSampler(BaseSampler):
    """``base`` (TPE) for every parameter except the study's conditions (``conditions.py``: the FT size, and the
    target in a study with several), which cycle through ``choices`` in the order trials were asked (repeated
    suggestions answered from history do not count): the report compares at each condition, so every one gets
    its share of trials instead of TPE drifting to the one with the lowest (incomparable) validation error.
    ``choices`` are values of the parameter ``name``, or (``name`` None) dicts of parameter values, one per
    condition. With ``cover`` the first rounds of each condition take the given values in turn, either
    ``(param, values)`` (the strategy families: scratch, PT->FT, MPT) or a list of ``{param: value}`` dicts
    (every strategy x freeze combination), or one such list per condition (their parameter names can differ by
    target), so each is tried at every condition before TPE chooses: the report's per-family bests and its
    gain over scratch need a trial of each, and a small budget would otherwise leave one untried."""

    def __init__(self, base: BaseSampler, name: str | None, choices: Sequence[Any],
                 cover: tuple[str, Sequence[Any]] | Sequence[Any] | None = None) -> None:
        self._base, self._name, self._choices = base, name, list(choices)
        per_condition = bool(cover) and isinstance(cover, list) and all(isinstance(c, list) for c in cover)
        self._cover = None if per_condition else _cover_items(cover)
        self._covers = [_cover_items(c) for c in cover] if per_condition else None

    def with_base(self, base: BaseSampler) -> CycleSampler:
        covers = getattr(self, "_covers", None)
        return CycleSampler(base, self._name, self._choices, [c or [] for c in covers] if covers else self._items(0))

    def _conditions(self) -> list[dict[str, Any]]:
        """Each condition as parameter values (a sampler pickled by an older tlsearch cycles ``_name`` only)."""
        return [c if self._name is None else {self._name: c} for c in self._choices]

    def _items(self, condition: int) -> list[dict[str, Any]] | None:
        covers = getattr(self, "_covers", None)  # None in a sampler pickled by an older tlsearch
        if covers is not None:
            return covers[condition]
        return _cover_items(self._cover)  # older pickles hold (param, values)

    @staticmethod
    def _slot(study: Any, trial: Any) -> int:
        """Trials asked before this one, without answers from history, orphans planned again (their
        replacement holds their slot), trials imported from earlier studies (warm start: never asked) and
        trials whose ask a driver crash cut short (never run: their cover item would go untried)."""
        return sum(1 for t in study.get_trials(deepcopy=False)
                   if t.number < trial.number and REUSED_ATTR not in t.user_attrs
                   and REPLANNED_ATTR not in t.user_attrs and IMPORTED_ATTR not in t.user_attrs
                   and t.user_attrs.get(NOTE_ATTR) != CUT_SHORT)

    def _condition(self, study: Any, trial: Any) -> tuple[int, dict[str, Any]]:
        conds = self._conditions()
        i = self._slot(study, trial) % len(conds)
        return i, conds[i]

    def _covered(self, study: Any, trial: Any) -> dict[str, Any] | None:
        """The cover values this trial must take, or None once its condition has had every item. An item a
        trial imported from an earlier study (warm start) already covers at this condition is not asked again."""
        i, cond = self._condition(study, trial)
        items = self._items(i)
        if items is None:
            return None
        done = [t.params for t in study.get_trials(deepcopy=False) if IMPORTED_ATTR in t.user_attrs]
        # a key the imported trial lacks is one this space fixes (not sampled): it matches
        items = [it for it in items if not any(all(p.get(k, v) == v for k, v in {**cond, **it}.items()) for p in done)]
        rnd = self._slot(study, trial) // len(self._conditions())
        return items[rnd] if rnd < len(items) else None

    def infer_relative_search_space(self, study: Any, trial: Any) -> dict[str, Any]:
        space = self._base.infer_relative_search_space(study, trial)
        for param in {k for c in self._conditions() for k in c} | set(self._covered(study, trial) or {}):
            space.pop(param, None)
        return space

    def sample_relative(self, study: Any, trial: Any, search_space: dict[str, Any]) -> dict[str, Any]:
        return self._base.sample_relative(study, trial, search_space)

    def sample_independent(self, study: Any, trial: Any, param_name: str, param_distribution: Any) -> Any:
        _, condition = self._condition(study, trial)
        if param_name in condition:
            return condition[param_name]
        covered = self._covered(study, trial) or {}
        if param_name in covered:
            return covered[param_name]
        return self._base.sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study: Any, trial: Any) -> None:
        self._base.before_trial(study, trial)

    def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
        self._base.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self._base.reseed_rng()


def _cover_items(cover: Any) -> list[dict[str, Any]] | None:
    if isinstance(cover, tuple) and len(cover) == 2 and isinstance(cover[0], str):
        cover = [{cover[0]: v} for v in cover[1]]
    return [dict(c) for c in cover] if cover and len(cover) > 1 else None
