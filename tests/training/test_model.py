"""PropertyModel on both backends (shapes, heads, shared parameter names, state transfer), the masked
multi-property loss as the Trainer builds it, merged pre-training tasks and the min-max Scaler."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import tlsearch.graphs
from tlsearch.errors import EmptyDatasetError
from tlsearch.prepared import prepare
from tlsearch.training import engine
from tlsearch.training.config import ModelSpec, OptimSpec
from tlsearch.training.engine import Trainer
from tlsearch.training.model import LinearHead, MLPHead, MultiHead, PropertyModel, make_head
from tlsearch.training.tasks import Scaler, Task, merged_task, single_task

CPU = torch.device("cpu")
REF = "emt:alloys?n=30&seed=0"
HIDDEN = 16
needs_dgl = pytest.mark.skipif(not tlsearch.graphs.dgl_available(), reason="dgl is not installed")
BACKENDS = ["pure", pytest.param("dgl", marks=needs_dgl)]


def spec(backend: str, n_alignn: int = 2, n_gcn: int = 2) -> ModelSpec:
    return ModelSpec(backend=backend, alignn_layers=n_alignn, gcn_layers=n_gcn, hidden_features=HIDDEN,
                     embedding_features=8, edge_input_features=16, triplet_input_features=8)


def model(backend: str, seed: int = 0, **kw) -> PropertyModel:
    torch.manual_seed(seed)
    return PropertyModel(spec(backend), **kw)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("tlcache")


@pytest.fixture(scope="module")
def prep(cache):
    return prepare(REF, prop="bulk_modulus", cache=cache)


@pytest.fixture(scope="module")
def prep_energy(cache):
    return prepare(REF, prop="energy_per_atom", cache=cache)


# ---- shapes and heads ---------------------------------------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("b", [1, 8])
def test_output_shape(backend, b, prep):
    m = model(backend).eval()
    g, lg = prep.batch(np.arange(b))
    with torch.no_grad():
        out = m(g, lg)
        feats = m.features(g, lg)
    assert out.shape == (b, 1) and feats.shape == (b, HIDDEN)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("b", [1, 8])
def test_multihead_and_mlp_shapes(backend, b, prep):
    g, lg = prep.batch(np.arange(b))
    m = model(backend, head_kind="multi", n_props=3, head_depth=2).eval()
    assert isinstance(m.head, MultiHead) and len(m.head.heads) == 3
    with torch.no_grad():
        out = m(g, lg)
        assert out.shape == (b, 3)
        # column j is head j applied to the shared body features
        h = m.features(g, lg)
        for j, head in enumerate(m.head.heads):
            assert torch.allclose(out[:, j : j + 1], head(h))
        m.replace_head("mlp")
        assert isinstance(m.head, MLPHead) and m(g, lg).shape == (b, 1)


def test_make_head():
    assert isinstance(make_head("linear", HIDDEN), LinearHead)
    assert make_head("linear", HIDDEN, 4)(torch.zeros(2, HIDDEN)).shape == (2, 4)
    deep = make_head("multi", HIDDEN, 2, depth=3)
    assert sum(isinstance(x, torch.nn.Linear) for x in deep.heads[0]) == 4  # hidden->128, 2x 128->128, ->1
    with pytest.raises(ValueError, match="unknown head kind"):
        make_head("conv", HIDDEN)


# ---- the two backends share module names --------------------------------------------------------------

@needs_dgl
def test_pure_and_dgl_share_parameter_names():
    named = {b: {n: tuple(p.shape) for n, p in model(b).named_parameters()} for b in ("pure", "dgl")}
    prefixes = ["body.atom_embedding"] + [f"body.alignn_layers.{i}.{part}" for i in range(2)
                                          for part in ("node_update", "edge_update")] + [
        f"body.gcn_layers.{i}" for i in range(2)]
    for prefix in prefixes:
        sel = {b: {n: s for n, s in named[b].items() if n.startswith(prefix + ".")} for b in named}
        assert sel["pure"], prefix
        assert set(sel["pure"]) == set(sel["dgl"]), prefix
        assert sel["pure"] == sel["dgl"], prefix  # shapes as well
    assert named["pure"] == named["dgl"]  # and nothing else differs either


@pytest.mark.parametrize("backend", BACKENDS)
def test_loading_body_state_reproduces_outputs(backend, prep):
    a, b = model(backend, seed=0).eval(), model(backend, seed=1).eval()
    g, lg = prep.batch(np.arange(8))
    with torch.no_grad():
        assert not torch.equal(a.features(g, lg), b.features(g, lg))
        b.body.load_state_dict(a.body.state_dict())
        assert torch.equal(a.features(g, lg), b.features(g, lg))
        assert not torch.equal(a(g, lg), b(g, lg))  # heads still differ
        b.head.load_state_dict(a.head.state_dict())
        assert torch.equal(a(g, lg), b(g, lg))


# ---- MPT: masked loss, as the Trainer builds the mask ----------------------------------------------------

PROPS = ("bulk_modulus", "energy_per_atom", "synthetic")


def mpt_task(prep, prep_energy) -> Task:
    """Two real EMT properties and a synthetic one; property 1 is missing for records 0-7, property 2
    for records 2, 5 and 9."""
    assert prep.dataset.ids == prep_energy.dataset.ids
    synthetic = np.random.default_rng(0).normal(size=len(prep))
    y = np.stack([prep.values("bulk_modulus"), prep_energy.values("energy_per_atom"), synthetic], axis=1)
    assert np.isfinite(y).all()
    y[:8, 1] = np.nan
    y[[2, 5, 9], 2] = np.nan
    base = single_task(prep, PROPS[0])
    return Task(base.pack, base.rows, y, base.ids, PROPS, base.atom_features)


def head_grads(m: PropertyModel, j: int) -> list[torch.Tensor]:
    return [p.grad for p in m.head.heads[j].parameters()]


@pytest.mark.parametrize("loss_kind", ["mse", "l1", "huber"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_masked_property_gets_exactly_zero_gradient(backend, loss_kind, prep, prep_energy):
    task = mpt_task(prep, prep_energy)
    m = model(backend, head_kind="multi", n_props=len(PROPS), head_depth=2)
    train_idx = np.arange(24)
    scaler = Scaler.fit(task.y[train_idx])
    trainer = Trainer(m, task, scaler, OptimSpec(epochs=1, lr=1e-2, batch_size=8, loss=loss_kind),
                      train_idx, np.arange(24, 27), CPU, amp=False)
    assert torch.equal(trainer.mask, torch.as_tensor(np.isfinite(task.y), dtype=torch.float32))
    assert torch.isfinite(trainer.ys).all()

    def backward(idx: np.ndarray) -> torch.Tensor:
        m.zero_grad(set_to_none=True)
        g, lg = task.batch(idx)
        y, mask = trainer.ys[idx], trainer.mask[idx]
        loss = engine._loss(loss_kind, m(g, lg).float(), y, mask)
        loss.backward()
        return loss.detach()

    # batch 0-7: property 1 wholly masked, property 2 partly
    loss = backward(np.arange(8))
    assert torch.isfinite(loss)
    for grad in head_grads(m, 1):
        assert grad is not None and not grad.any(), "a wholly masked property must add no gradient"
    for j in (0, 2):
        assert any(grad.abs().sum() > 0 for grad in head_grads(m, j)), j
    assert all(torch.isfinite(p.grad).all() for p in m.parameters() if p.grad is not None)
    # the loss is the mean over the labelled entries only
    with torch.no_grad():
        g, lg = task.batch(np.arange(8))
        pred = m(g, lg).numpy()
    ys = scaler.transform(task.y[:8])
    ok = np.isfinite(ys)
    err = {"mse": lambda d: d**2, "l1": np.abs,
           "huber": lambda d: np.where(np.abs(d) < 0.1, 0.5 * d**2, 0.1 * (np.abs(d) - 0.05))}[loss_kind]
    assert float(loss) == pytest.approx(float(err(pred[ok] - ys[ok]).mean()), rel=1e-5)

    # batch 8-15: property 1 labelled again -> its head gets a gradient
    backward(np.arange(8, 16))
    for j in range(len(PROPS)):
        assert any(grad.abs().sum() > 0 for grad in head_grads(m, j)), j


def test_fully_masked_batch_gives_zero_loss_and_gradient():
    pred = torch.randn(4, 2, requires_grad=True)
    loss = engine._loss("mse", pred, torch.zeros(4, 2), torch.zeros(4, 2))
    loss.backward()
    assert loss.item() == 0.0 and not pred.grad.any()


# ---- merged pre-training task ---------------------------------------------------------------------------

def test_merged_task_merges_identical_structures(prep, prep_energy):
    a, b = prep, prep_energy
    assert a.dataset.ids == b.dataset.ids  # same records: both properties are present everywhere
    task = merged_task([(a, "bulk_modulus"), (b, "energy_per_atom")], exclude_keys=set())
    assert task.properties == ("bulk_modulus", "energy_per_atom")
    pool_keys = [a.graphs.pack.keys[a.rows[i]] for i in a.split.pool]
    assert len(task) == len(set(pool_keys)) == len(a.split.pool)  # one row per structure, not two
    assert len(set(task.keys)) == len(task)
    assert np.isfinite(task.y).all()  # every row carries both labels
    by_key = {k: i for i, k in enumerate(pool_keys)}
    for j, key in enumerate(task.keys):
        i = a.split.pool[by_key[key]]
        assert task.y[j, 0] == a.values("bulk_modulus")[i]
        assert task.y[j, 1] == b.values("energy_per_atom")[i]
        assert task.ids[j] == a.dataset.ids[i]
        src = a.graphs.pack.graph(a.rows[i])
        got = task.pack.graph(task.rows[j])
        assert all(np.array_equal(src[n], got[n]) for n in src)
    # held-out test structures of the sources never enter the pre-training set
    test_keys = {a.graphs.pack.keys[a.rows[i]] for i in a.split.test}
    assert test_keys and not test_keys & set(task.keys)
    # and the merged task trains: batches and a multi-head forward pass work
    m = model("pure", head_kind="multi", n_props=2).eval()
    with torch.no_grad():
        assert m(*task.batch(np.arange(5))).shape == (5, 2)


def test_merged_task_same_source_twice_and_overlapping_sources(cache, prep):
    twice = merged_task([(prep, "bulk_modulus"), (prep, "bulk_modulus")], exclude_keys=set())
    assert twice.properties == ("bulk_modulus",) and len(twice) == len(prep.split.pool)
    # emt with a larger n is a superset of the same structures: shared ones appear once
    bigger = prepare("emt:alloys?n=40&seed=0", prop="bulk_modulus", cache=cache)
    task = merged_task([(prep, "bulk_modulus"), (bigger, "bulk_modulus")], exclude_keys=set())
    keys = lambda p: {p.graphs.pack.keys[p.rows[i]] for i in p.split.pool}  # noqa: E731
    assert keys(prep) & keys(bigger)
    assert len(task) == len(keys(prep) | keys(bigger)) == len(set(task.keys))


def test_merged_task_excludes_keys(prep, prep_energy):
    keys = [prep.graphs.pack.keys[prep.rows[i]] for i in prep.split.pool]
    exclude = set(keys[:3])
    task = merged_task([(prep, "bulk_modulus"), (prep_energy, "energy_per_atom")], exclude_keys=exclude)
    assert len(task) == len(keys) - 3
    assert not exclude & set(task.keys)
    with pytest.raises(EmptyDatasetError):
        merged_task([(prep, "bulk_modulus")], exclude_keys=set(keys))


# ---- Scaler ------------------------------------------------------------------------------------------------

def test_scaler_round_trip_and_range():
    rng = np.random.default_rng(0)
    y = np.column_stack([rng.normal(100, 30, 50), rng.uniform(-5, -1, 50), np.full(50, 7.0)])
    y[3, 1] = np.nan
    s = Scaler.fit(y[:40])
    t = s.transform(y)
    assert np.isnan(t[3, 1]) and np.isfinite(np.delete(t, 3, axis=0)).all()
    np.testing.assert_allclose(s.inverse(t), y, rtol=1e-12, atol=1e-12)
    train = t[:40]
    np.testing.assert_allclose(np.nanmin(train[:, :2], axis=0), -1.0, atol=1e-12)
    np.testing.assert_allclose(np.nanmax(train[:, :2], axis=0), 1.0, atol=1e-12)
    # the train minimum and maximum land exactly on -1 and +1
    for j in range(2):
        col = y[:40, j]
        assert t[np.nanargmin(col), j] == pytest.approx(-1.0) and t[np.nanargmax(col), j] == pytest.approx(1.0)
    # a constant column divides by 1, not 0
    assert np.isfinite(t[:, 2]).all() and np.all(t[:, 2] == -1.0)
    np.testing.assert_allclose(s.inverse(t)[:, 2], 7.0)
    # serialisation round trip
    s2 = Scaler.from_dict(s.to_dict())
    np.testing.assert_array_equal(s2.lo, s.lo)
    np.testing.assert_array_equal(s2.hi, s.hi)
