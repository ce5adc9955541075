"""OptunaSearch that survives a replay after a driver crash (imported lazily: it imports Ray and Optuna)."""

from __future__ import annotations

from optuna.exceptions import UpdateFinishedTrialError
from ray.tune.search.optuna import OptunaSearch


class ResumableOptunaSearch(OptunaSearch):
    """After a driver crash, Tune replays results from its last experiment snapshot, which can be older than
    the persistent Optuna journal: a trial the journal already closed is then told again. The journal is
    right, so such a replay is ignored instead of failing the resumed study."""

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        try:
            super().on_trial_result(trial_id, result)
        except UpdateFinishedTrialError:
            pass

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        try:
            super().on_trial_complete(trial_id, result, error)
        except UpdateFinishedTrialError:
            self._ot_trials.pop(trial_id, None)
