"""train_trial end to end on tiny real EMT data: every mode, the store, leakage guards, outputs."""

import numpy as np
import polars as pl
import pytest

from tlsearch.errors import UserInputError
from tlsearch.graphs import dgl_available
from tlsearch.training import config_from_dict, train_trial
from tlsearch.training.trial import _pt_sources, regression_metrics

TARGET = {"dataset": "emt:alloys?n=60&seed=0", "property": "bulk_modulus"}
SOURCE = {"dataset": "emt:alloys?n=80&seed=1", "property": "formation_energy_per_atom"}
TINY = {"alignn_layers": 1, "gcn_layers": 1, "hidden_features": 16, "embedding_features": 8,
        "edge_input_features": 16, "triplet_input_features": 8}


def cfg(mode="scratch", **kw):
    base = {"mode": mode, "target": TARGET, "model": TINY,
            "train": {"sample_size": 30, "optim": {"epochs": 3, "batch_size": 8}}}
    if mode != "scratch":
        base["pretrain"] = {"sources": [SOURCE], "optim": {"epochs": 2, "batch_size": 16}}
    for k, v in kw.items():
        base[k] = {**base.get(k, {}), **v} if isinstance(v, dict) else v
    return config_from_dict(base)


def test_scratch(tmp_path):
    r = train_trial(cfg(output_dir=str(tmp_path)))
    assert r.mode == "scratch" and r.pretrain is None and len(r.history) == 3
    assert r.n_train == 27 and r.n_val == 3 and r.test["n"] == 6
    assert np.isfinite(r.test["mae"]) and r.n_trainable == r.n_params
    pred = pl.read_parquet(r.predictions)
    assert pred.filter(pl.col("split") == "test").height == 6
    test = pred.filter(pl.col("split") == "test")
    assert regression_metrics(test["y_true"].to_numpy(), test["y_pred"].to_numpy())["mae"] == pytest.approx(r.test["mae"])


def test_finetune_uses_the_store_once(tmp_path):
    store = str(tmp_path / "store")
    a = train_trial(cfg("finetune", store_dir=store))
    b = train_trial(cfg("finetune", store_dir=store, train={"freeze": "last_layer"}))
    assert not a.pretrain.store_hit and b.pretrain.store_hit and a.pretrain.key == b.pretrain.key
    assert a.pretrain.n_train > 0 and a.pretrain.pt_seconds > 0
    assert b.n_trainable < b.n_params  # body frozen


def test_finetune_starts_from_pretrained_body(tmp_path):
    """With every layer frozen but the head, the FT body must equal the stored PT body exactly."""
    import torch

    from tlsearch.training.store import PretrainStore

    store = str(tmp_path / "store")
    r = train_trial(cfg("finetune", store_dir=store, train={"freeze": "new_head"}))
    entry = PretrainStore(store).load(r.pretrain.key)
    assert entry is not None and r.pretrain.store_hit is False
    assert any(k.startswith("body.") for k in entry.state)
    assert all(torch.isfinite(v).all() for v in entry.state.values() if v.is_floating_point())


def test_mpt_leaves_target_out_and_trains(tmp_path):
    c = cfg("mpt", store_dir=str(tmp_path / "s"), pretrain={"sources": [
        SOURCE, {"dataset": SOURCE["dataset"], "property": "volume_per_atom"}, TARGET]})
    assert TARGET["dataset"] not in [d for d, _ in _pt_sources(c)]
    r = train_trial(c)
    assert len(r.pretrain.sources) == 2 and np.isfinite(r.test["mae"])
    inc = cfg("mpt", pretrain={"sources": [SOURCE, TARGET], "include_target": True})
    assert len(_pt_sources(inc)) == 2


def test_pretraining_excludes_target_test_structures(tmp_path):
    """PT on the target's own dataset: its held-out test structures must not be in the PT set."""
    from tlsearch.prepared import prepare
    from tlsearch.training.tasks import merged_task, single_task

    prep = prepare(TARGET["dataset"], prop="bulk_modulus")
    task = single_task(prep, "bulk_modulus")
    exclude = {task.keys[i] for i in prep.split.test}
    pt = merged_task([(prepare(TARGET["dataset"], prop="volume_per_atom"), "volume_per_atom")], exclude)
    assert exclude and not exclude & set(pt.keys)


def test_eval_sets_and_diverse_sampling():
    r = train_trial(cfg(eval_sets=[{"dataset": "emt:alloys?n=12&seed=7", "property": "bulk_modulus"}],
                        train={"sampling": "diverse"}))
    assert r.eval_sets["emt:alloys?n=12&seed=7/bulk_modulus"]["n"] == 12


@pytest.mark.skipif(not dgl_available(), reason="dgl extra not installed")
def test_dgl_backend_finetune(tmp_path):
    r = train_trial(cfg("finetune", store_dir=str(tmp_path), model={"backend": "dgl"}, train={"freeze": "2b"}))
    assert np.isfinite(r.test["mae"]) and r.n_trainable < r.n_params


@pytest.mark.parametrize("bad, needle", [
    ({"mode": "finetune"}, "needs a 'pretrain' section"),
    ({"train": {"freeze": "2b"}}, "freeze must be 'all_unfrozen'"),
    ({"train": {"freeze": "5b"}}, "train.freeze"),
    ({"model": {"hidden_features": 0}}, "model.hidden_features"),
    ({"colour": "red"}, "colour: Extra inputs are not permitted"),
])
def test_bad_config_is_a_user_error(bad, needle):
    base = {"target": TARGET, **bad}
    with pytest.raises(UserInputError, match=needle):
        config_from_dict(base)


def test_checkpoint_round_trip_predicts_physical_units(tmp_path):
    from tlsearch.prepared import prepare
    from tlsearch.training.checkpoint import load_checkpoint
    from tlsearch.training.engine import Stepper
    from tlsearch.training.tasks import single_task

    r = train_trial(cfg(output_dir=str(tmp_path)))
    model, scaler, config = load_checkpoint(tmp_path / "model.pt")
    assert config.target.property == "bulk_modulus" and scaler.kind == "standard"
    prep = prepare(TARGET["dataset"], prop="bulk_modulus")
    task = single_task(prep, "bulk_modulus")
    import torch

    pred = Stepper(model, task, scaler, "mse", 8, torch.device("cpu")).predict(prep.split.test)[:, 0]
    saved = pl.read_parquet(r.predictions).filter(pl.col("split") == "test")["y_pred"].to_numpy()
    np.testing.assert_allclose(pred, saved, rtol=1e-5, atol=1e-5)
    assert 10 < float(np.mean(pred)) < 500  # GPa: physical units, not scaled
