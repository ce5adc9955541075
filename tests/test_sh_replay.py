"""benchmarks/sh_replay.py: the replay of successive halving on grid curves makes the scheduler's decisions
(rungs below the last epoch, best-so-far ranking, ceil(n/eta) kept, survivors run every repeat)."""

from __future__ import annotations

from benchmarks.sh_replay import family_reversals, replay_cell

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


def test_replay_with_the_family_rule_keeps_each_familys_best_to_the_end():
    epochs, repeats = 4, 2
    rows = [_row("scratch", [1, 0.9, 0.5, 0.3], 0.3),
            _row("PT->FT all_unfrozen", [2, 1.5, 0.6, 0.25], 0.25),   # slow start, best at the end
            _row("MPT 2b", [0.8, 0.7, 0.6, 0.35], 0.35)]
    assert rungs(1, 3, epochs) == [1, 3]
    # without the rule: rung 1 keeps ceil(3/3) = 1 (MPT 2b), which is picked
    assert replay_cell(rows, 1, 3, epochs, repeats)[0] == "MPT 2b"
    # with it: every family's best goes on at each rung, so the late PT->FT family finishes and wins
    label, spent = replay_cell(rows, 1, 3, epochs, repeats, protect=True)
    assert label == "PT->FT all_unfrozen"
    assert spent == 3 * 1 + 3 * 2 + 3 * (epochs * repeats - 3)


def test_family_reversals_count_pairs_ordered_differently_at_a_rung_than_at_the_end():
    rows = [_row("scratch", [1, 0.9, 0.5, 0.3], 0.3),
            _row("PT->FT 2b", [2, 1.5, 0.6, 0.25], 0.25),
            _row("PT->FT new_head", [3, 0.8, 0.7, 0.7], 0.7),   # the family's best at epoch 2 is this one
            _row("MPT 2b", [0.8, 0.7, 0.6, 0.35], 0.35)]
    grids = {"n": {"sizes": [100], 100: {"rows": rows}, "pt_epochs": 0}}
    lines = family_reversals(grids, [1, 4])
    # end: PT->FT 0.25 < scratch 0.3 < MPT 0.35; epoch 1: MPT < scratch < PT->FT (all 3 pairs reversed);
    # epoch 4 (the last): the same order as the end on these flat-repeat curves
    assert "REVERSED: MPT vs PT->FT; MPT vs scratch; PT->FT vs scratch" in lines[2]
    assert "REVERSED" not in lines[3]
    assert lines[-1] == "RATIO grid_rung_family_pairs_reversed_pct=50.0"
