"""``pretrain.sample_size``: the PT sample is drawn before any graph is built (only the sample's graphs are
built), the target's held-out test structures stay out of it, and the store key of ``all`` does not move."""

from pathlib import Path

import numpy as np
import pytest

from tlsearch._io import read_header
from tlsearch.data import draw_sample, load_dataset
from tlsearch.errors import SampleSizeError
from tlsearch.graphs import GraphCache, GraphParams
from tlsearch.paths import cache_root
from tlsearch.prepared import prepare
from tlsearch.training import config_from_dict, trial
from tlsearch.training.store import PretrainStore
from tlsearch.training.tasks import merged_task, sampled_merged_task, single_task
from tlsearch.training.trial import _held_out_keys, pretrained_entry, pt_material

TARGET = {"dataset": "emt:alloys?n=40&seed=0", "property": "bulk_modulus"}
SOURCE = {"dataset": "emt:alloys?n=200&seed=1", "property": "formation_energy_per_atom"}
TINY = {"alignn_layers": 1, "gcn_layers": 1, "hidden_features": 16, "embedding_features": 8,
        "edge_input_features": 16, "triplet_input_features": 8}


def cfg(sources, sample_size, mode="finetune", **pretrain):
    return config_from_dict({
        "mode": mode, "target": TARGET, "model": TINY, "train": {"sample_size": 10, "optim": {"epochs": 1}},
        "pretrain": {"sources": sources, "sample_size": sample_size, "optim": {"epochs": 1, "batch_size": 8},
                     **pretrain}})


def cached_keys() -> set[str]:
    """Every graph key held in the graph cache's packs."""
    root = Path(cache_root()) / "graphs"
    return {k for p in root.glob("*/*.tlg") for k in read_header(p)[0]["keys"]}


def test_pt_sample_builds_only_the_sampled_graphs():
    c = cfg([SOURCE], 20)
    entry = pretrained_entry(c)
    assert entry.meta["n_train"] + entry.meta["n_val"] == 20
    gc = GraphCache(c.graph.params())
    source_keys = {gc.key(r.atoms) for r in load_dataset(SOURCE["dataset"]).records}
    target_keys = {gc.key(r.atoms) for r in load_dataset(TARGET["dataset"]).records}
    built = (cached_keys() & source_keys) - target_keys
    assert len(source_keys) >= 190
    assert 18 <= len(built) <= 20, f"{len(built)} of the PT source's {len(source_keys)} graphs were built"


@pytest.fixture
def pt_sets(monkeypatch):
    """The (train, validation) graph keys of every pre-training run, captured at the PT Trainer."""
    seen: list[tuple[list[str], list[str]]] = []

    class Spy(trial.Trainer):
        def __init__(self, model, task, scaler, optim, train_idx, val_idx, *args, **kw):
            seen.append(([task.keys[i] for i in train_idx], [task.keys[i] for i in val_idx]))
            super().__init__(model, task, scaler, optim, train_idx, val_idx, *args, **kw)

    monkeypatch.setattr(trial, "Trainer", Spy)
    return seen


def test_pt_sample_leaves_out_the_targets_held_out_structures(pt_sets):
    """PT on the target's structures (a prefix of its dataset, another property), whose own split puts some of
    the target's held-out test structures in its pool: none is drawn, the candidates are exactly the rest; then
    MPT with the target property itself included."""
    same = {"dataset": "emt:alloys?n=25&seed=0", "property": "volume_per_atom"}
    held = _held_out_keys(cfg([same], 10))
    prep = prepare(same["dataset"], prop="volume_per_atom")
    pool_keys = {single_task(prep, "volume_per_atom").keys[i] for i in prep.split.pool}
    assert held & pool_keys  # the splits differ: the exclusion has work to do
    n = len(pool_keys - held)
    pretrained_entry(cfg([same], n))
    with pytest.raises(SampleSizeError, match="sample size"):
        pretrained_entry(cfg([same], n + 1))  # the held-out structures are not candidates
    pretrained_entry(cfg([TARGET, same], 20, mode="mpt", include_target=True))
    assert [len(t) + len(v) for t, v in pt_sets] == [n, 20]
    for t, v in pt_sets:
        assert not (set(t) | set(v)) & held and not set(t) & set(v)


def test_sampled_task_is_the_old_draw_over_the_full_merged_task():
    """Same candidates, order, merge and draw as sampling the fully built merged task (no graph fails here)."""
    a = ("emt:alloys?n=50&seed=0", "bulk_modulus")
    b = ("emt:alloys?n=70&seed=0", "volume_per_atom")  # a prefix of the same structures: records merge
    preps = [(prepare(d, prop=p), p) for d, p in (a, b)]
    exclude = set(merged_task(preps, set()).keys[::7])  # some pooled structures held out, as a target's would be
    full = merged_task(preps, exclude)
    old = draw_sample(np.arange(len(full)), 25, "random", seed=3)
    new = sampled_merged_task([a, b], exclude, 25, 3, GraphParams(), test_fraction=0.1, split_seed=0)
    assert new.keys == [full.keys[i] for i in old] and new.properties == full.properties
    np.testing.assert_array_equal(new.y, full.y[old])
    assert np.isfinite(new.y).all(axis=1).any()  # some drawn structures carry both labels


def test_a_source_with_nothing_drawn_keeps_its_property():
    a = ("emt:alloys?n=30&seed=0", "bulk_modulus")
    b = ("emt:alloys?n=10&seed=5", "volume_per_atom")
    gc = GraphCache(GraphParams())
    exclude = {gc.key(r.atoms) for r in load_dataset(b[0]).records}
    task = sampled_merged_task([a, b], exclude, 12, 0, GraphParams(), test_fraction=0.1, split_seed=0)
    assert len(task) == 12 and task.properties == ("bulk_modulus", "volume_per_atom")
    assert np.isnan(task.y[:, 1]).all()
    empty = prepare(b[0], prop=b[1], keep=[])
    assert len(empty) == 0 and len(empty.split.pool) == len(empty.split.test) == 0


def test_store_key_of_all_is_unchanged_and_a_sample_is_marked():
    """``all`` keeps the key material (and so the shipped models' keys) exactly; a sample is marked so that
    store entries sampled after building every graph are not reused."""
    every, some = pt_material(cfg([SOURCE], "all"), {"k"}), pt_material(cfg([SOURCE], 20), {"k"})
    assert "sample_before_graphs" not in every and some.pop("sample_before_graphs") is True
    assert {**some, "sample_size": "all"} == every
    assert PretrainStore.key(pt_material(cfg([SOURCE], 20), set())) != PretrainStore.key(some)
