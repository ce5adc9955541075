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
