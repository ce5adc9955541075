"""Selection that knows its noise: paired bootstrap probability of being best, winner only when clear."""

import numpy as np
import pytest

from tlsearch.analysis._analyse import selection_sentence
from tlsearch.search.selection import CLEAR, cells, probability_best, verdict


def fam(name, per_fold, cost=None, folds=5):
    return {"family": name, "trial": hash(name) % 1000, "val_mae": float(np.mean(per_fold)), "cv_folds": folds,
            "val_mae_per_fold": list(per_fold), "val_mae_per_repeat": None, "cost": cost}


def draws(mean, noise, shared, seed):
    """10 cells (5 folds x 2 repeats): a shared per-cell difficulty (the pairing) plus the family's own noise."""
    return mean + shared + np.random.default_rng(seed).normal(0, noise, size=len(shared))


SHARED = np.random.default_rng(7).normal(0, 0.2, size=10)  # hard and easy folds: large, but the same for all


def test_a_clearly_better_family_is_named_even_when_folds_differ_more_than_families():
    """The pairing removes the fold-to-fold spread (0.2) that would swamp a 0.05 difference unpaired."""
    rows = [fam("MPT(a)", draws(0.30, 0.01, SHARED, 1)), fam("scratch", draws(0.35, 0.01, SHARED, 2))]
    v = verdict(rows)
    assert v["leader"] == "MPT(a)" and v["clear"] and v["p_best"]["MPT(a)"] >= CLEAR
    assert v["tied"] == ["MPT(a)"] and v["cells"] == 10 and v["unit"] == "fold x repeat"


def test_indistinguishable_families_are_a_tie_with_the_cheapest_named():
    rows = [fam("MPT(a)", draws(0.300, 0.03, SHARED, 3), cost=300.0),
            fam("PT->FT(b)", draws(0.301, 0.03, SHARED, 4), cost=200.0),
            fam("scratch", draws(0.60, 0.03, SHARED, 5), cost=20.0)]
    v = verdict(rows)
    assert not v["clear"]
    assert set(v["tied"]) == {"MPT(a)", "PT->FT(b)"}  # scratch is hopeless: never tied
    assert v["p_best"]["scratch"] == pytest.approx(0.0, abs=1e-3)
    assert v["cheapest"] == "PT->FT(b)"  # cheapest member of the tied set, not of all families
    assert sum(v["p_best"].values()) == pytest.approx(1.0)
    text = selection_sentence(v)
    assert "a tie" in text and "cheapest of them is PT->FT(b)" in text


def test_probabilities_follow_the_paired_differences():
    x = draws(0.3, 0.0, SHARED, 0)
    a, b = fam("a", x), fam("b", x + 0.001)  # b worse in every cell: never best
    assert probability_best([a, b])["p"] == [1.0, 0.0]
    same = probability_best([fam("a", x), fam("b", x)])  # identical cells share every win
    assert same["p"] == pytest.approx([0.5, 0.5])


def test_one_cell_per_configuration_gives_no_probability():
    rows = [{"family": "a", "trial": 1, "val_mae": 0.3, "val_mae_per_repeat": [0.3]},
            {"family": "b", "trial": 2, "val_mae": 0.4, "val_mae_per_repeat": [0.4]}]
    v = verdict(rows)
    assert v["p_best"] == {"a": None, "b": None} and not v["clear"] and v["tied"] == ["a", "b"]
    assert "cannot say how sure" in selection_sentence(v)


def test_cells_fall_back_to_repeats_when_fold_counts_differ():
    """An imported trial of a study without folds is compared with this one per repeat."""
    a = fam("a", [0.3] * 10)
    a["val_mae_per_repeat"] = [0.3, 0.3]
    b = {"family": "b", "trial": 9, "val_mae": 0.4, "cv_folds": 1, "val_mae_per_fold": [0.41, 0.39],
         "val_mae_per_repeat": [0.41, 0.39]}
    pb = probability_best([a, b])
    assert pb["unit"] == "repeat" and pb["cells"] == 2 and pb["p"][0] == 1.0
    assert cells({"val_mae": 0.2}) == [0.2]
