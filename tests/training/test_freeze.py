"""Freeze strategies on a real (tiny) ALIGNN, both backends: which modules train, and that one real
optimizer step through the project's Trainer leaves every frozen parameter and every buffer of a fully
frozen module (BatchNorm running statistics on the dgl backend) bit-identical while moving every trainable
parameter that the forward pass uses."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import tlsearch.graphs
from tlsearch.errors import TlsearchError, UserInputError
from tlsearch.prepared import prepare
from tlsearch.training.config import ModelSpec, OptimSpec
from tlsearch.training.engine import Trainer
from tlsearch.training.freeze import apply_freeze, blocks, set_train_mode, trainable_prefixes
from tlsearch.training.model import MLPHead, PropertyModel
from tlsearch.training.tasks import Scaler, single_task

N_ALIGNN, N_GCN = 2, 2
N_BLOCKS = 1 + N_ALIGNN + N_GCN
CPU = torch.device("cpu")

needs_dgl = pytest.mark.skipif(not tlsearch.graphs.dgl_available(), reason="dgl is not installed")
BACKENDS = ["pure", pytest.param("dgl", marks=needs_dgl)]

# Units that the strategies are stated in (written out here, independently of freeze.py).
EMB = ("body.atom_embedding", "body.edge_embedding", "body.angle_embedding")
NODE = tuple(f"body.alignn_layers.{i}.node_update" for i in range(N_ALIGNN))
EDGE = tuple(f"body.alignn_layers.{i}.edge_update" for i in range(N_ALIGNN))
GCN = tuple(f"body.gcn_layers.{i}" for i in range(N_GCN))
HEAD = ("head",)
ALL_UNITS = EMB + NODE + EDGE + GCN + HEAD

EXPECTED = {
    "all_unfrozen": set(ALL_UNITS),
    "2b": set(HEAD + GCN + NODE),
    "3b": set(HEAD + EDGE),
    "new_head": set(HEAD),
    "last_layer": set(HEAD),
}
# freeze_depth k freezes the first k of [embeddings, alignn 0, alignn 1, gcn 0, gcn 1]
_DEPTH_BLOCKS = [set(EMB)] + [{NODE[i], EDGE[i]} for i in range(N_ALIGNN)] + [{g} for g in GCN]
for _k in range(N_BLOCKS + 1):
    EXPECTED[f"depth{_k}"] = set(HEAD).union(*_DEPTH_BLOCKS[_k:])

# ALIGNN's edge-gated convolution returns updated edge features through ``bn_edges`` only; the edge
# output of the last ALIGNN layer's line-graph update (the angle features) and of the last GCN layer feed
# nothing, so these parameters never receive a gradient (grad stays None) and AdamW leaves them alone.
DEAD = {f"body.alignn_layers.{N_ALIGNN - 1}.edge_update.bn_edges.{w}" for w in ("weight", "bias")} | {
    f"body.gcn_layers.{N_GCN - 1}.bn_edges.{w}" for w in ("weight", "bias")}

CASES = list(EXPECTED)


def spec(backend: str) -> ModelSpec:
    return ModelSpec(backend=backend, alignn_layers=N_ALIGNN, gcn_layers=N_GCN, hidden_features=16,
                     embedding_features=8, edge_input_features=16, triplet_input_features=8)


def unit_of(name: str) -> str:
    matches = [u for u in ALL_UNITS if name == u or name.startswith(u + ".")]
    assert len(matches) == 1, f"parameter {name} belongs to {matches}, expected exactly one unit"
    return matches[0]


@pytest.fixture(scope="module")
def prep(tmp_path_factory):
    return prepare("emt:alloys?n=30&seed=0", prop="bulk_modulus", cache=tmp_path_factory.mktemp("tlcache"))


@pytest.fixture(scope="module")
def task(prep):
    return single_task(prep, "bulk_modulus")


def frozen_model(backend: str, case: str) -> PropertyModel:
    """Model + freeze as train_trial builds it (new_head: a fresh MLP head before freezing)."""
    torch.manual_seed(0)
    model = PropertyModel(spec(backend))
    if case.startswith("depth"):
        prefixes = trainable_prefixes("all_unfrozen", N_ALIGNN, N_GCN, freeze_depth=int(case[len("depth"):]))
    else:
        if case == "new_head":
            model.replace_head("mlp")
        prefixes = trainable_prefixes(case, N_ALIGNN, N_GCN)
    apply_freeze(model, prefixes)
    return model


def fully_frozen_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Modules none of whose parameters (own or nested) is trainable, parameter-free ones included."""
    return [(n, m) for n, m in model.named_modules() if not any(p.requires_grad for p in m.parameters())]


# ---- which parameters train ---------------------------------------------------------------------------

@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_exact_trainable_set(backend, case):
    model = frozen_model(backend, case)
    expected = EXPECTED[case]
    by_unit: dict[str, list[bool]] = {}
    for name, p in model.named_parameters():
        by_unit.setdefault(unit_of(name), []).append(p.requires_grad)
    assert set(by_unit) == set(ALL_UNITS)  # every unit exists on this backend and has parameters
    trainable_units = {u for u, flags in by_unit.items() if all(flags)}
    mixed = {u for u, flags in by_unit.items() if any(flags) and not all(flags)}
    assert not mixed, f"units only partly trainable: {mixed}"
    assert trainable_units == expected
    if case not in ("all_unfrozen", "depth0"):  # depth 0 freezes nothing
        assert not any(p.requires_grad for n, p in model.named_parameters() if n.startswith(EMB))
    if case == "new_head":
        assert isinstance(model.head, MLPHead) and model.head_kind == "mlp"


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_one_step_moves_exactly_the_trainable_parameters(backend, case, task):
    model = frozen_model(backend, case)
    train_idx = np.arange(16)
    trainer = Trainer(model, task, Scaler.fit(task.y[train_idx]), OptimSpec(epochs=1, lr=1e-2, batch_size=8),
                      train_idx, np.arange(16, 20), CPU, amp=False)
    # the optimizer holds exactly the trainable parameters
    in_opt = {id(p) for g in trainer.opt.param_groups for p in g["params"]}
    assert in_opt == {id(p) for p in model.parameters() if p.requires_grad}

    params_before = {n: p.detach().clone() for n, p in model.named_parameters()}
    frozen_mods = fully_frozen_modules(model)
    buffers_before = {f"{mn}.{bn}": b.clone() for mn, m in frozen_mods for bn, b in m.named_buffers(recurse=False)}
    bn_trainable = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
                    and any(p.requires_grad for p in m.parameters(recurse=False))]
    tracked_before = {n: int(m.num_batches_tracked) for n, m in bn_trainable}

    # one batch of 8 = exactly one optimizer step, through Trainer.run (set_train_mode) -> Trainer.step
    loss, _ = trainer.run(np.arange(8), train=True)
    assert np.isfinite(loss)
    assert trainer.sched.last_epoch == 1

    changed, unchanged_trainable = [], []
    for name, p in model.named_parameters():
        same = torch.equal(p.detach(), params_before[name])
        if not p.requires_grad:
            assert same, f"frozen parameter {name} changed"
            assert p.grad is None, f"frozen parameter {name} got a gradient"
        elif name in DEAD:
            assert p.grad is None and same, f"{name} is unused by the forward pass and should not move"
        elif same:
            unchanged_trainable.append(name)
        else:
            changed.append(name)
    assert not unchanged_trainable, f"trainable parameters that did not move: {unchanged_trainable}"
    assert changed

    for key, before in buffers_before.items():
        assert torch.equal(model.get_buffer(key), before), f"buffer {key} of a fully frozen module changed"
    if backend == "dgl":
        n_bn = sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
        assert n_bn > 0
        frozen_bn = [n for n, m in frozen_mods if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        assert len(frozen_bn) + len(bn_trainable) == n_bn
        if case in ("new_head", "last_layer", f"depth{N_BLOCKS}"):
            assert len(frozen_bn) == n_bn
        # trainable BatchNorms did run in train mode (the check above is not vacuous)
        for n, m in bn_trainable:
            assert int(m.num_batches_tracked) == tracked_before[n] + 1, n


@pytest.mark.parametrize("backend", BACKENDS)
def test_set_train_mode_keeps_frozen_modules_in_eval(backend):
    model = frozen_model(backend, "3b")
    model.eval()
    set_train_mode(model)
    for name, m in model.named_modules():
        own = list(m.parameters(recurse=False))
        if own and not any(p.requires_grad for p in own):
            assert not m.training, name
        elif own:
            assert m.training, name
    assert model.head.training and model.body.alignn_layers[0].edge_update.training
    assert not model.body.atom_embedding.layer[1].training
    assert not model.body.alignn_layers[0].node_update.bn_nodes.training


def test_dead_parameters_are_exactly_the_unused_edge_outputs(task):
    """Pins DEAD: in a fully trainable model, exactly those parameters get no gradient."""
    model = frozen_model("pure", "all_unfrozen")
    g, lg = task.batch(np.arange(8))
    model(g, lg).sum().backward()
    assert {n for n, p in model.named_parameters() if p.grad is None} == DEAD
    assert all(p.grad.any() for n, p in model.named_parameters() if n not in DEAD)


# ---- trainable_prefixes and the Trainer's refusal ---------------------------------------------------

def test_blocks_order():
    assert blocks(N_ALIGNN, N_GCN) == [list(EMB), ["body.alignn_layers.0"], ["body.alignn_layers.1"],
                                       ["body.gcn_layers.0"], ["body.gcn_layers.1"]]


def test_freeze_depth_boundaries():
    assert trainable_prefixes("all_unfrozen", N_ALIGNN, N_GCN, freeze_depth=N_BLOCKS) == ["head"]
    with pytest.raises(UserInputError, match="freeze_depth"):
        trainable_prefixes("all_unfrozen", N_ALIGNN, N_GCN, freeze_depth=N_BLOCKS + 1)
    with pytest.raises(UserInputError):
        trainable_prefixes("all_unfrozen", 0, 0, freeze_depth=2)


@pytest.mark.parametrize("strategy", ["4b", "", "ALL_UNFROZEN", "freeze_all"])
def test_unknown_strategy(strategy):
    with pytest.raises(UserInputError, match="unknown freeze strategy"):
        trainable_prefixes(strategy, N_ALIGNN, N_GCN)


def test_prefix_match_is_by_module_boundary():
    """``body.gcn_layers.1`` must not also select ``body.gcn_layers.10``."""
    model = nn.Module()
    model.body = nn.Module()
    model.body.gcn_layers = nn.ModuleList(nn.Linear(2, 2) for _ in range(11))
    apply_freeze(model, ["body.gcn_layers.1"])
    assert {n for n, p in model.named_parameters() if p.requires_grad} == {
        "body.gcn_layers.1.weight", "body.gcn_layers.1.bias"}


@pytest.mark.parametrize("backend", BACKENDS)
def test_trainer_refuses_when_nothing_is_trainable(backend, task):
    torch.manual_seed(0)
    model = PropertyModel(spec(backend))
    apply_freeze(model, [])
    assert not any(p.requires_grad for p in model.parameters())
    with pytest.raises(TlsearchError, match="no trainable parameters"):
        Trainer(model, task, Scaler.fit(task.y[:16]), OptimSpec(epochs=1, lr=1e-2, batch_size=8),
                np.arange(16), np.arange(16, 20), CPU)


@pytest.mark.parametrize(("pct_start", "epochs"), [(0.5, 2), (0.1, 10), (0.25, 4)])
def test_trainer_builds_when_warmup_is_one_step(pct_start, epochs, task):
    """pct_start * total steps == 1 (here one batch an epoch) made torch's OneCycleLR divide by zero in
    Trainer.__init__ (regression); the warm-up then peaks at step 0 and the run completes."""
    torch.manual_seed(0)
    model = PropertyModel(spec("pure"))
    apply_freeze(model, ["head"])  # cheap: only the head trains
    optim = OptimSpec(epochs=epochs, lr=1e-2, batch_size=8, pct_start=pct_start)
    trainer = Trainer(model, task, Scaler.fit(task.y[:8]), optim, np.arange(8), np.arange(8, 10), CPU)
    assert trainer.sched.get_last_lr()[0] == pytest.approx(1e-2)  # the peak, at step 0
    history = trainer.fit()
    assert len(history) == epochs and all(np.isfinite(m.train_loss) for m in history)
    assert trainer.sched.last_epoch == epochs
