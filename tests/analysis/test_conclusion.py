"""The conclusion line per FT size, as a pure function of the rows it is given."""

from __future__ import annotations

from tlsearch.analysis._analyse import conclusion

SCRATCH = {"strategy": "scratch", "ft_lr": 1.6e-3, "repeats": 2, "test_mae": 0.4689, "test_mae_std": 0.058}


def test_no_finished_transfer_trial_says_why_when_asha_stopped_them():
    line = conclusion("matminer2018:dielectric_constant/n", "100", SCRATCH, SCRATCH, None,
                      {"n": 3, "epochs": "5", "val_mae": 0.40284})
    assert line.startswith("dielectric_constant/n, 100 samples: training from scratch, lr 1.6e-03 is best")
    assert "test MAE 0.4689 +/- 0.058, 2 repeats" in line
    assert line.endswith("no transfer trial finished at this size (3 were stopped early by the scheduler after 5 "
                         "epochs, "
                         "behind the trials recorded at that epoch; best validation MAE then 0.4028).")


def test_no_transfer_trial_at_all_says_only_that():
    one = conclusion("t/p", "800", SCRATCH, SCRATCH, None, {"n": 0})
    assert one.endswith("no transfer trial finished at this size.")
    single = conclusion("t/p", "800", SCRATCH, SCRATCH, None, {"n": 1, "epochs": "5-15", "val_mae": 1.0})
    assert "(1 was stopped early by the scheduler after 5-15 epochs" in single


def test_small_gains_and_spreads_keep_their_significant_digits():
    """A spread under 0.5 % printed as '+/- 0 %' (issue 17.9)."""
    tl = {"strategy": "finetune", "pt_source": "m:flla/fe", "freeze": "all_unfrozen", "ft_lr": 1e-3, "repeats": 2,
          "test_mae": 0.30, "test_mae_std": 0.001, "test_mae_per_repeat": [0.2990, 0.3010]}
    base = {**SCRATCH, "test_mae": 0.3100, "test_mae_std": 0.001, "test_mae_per_repeat": [0.3100, 0.3110]}
    line = conclusion("t/p", "800", tl, base, tl)
    assert "beats scratch by 3.4 % +/- 0.24 %" in line, line
    from tlsearch.analysis._analyse import pct

    assert [pct(x) for x in (0.0042, 0.31, 4.74, 12.4, -27.7)] == ["0.0042", "0.31", "4.7", "12", "-28"]


def test_every_listed_size_gets_a_line_also_without_a_finished_trial():
    """A budget that stopped every trial at one size left that size without a conclusion (issue 17.2)."""
    import polars as pl

    from tlsearch.analysis._analyse import unfinished_sizes

    trials = pl.DataFrame({
        "trial": [0, 1, 2], "ft_size": ["100", "800", "800"], "strategy": ["scratch", "scratch", "finetune"],
        "state": ["finished", "stopped_early", "failed"], "val_mae": [0.4, 0.3516, None],
        "test_mae": [0.45, None, None], "epochs_run": [40, 7, None]})
    lines = unfinished_sizes(trials, "m:dielectric_constant/n", ["100", "800", "all"])
    assert [z["ft_size"] for z in lines] == ["800", "all"]
    assert lines[0]["conclusion"] == (
        "dielectric_constant/n, 800 samples: no trial finished (1 failed, 1 stopped early by the scheduler); best partial "
        "validation MAE so far 0.3516 (trial 1, scratch, after 7 epochs; partial, not compared with finished trials).")
    assert lines[1]["conclusion"] == "dielectric_constant/n, all samples: no trial finished (no trial started)."
