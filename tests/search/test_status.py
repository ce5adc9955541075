"""`tlsearch status` rows say what differs between trials, fixed dimensions included (issue 17.7)."""

from __future__ import annotations

from pathlib import Path

from tlsearch.search.space import resolve
from tlsearch.search.spec import load_spec
from tlsearch.search.status import _epochs, details

QUICKSTART = Path(__file__).resolve().parents[2] / "search_spaces" / "quickstart.yaml"


def test_details_name_size_source_and_freeze_even_when_fixed():
    spec = load_spec(QUICKSTART)  # one PT source and one MPT set: neither is suggested, both must show
    ft = {"strategy": "finetune", "freeze": "all_unfrozen", "ft_size": 800}
    assert details(resolve(spec, ft), ft) == "size=800 source=formation_energy_per_atom freeze=all_unfrozen"
    mpt = {"strategy": "mpt", "freeze": "new_head", "ft_size": 100}
    line = details(resolve(spec, mpt), mpt)
    assert line == "size=100 source=K_VRH+G_VRH+eij_max+band_gap freeze=new_head", line
    assert details(resolve(spec, {"strategy": "scratch", "ft_size": 100}), {"strategy": "scratch"}) == "size=100"


def test_epochs_say_how_many_repeats_they_cover():
    assert _epochs({"final": True, "repeats": 2, "epochs_run": 40}) == "40 (2 repeats)"
    assert _epochs({"epoch": 4, "training_iteration": 4}) == "4 (1 repeat)"
    assert _epochs({}) == ""


def test_best_lines_never_compare_validation_errors_across_sizes():
    """The quickstart's status named the 800-structure trial 'best so far' over the 100-structure ones."""
    from tlsearch.search.status import best_lines

    row = {"state": "complete", "strategy": "scratch", "test": "0.3"}
    rows = [{**row, "trial": 0, "ft_size": 100, "value": 0.55, "val": "0.55", "details": "size=100"},
            {**row, "trial": 1, "ft_size": 800, "value": 0.16, "val": "0.16", "details": "size=800"}]
    lines = best_lines(rows)
    assert not any("best so far" in line for line in lines), lines
    assert [line.split(":")[0].strip() for line in lines] == ["best at FT size 100", "best at FT size 800"]
    assert best_lines(rows[:1]) == ["best so far: trial 0 scratch size=100 val MAE 0.55"]


def test_status_rows_name_sources_by_their_label(tmp_path):
    """A data entry's `label:` names its PT source or MPT set in the rows (issue 17.10); without one, the
    property name as before."""
    from tests.analysis.test_labels import SPEC, fake_experiment, unlabelled
    from tlsearch.search.status import study_rows

    rows = {r["strategy"]: r["details"] for r in study_rows(fake_experiment(tmp_path / "a", SPEC))}
    assert rows["finetune"] == "size=100 source=G_VRH (MP) freeze=all_unfrozen", rows
    assert rows["mpt"] == "size=100 source=G_VRH (MP)+band gap (MP) freeze=all_unfrozen", rows
    plain = {r["strategy"]: r["details"] for r in study_rows(fake_experiment(tmp_path / "b", unlabelled(SPEC)))}
    assert plain["finetune"] == "size=100 source=target freeze=all_unfrozen", plain
    assert plain["mpt"] == "size=100 source=target+target freeze=all_unfrozen", plain
