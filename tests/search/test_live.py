"""The live line follows the final table's rule: finished trials only, per FT size, no ETA once nothing is left."""

from __future__ import annotations

import io
from types import SimpleNamespace

from rich.console import Console

from tlsearch.search.live import LiveView


def _trial(tid: str, size: int) -> SimpleNamespace:
    return SimpleNamespace(trial_id=tid, config={"ft_size": size}, path="/tmp")


def test_best_is_a_finished_trial_per_size_and_eta_goes_once_nothing_runs():
    view = LiveView(total=3, metric="val_mae", console=Console(file=io.StringIO()))
    a, b, c = _trial("a", 100), _trial("b", 800), _trial("c", 800)
    for t in (a, b):
        view.on_trial_start(0, [], t)
    view.on_trial_result(0, [], b, {"val_mae": 0.1515, "epoch": 1})  # an unfinished trial's epoch: not "best"
    line = view._render().plain
    assert "best finished val MAE -" in line and "0.1515" not in line and "ETA ?" in line, line
    view.on_trial_result(0, [], a, {"val_mae": 0.41, "final": True})
    view.on_trial_complete(0, [], a)
    view.on_trial_result(0, [], b, {"val_mae": 0.2807, "final": True})
    view.on_trial_complete(0, [], b)
    view.on_trial_start(0, [], c)
    line = view._render().plain
    assert "best finished val MAE per FT size 100: 0.41, 800: 0.2807" in line and "ETA" in line, line
    view.on_trial_result(0, [], c, {"val_mae": 0.35, "final": True})
    view.on_trial_complete(0, [], c)
    line = view._render().plain
    assert "800: 0.2807" in line and "ETA" not in line and "trials 3/3" in line, line
