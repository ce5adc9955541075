"""Optuna pieces of the runner (imported lazily: they import Ray and Optuna): a searcher that survives a
replay after a driver crash and records each Ray trial id, and a sampler that spreads the FT size evenly."""

from __future__ import annotations

from typing import Any, Sequence

from optuna.exceptions import UpdateFinishedTrialError
from optuna.samplers import BaseSampler
from ray.tune.search.optuna import OptunaSearch

from tlsearch.search.experiment import RAY_TRIAL_ATTR


class ResumableOptunaSearch(OptunaSearch):
    """After a driver crash, Tune replays results from its last experiment snapshot, which can be older than
    the persistent Optuna journal: a trial the journal already closed is then told again. The journal is
    right, so such a replay is ignored instead of failing the resumed study. Every Optuna trial records the
    Ray trial id that ran it (user attribute ``ray_trial_id``), so the analysis joins the two exactly."""

    def suggest(self, trial_id: str) -> dict | None:
        config = super().suggest(trial_id)
        ot_trial = self._ot_trials.get(trial_id)
        if ot_trial is not None and isinstance(config, dict):
            ot_trial.set_user_attr(RAY_TRIAL_ATTR, trial_id)
        return config

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        try:
            super().on_trial_result(trial_id, result)
        except UpdateFinishedTrialError:
            pass

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        # Ray tells an errored trial COMPLETE with its last value; a trial that raised or diverged is a FAIL
        # (TPE must not learn from it as if it had finished, and the report must list it as failed)
        try:
            super().on_trial_complete(trial_id, None if error else result, error)
        except UpdateFinishedTrialError:
            self._ot_trials.pop(trial_id, None)


class CycleSampler(BaseSampler):
    """``base`` (TPE) for every parameter except the condition ``name``, which cycles through ``choices`` by
    trial number: the FT size is what the report compares at, so every size gets its share of trials
    instead of TPE drifting to the size with the lowest (incomparable) validation error."""

    def __init__(self, base: BaseSampler, name: str, choices: Sequence[Any]) -> None:
        self._base, self._name, self._choices = base, name, list(choices)

    def infer_relative_search_space(self, study: Any, trial: Any) -> dict[str, Any]:
        space = self._base.infer_relative_search_space(study, trial)
        space.pop(self._name, None)
        return space

    def sample_relative(self, study: Any, trial: Any, search_space: dict[str, Any]) -> dict[str, Any]:
        return self._base.sample_relative(study, trial, search_space)

    def sample_independent(self, study: Any, trial: Any, param_name: str, param_distribution: Any) -> Any:
        if param_name == self._name:
            choices = getattr(param_distribution, "choices", self._choices)
            return choices[trial.number % len(choices)]
        return self._base.sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study: Any, trial: Any) -> None:
        self._base.before_trial(study, trial)

    def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
        self._base.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self._base.reseed_rng()
