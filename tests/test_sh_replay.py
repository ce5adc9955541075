"""benchmarks/sh_replay.py: the replay of successive halving on grid curves makes the scheduler's decisions
(rungs below the last epoch, best-so-far ranking, ceil(n/eta) kept, survivors run every repeat)."""

from __future__ import annotations

from benchmarks.sh_replay import replay_cell

from tlsearch.search._sh_bracket import rungs


def _row(label: str, curve: list[float], val: float) -> dict:
    return {"label": label, "curves": [curve, curve], "val": [val, val], "test": [val, val]}


def test_replay_screens_then_runs_the_survivors_and_counts_their_epochs():
    epochs, repeats = 10, 2
    rows = [_row("late_bloomer", [9, 9, 9, 1, 1, 1, 1, 1, 1, 1], 1.0),   # cut at rung 1: 9 there
            _row("overfits", [0.5, 5, 5, 5, 5, 5, 5, 5, 5, 5], 0.5),       # its best epoch stands: kept
            _row("steady", [3, 2, 2, 2, 2, 2, 2, 2, 2, 2], 2.0),
            _row("slow", [4, 4, 3.5, 3, 3, 3, 3, 3, 3, 3], 3.0)]
    assert rungs(1, 2, epochs) == [1, 2, 4, 8]
    label, spent = replay_cell(rows, 1, 2, epochs, repeats)
    # rung 1: 4 -> 2 (overfits 0.5, steady 3); rung 2: 2 -> 1 (overfits); one survivor: no more rungs
    assert label == "overfits"
    assert spent == 4 * 1 + 2 * 1 + 1 * (epochs * repeats - 2)


def test_replay_without_rungs_runs_everything():
    rows = [_row("a", [2.0] * 5, 2.0), _row("b", [1.0] * 5, 1.0)]
    assert replay_cell(rows, 5, 3, 5, 3) == ("b", 2 * 15)
