"""Reading a trial's results back: pure functions of what the trainable reported."""

from __future__ import annotations

from tlsearch.search.results import eval_maes


def test_eval_set_maes_keep_the_full_label_of_references_with_colons_and_slashes():
    """The report's out-of-domain table looks eval sets up by their full label; keying by the text between the
    first two slashes left it empty for every reference (issue 17.3)."""
    summary = {"val_mae": 0.3, "eval/folder:/data/2d/bandgap/mae": 0.41,
               "eval/matminer2018:elastic_tensor/K_VRH/mae": 12.5, "eval/folder:/data/2d/bandgap/rmse": 0.6}
    assert eval_maes(summary) == {"folder:/data/2d/bandgap": 0.41, "matminer2018:elastic_tensor/K_VRH": 12.5}
