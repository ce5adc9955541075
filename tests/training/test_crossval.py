"""Cross-validated trials (train.cv_folds): folds, out-of-fold validation, one shared epoch, the fold ensemble."""

import io

import numpy as np
import polars as pl
import pytest
import torch

from tlsearch.data import cv_folds, folds_for
from tlsearch.errors import SampleSizeError, UserInputError
from tlsearch.training import config_from_dict, train_trial
from tlsearch.training.checkpoint import load_checkpoint
from tlsearch.training.predict import model_file
from tlsearch.training.trial import regression_metrics, sample_parts

TARGET = {"dataset": "emt:alloys?n=60&seed=0", "property": "bulk_modulus"}
SOURCE = {"dataset": "emt:alloys?n=80&seed=1", "property": "formation_energy_per_atom"}
TINY = {"alignn_layers": 1, "gcn_layers": 1, "hidden_features": 16, "embedding_features": 8,
        "edge_input_features": 16, "triplet_input_features": 8}


def cfg(mode="scratch", folds=4, **kw):
    base = {"mode": mode, "target": TARGET, "model": TINY,
            "train": {"sample_size": 30, "cv_folds": folds, "optim": {"epochs": 3, "batch_size": 8}}}
    if mode != "scratch":
        base["pretrain"] = {"sources": [SOURCE], "optim": {"epochs": 2, "batch_size": 16}}
    for k, v in kw.items():
        base[k] = {**base.get(k, {}), **v} if isinstance(v, dict) else v
    return config_from_dict(base)


def test_folds_cover_the_sample_once_and_depend_only_on_sample_and_seed():
    sample = np.arange(100, 147)
    folds = cv_folds(sample, 5, seed=3)
    assert len(folds) == 5 and sorted(len(f) for f in folds) == [9, 9, 9, 10, 10]
    assert np.array_equal(np.sort(np.concatenate(folds)), sample)  # every structure validated exactly once
    again = cv_folds(sample, 5, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(folds, again))
    other = cv_folds(sample, 5, seed=4)
    assert not all(np.array_equal(a, b) for a, b in zip(folds, other))


def test_fold_errors_are_typed():
    with pytest.raises(UserInputError, match="cv_folds must be >= 2"):
        cv_folds(np.arange(10), 1)
    with pytest.raises(SampleSizeError, match="needs a fine-tuning sample of >= 10"):
        cv_folds(np.arange(9), 5)


def test_auto_folds_depend_on_the_sample_size():
    assert folds_for(100, "auto") == 5 and folds_for(300, "auto") == 5 and folds_for(800, "auto") == 1
    assert folds_for(800, 3) == 3 and folds_for(100, 1) == 1


def test_same_folds_for_every_configuration():
    """Folds are a function of the drawn sample and the repeat's sample seed, not of what trains on them."""
    a = sample_parts(cfg("scratch"), np.arange(30))
    b = sample_parts(cfg("finetune", train={"freeze": "last_layer", "optim": {"lr": 0.01}}), np.arange(30))
    assert len(a) == 4 and all(np.array_equal(x[1], y[1]) and np.array_equal(x[0], y[0]) for x, y in zip(a, b))
    for train, val in a:
        assert not set(train) & set(val) and len(train) + len(val) == 30


def test_scratch_cv_trial_validates_every_structure_once(tmp_path):
    r = train_trial(cfg(output_dir=str(tmp_path)))
    assert r.folds == 4 and r.n_val == 30 and len(r.val_folds) == 4 and len(r.test_folds) == 4
    assert sum(f["n"] for f in r.val_folds) == 30
    pred = pl.read_parquet(r.predictions)
    val = pred.filter(pl.col("split") == "val")
    assert val.height == 30 and val["id"].n_unique() == 30 and sorted(set(val["fold"].to_list())) == [0, 1, 2, 3]
    # the trial's validation MAE is the out-of-fold MAE over the whole sample, its folds' weighted mean
    oof = regression_metrics(val["y_true"].to_numpy(), val["y_pred"].to_numpy())["mae"]
    assert oof == pytest.approx(r.val["mae"])
    assert oof == pytest.approx(sum(f["mae"] * f["n"] for f in r.val_folds) / 30)
    # each epoch reported the out-of-fold MAE; the chosen epoch is one shared epoch (its OOF minimum)
    assert r.chosen_epoch == r.best_epoch and r.history[r.best_epoch - 1].val_mae == pytest.approx(r.val["mae"])
    assert min(h.val_mae for h in r.history) == pytest.approx(r.val["mae"])


def test_the_delivered_model_is_the_fold_ensemble(tmp_path):
    r = train_trial(cfg(output_dir=str(tmp_path)))
    files = [tmp_path / model_file(0, i) for i in range(4)]
    assert [f.name for f in files] == ["model_fold0.pt", "model_fold1.pt", "model_fold2.pt", "model_fold3.pt"]
    assert all(f.is_file() for f in files) and not (tmp_path / "model.pt").exists()
    from tlsearch.prepared import prepare
    from tlsearch.training.engine import Stepper
    from tlsearch.training.tasks import single_task

    c = cfg()
    prep = prepare(c.target.dataset, c.graph.params(), prop=c.target.property)
    task = single_task(prep, c.target.property)
    per_fold = []
    for f in files:
        model, scaler, _ = load_checkpoint(f)
        per_fold.append(Stepper(model, task, scaler, "l1", 8, torch.device("cpu")).predict(prep.split.test)[:, 0])
    per_fold = np.stack(per_fold, axis=1)
    y = task.y[prep.split.test, 0]
    assert regression_metrics(y, per_fold.mean(axis=1))["mae"] == pytest.approx(r.test["mae"], rel=1e-5)
    for i in range(4):
        assert regression_metrics(y, per_fold[:, i])["mae"] == pytest.approx(r.test_folds[i]["mae"], rel=1e-5)
    test = pl.read_parquet(r.predictions).filter(pl.col("split") == "test")
    assert np.allclose(test["y_pred"].to_numpy(), per_fold.mean(axis=1), rtol=1e-5)


def test_select_last_keeps_the_final_epoch():
    r = train_trial(cfg(train={"optim": {"epochs": 3, "batch_size": 8, "select": "last"}}))
    assert r.chosen_epoch == 3 and r.history[-1].val_mae == pytest.approx(r.val["mae"])


def test_cv_trial_resumes_from_a_mid_run_state():
    """A checkpoint taken after epoch 1 resumes to the same result as an uninterrupted run."""
    states = []

    def grab(m, trainer):
        if m.epoch == 1:  # a checkpoint is plain data, saved as the trainable saves it
            buf = io.BytesIO()
            torch.save(trainer.state_dict(), buf)
            states.append(torch.load(io.BytesIO(buf.getvalue()), weights_only=True))

    full = train_trial(cfg(), callback=grab)
    resumed = train_trial(cfg(), resume=states[0])
    assert [h.epoch for h in resumed.history] == [1, 2, 3]
    assert resumed.val["mae"] == pytest.approx(full.val["mae"], rel=1e-5)
    assert resumed.test["mae"] == pytest.approx(full.test["mae"], rel=1e-5)


def test_finetune_cv_each_fold_starts_from_the_pt_body(tmp_path):
    r = train_trial(cfg("finetune", store_dir=str(tmp_path / "store"), train={"freeze": "new_head"}))
    assert r.folds == 4 and r.pretrain is not None and r.n_trainable < r.n_params
