"""Trainer: determinism, the OneCycle schedule, losses, early stopping, best/last selection, divergence,
checkpoint/resume, autograd-free evaluation and per-epoch metrics, on a tiny real ALIGNN and dataset."""

from __future__ import annotations

import dataclasses
import io
import math

import numpy as np
import pytest
import torch

from tlsearch.errors import TlsearchError
from tlsearch.prepared import prepare
from tlsearch.training.config import ModelSpec, OptimSpec
from tlsearch.training.engine import DivergenceError, EpochMetrics, Trainer
from tlsearch.training.model import PropertyModel
from tlsearch.training.tasks import Scaler, Task, single_task
from tlsearch.training.trial import seed_everything

TINY = ModelSpec(alignn_layers=1, gcn_layers=1, hidden_features=16, embedding_features=8,
                 edge_input_features=16, triplet_input_features=8)
TRAIN = np.arange(30)
VAL = np.arange(30, 40)
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def task(tmp_path_factory) -> Task:
    # module-scoped, so it gets its own cache directory (never the user's, and built once)
    prep = prepare("emt:alloys?n=40&seed=0", prop="bulk_modulus", cache=tmp_path_factory.mktemp("cache"))
    t = single_task(prep, "bulk_modulus")
    assert len(t) == 40 and np.isfinite(t.y).all()
    return t


def make_trainer(task: Task, seed: int = 0, model_seed: int | None = None, scaler: Scaler | None = None,
                 **optim) -> Trainer:
    optim = {"epochs": 5, "lr": 1e-2, "batch_size": 8, **optim}
    seed_everything(seed if model_seed is None else model_seed)
    model = PropertyModel(TINY)
    return Trainer(model, task, scaler or Scaler.fit(task.y[TRAIN]), OptimSpec(**optim), TRAIN, VAL, CPU,
                   amp=False, seed=seed)


def weights(trainer: Trainer) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}


def same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def val_mae_now(trainer: Trainer) -> float:
    return float(np.mean(np.abs(trainer.predict(VAL) - trainer.task.y[VAL])))


# ---- determinism --------------------------------------------------------------------------------

@pytest.fixture
def one_thread():
    """Bit-identical runs need one thread: with two threads on a loaded 2-core machine some CPU reductions
    differ in the last bits from run to run (seen: 0.06950904 vs 0.06950905 after one epoch)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_same_seed_same_run(task, one_thread):
    a, b = make_trainer(task, seed=3), make_trainer(task, seed=3)
    assert same_state(weights(a), weights(b)), "seed_everything must make the initial weights equal"
    ha, hb = a.fit(), b.fit()
    assert len(ha) == len(hb) == 5
    for ma, mb in zip(ha, hb):
        assert (ma.train_loss, ma.val_loss, ma.val_mae, ma.lr) == (mb.train_loss, mb.val_loss, mb.val_mae, mb.lr)
    assert same_state(weights(a), weights(b))
    assert a.best_epoch == b.best_epoch


def test_different_seed_different_run(task):
    a, b = make_trainer(task, seed=0, epochs=2), make_trainer(task, seed=1, epochs=2)
    a.fit(), b.fit()
    assert [m.val_mae for m in a.history] != [m.val_mae for m in b.history]


# ---- the OneCycle schedule ----------------------------------------------------------------------

def test_one_cycle_schedule_is_live(task):
    max_lr = 1e-2
    epochs = 5  # 4 batches an epoch: 20 steps, and the peak (pct_start 0.3) falls exactly on step 6
    tr = make_trainer(task, epochs=epochs, lr=max_lr)
    steps_per_epoch = math.ceil(len(TRAIN) / 8)
    total = steps_per_epoch * epochs
    after: list[float] = []  # the optimizer's lr after each scheduler step
    orig_step = tr.sched.step

    def recording_step(*args, **kwargs):
        out = orig_step(*args, **kwargs)
        after.append(tr.opt.param_groups[0]["lr"])
        return out

    tr.sched.step = recording_step
    first_lr = tr.opt.param_groups[0]["lr"]
    history = tr.fit()

    assert len(after) == total, "the scheduler steps once per batch"
    assert tr.sched.last_epoch == total
    used = [first_lr, *after[:-1]]  # the lr each optimizer step actually used
    assert used[0] == pytest.approx(max_lr / 25, rel=1e-6)   # OneCycle's default div_factor
    assert max(used) == pytest.approx(max_lr, rel=1e-9)
    peak = int(np.argmax(used))
    assert 0 < peak < total - 1
    assert all(x < y for x, y in zip(used[:peak], used[1 : peak + 1])), "warm-up rises batch by batch"
    assert all(x > y for x, y in zip(used[peak:], used[peak + 1 :])), "annealing falls batch by batch"
    assert len(set(used[:steps_per_epoch])) == steps_per_epoch, "lr changes between batches, not per epoch"
    # the last step runs at OneCycle's floor, far below the start: max_lr / div_factor / final_div_factor
    assert used[-1] == pytest.approx(max_lr / 25 / 1e4, rel=1e-6)
    assert used[-1] < used[0] / 1000
    # the per-epoch metric reports the lr that the epoch's last optimizer step used
    assert history[-1].lr == pytest.approx(used[-1])
    assert history[0].lr == pytest.approx(used[steps_per_epoch - 1]) and history[0].lr > used[0]


def test_body_lr_factor_scales_the_body_schedule(task):
    seed_everything(0)
    model = PropertyModel(TINY)
    tr = Trainer(model, task, Scaler.fit(task.y[TRAIN]), OptimSpec(epochs=2, lr=1e-2, batch_size=8), TRAIN, VAL,
                 CPU, body_lr_factor=0.1)
    groups = {g["name"]: g for g in tr.opt.param_groups}
    assert set(groups) == {"body", "head"}
    assert groups["body"]["max_lr"] == pytest.approx(1e-3) and groups["head"]["max_lr"] == pytest.approx(1e-2)
    tr.fit()
    assert groups["body"]["lr"] == pytest.approx(0.1 * groups["head"]["lr"])


# ---- the optimizer the scheduler drives is the one that moves the weights -----------------------

def test_optimizer_moves_weights_and_is_the_schedulers(task):
    tr = make_trainer(task, epochs=2)
    before = weights(tr)
    tr.fit()
    assert tr.sched.optimizer is tr.opt, "scheduler must drive the optimizer that trains (alignn's rebuild bug)"
    after = weights(tr)
    trainable = {n for n, p in tr.model.named_parameters() if p.requires_grad}
    changed = [n for n in trainable if not torch.equal(before[n], after[n])]
    assert len(changed) > 0.9 * len(trainable), f"only {len(changed)}/{len(trainable)} parameters moved"
    assert any(n.startswith("body.") for n in changed) and any(n.startswith("head.") for n in changed)
    # every trainable parameter is in the optimizer, exactly once
    in_opt = [id(p) for g in tr.opt.param_groups for p in g["params"]]
    assert len(in_opt) == len(set(in_opt)) == len(trainable)


# ---- losses -------------------------------------------------------------------------------------

@pytest.mark.parametrize("loss", ["mse", "l1", "huber"])
def test_every_loss_trains(task, loss):
    tr = make_trainer(task, epochs=15, loss=loss, select="last")
    history = tr.fit()
    assert len(history) == 15
    first, last = history[0], history[-1]
    assert np.mean([m.train_loss for m in history[-3:]]) < 0.5 * first.train_loss
    assert last.val_mae < 0.5 * first.val_mae
    assert all(math.isfinite(m.train_loss) and math.isfinite(m.val_loss) for m in history)


def test_missing_labels_add_no_gradient(task):
    y = task.y.copy()
    y[TRAIN[:8]] = np.nan  # these eight structures have no label
    t = dataclasses.replace(task, y=y)
    tr = make_trainer(t, epochs=1, scaler=Scaler.fit(task.y[TRAIN]))
    assert tr.mask[TRAIN[:8]].sum() == 0 and tr.mask[TRAIN[8:]].sum() == 22
    loss, _ = tr.step(TRAIN[:8], train=True)
    assert float(loss) == 0.0
    assert all(p.grad is None or not p.grad.any() for p in tr.model.parameters())


# ---- early stopping -----------------------------------------------------------------------------

def test_patience_stops_a_run_that_cannot_improve(task):
    # lr so small the weights do not move: val_mae never improves on epoch 1 (equal is no improvement)
    tr = make_trainer(task, epochs=30, lr=1e-9, patience=2)
    history = tr.fit()
    assert len(history) < 30
    assert len(history) <= 3
    assert tr.epoch == len(history) and tr.epoch - tr.best_epoch == 2
    assert all(m.val_mae >= tr.best_val for m in history)


def test_patience_counts_epochs_since_the_best(task, monkeypatch):
    maes = iter([5.0, 4.0, 4.5, 4.2, 3.0, 2.0, 1.0])
    tr = make_trainer(task, epochs=7, patience=2)
    monkeypatch.setattr(tr, "_val_mae", lambda pred: next(maes))
    history = tr.fit()
    assert [m.val_mae for m in history] == [5.0, 4.0, 4.5, 4.2]
    assert tr.best_epoch == 2 and tr.best_val == 4.0


def test_no_patience_runs_every_epoch(task, monkeypatch):
    tr = make_trainer(task, epochs=4, patience=None)
    monkeypatch.setattr(tr, "_val_mae", lambda pred: 1.0)  # never improves after epoch 1
    assert len(tr.fit()) == 4


def test_callback_returning_true_stops_after_that_epoch(task):
    seen: list[tuple[int, object]] = []

    def callback(metrics: EpochMetrics, trainer: Trainer):
        seen.append((metrics.epoch, trainer))
        return metrics.epoch == 2

    tr = make_trainer(task, epochs=10)
    history = tr.fit(callback)
    assert len(history) == 2 and tr.epoch == 2
    assert [e for e, _ in seen] == [1, 2] and all(t is tr for _, t in seen)


def test_callback_returning_none_or_false_does_not_stop(task):
    tr = make_trainer(task, epochs=3)
    calls = []
    assert len(tr.fit(lambda m, t: calls.append(m.epoch) or (None if m.epoch == 1 else False))) == 3
    assert calls == [1, 2, 3]


# ---- best / last --------------------------------------------------------------------------------

def _run_with_late_regression(task, select: str) -> Trainer:
    tr = make_trainer(task, epochs=15, select=select, loss="mse")  # this setup regresses late with MSE
    tr.fit()
    assert tr.best_epoch < len(tr.history), "this setup must end on a worse epoch than its best"
    return tr


def test_select_best_restores_best_weights(task):
    tr = _run_with_late_regression(task, "best")
    assert tr.best_state is not None
    assert same_state(weights(tr), tr.best_state)
    assert tr.best_val == min(m.val_mae for m in tr.history) == tr.history[tr.best_epoch - 1].val_mae
    assert val_mae_now(tr) == pytest.approx(tr.best_val, rel=1e-5)
    assert val_mae_now(tr) != pytest.approx(tr.history[-1].val_mae, rel=1e-5)


def test_select_last_keeps_final_weights(task):
    tr = _run_with_late_regression(task, "last")
    assert tr.best_state is not None and not same_state(weights(tr), tr.best_state)
    assert val_mae_now(tr) == pytest.approx(tr.history[-1].val_mae, rel=1e-5)
    assert val_mae_now(tr) != pytest.approx(tr.best_val, rel=1e-5)


def test_best_state_is_a_snapshot(task):
    tr = make_trainer(task, epochs=15, select="last")
    snapshots = {}

    def callback(metrics, trainer):
        if trainer.best_epoch == metrics.epoch:
            snapshots[metrics.epoch] = {k: v.clone() for k, v in trainer.best_state.items()}

    tr.fit(callback)
    assert same_state(tr.best_state, snapshots[tr.best_epoch])


# ---- divergence ---------------------------------------------------------------------------------

def test_huge_target_raises_typed_divergence_error(task):
    scaler = Scaler.fit(task.y[TRAIN])  # fitted on the clean labels
    y = task.y.copy()
    y[TRAIN] = 1e30  # every training label is absurd: (pred - 1e28)**2 overflows float32
    tr = make_trainer(dataclasses.replace(task, y=y), epochs=3, scaler=scaler, loss="mse")
    with pytest.raises(DivergenceError, match="lower the learning rate") as info:
        tr.fit()
    assert isinstance(info.value, TlsearchError)
    assert "epoch 1" in str(info.value) and ("inf" in str(info.value) or "nan" in str(info.value))
    assert tr.history == [] and tr.epoch == 0


def test_nan_weights_raise_divergence_error(task):
    tr = make_trainer(task, epochs=3)
    with torch.no_grad():
        tr.model.head.fc.weight.fill_(float("nan"))
    with pytest.raises(DivergenceError, match="lower the learning rate"):
        tr.fit()


# ---- checkpoint / resume ------------------------------------------------------------------------

def test_resume_matches_an_uninterrupted_run(task, one_thread):
    full = make_trainer(task, epochs=6, seed=2)
    full.fit()

    saved = io.BytesIO()

    def checkpoint_and_stop(metrics, trainer):
        if metrics.epoch == 3:
            torch.save(trainer.state_dict(), saved)
            return True
        return False

    first = make_trainer(task, epochs=6, seed=2)
    first.fit(checkpoint_and_stop)
    assert first.epoch == 3

    saved.seek(0)
    state = torch.load(saved, weights_only=True)  # a checkpoint is plain data
    fresh = make_trainer(task, epochs=6, seed=2, model_seed=99)  # different initial weights
    assert not same_state(weights(fresh), state["model"])
    fresh.load_state_dict(state)
    assert fresh.epoch == 3 and len(fresh.history) == 3
    assert fresh.sched.last_epoch == 3 * math.ceil(len(TRAIN) / 8)
    fresh.fit()

    assert fresh.epoch == 6 and len(fresh.history) == 6
    np.testing.assert_allclose([m.val_mae for m in fresh.history], [m.val_mae for m in full.history],
                               rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose([m.train_loss for m in fresh.history], [m.train_loss for m in full.history],
                               rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose([m.lr for m in fresh.history], [m.lr for m in full.history], rtol=1e-9)
    assert fresh.best_epoch == full.best_epoch
    a, b = weights(fresh), weights(full)
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-6, atol=1e-6)


def test_load_state_dict_copies_best_state(task):
    tr = make_trainer(task, epochs=2)
    tr.fit()
    state = tr.state_dict()
    other = make_trainer(task, epochs=2, model_seed=5)
    other.load_state_dict(state)
    assert other.best_state is not tr.best_state
    k = next(iter(other.best_state))
    other.best_state[k].add_(1.0)
    assert not torch.equal(other.best_state[k], tr.best_state[k])


# ---- evaluation without autograd ----------------------------------------------------------------

def test_validation_runs_in_eval_mode_without_autograd(task):
    tr = make_trainer(task, epochs=2)
    calls: list[tuple[bool, bool, bool]] = []  # (model.training, grad enabled, output requires grad)

    def hook(module, inputs, output):
        calls.append((module.training, torch.is_grad_enabled(), output.requires_grad))

    handle = tr.model.register_forward_hook(hook)
    try:
        tr.model.eval()
        loss, pred = tr.step(VAL[:4], train=False)
        assert not pred.requires_grad and not loss.requires_grad
        assert calls == [(False, False, False)]
        assert tr.model.training is False

        calls.clear()
        tr.fit()
        train_calls = [c for c in calls if c[0]]
        eval_calls = [c for c in calls if not c[0]]
        assert train_calls and all(c == (True, True, True) for c in train_calls)
        assert eval_calls and all(c == (False, False, False) for c in eval_calls)
        assert len(eval_calls) == 2 * math.ceil(len(VAL) / 8)  # one validation pass per epoch

        calls.clear()
        preds = tr.predict(VAL)  # test-set prediction path
        assert preds.shape == (len(VAL), 1) and np.isfinite(preds).all()
        assert calls and all(c == (False, False, False) for c in calls)
        assert tr.model.training is False
    finally:
        handle.remove()


def test_eval_step_leaves_weights_and_optimizer_alone(task):
    tr = make_trainer(task, epochs=2)
    before = weights(tr)
    tr.run(VAL, train=False)
    assert same_state(before, weights(tr))
    assert tr.sched.last_epoch == 0 and not tr.opt.state


# ---- metrics ------------------------------------------------------------------------------------

def test_epoch_metrics_are_finite(task):
    tr = make_trainer(task, epochs=3)
    history = tr.fit()
    assert [m.epoch for m in history] == [1, 2, 3]
    for m in history:
        assert isinstance(m, EpochMetrics)
        d = m.as_dict()
        assert set(d) == {"epoch", "train_loss", "val_loss", "val_mae", "seconds", "structures_per_s", "lr",
                          "compute_seconds"}
        assert all(math.isfinite(v) for v in d.values()), d
        assert m.structures_per_s > 0 and m.seconds > 0 and m.lr > 0
        assert 0 < m.compute_seconds <= m.seconds * torch.get_num_threads() + 0.05  # this process's CPU seconds
        assert m.train_loss >= 0 and m.val_loss >= 0 and m.val_mae >= 0
        assert m.structures_per_s == pytest.approx(len(TRAIN) / m.seconds)
    # val_mae is in physical units: the same number recomputed from predictions of the final weights
    tr_last = make_trainer(task, epochs=3, select="last")
    tr_last.fit()
    assert val_mae_now(tr_last) == pytest.approx(tr_last.history[-1].val_mae, rel=1e-5)


def test_compute_seconds_fall_back_to_wall_seconds_for_histories_written_before_them():
    """A PT model's stored history or a checkpoint from before compute seconds were measured counts its wall
    seconds (the cost it was given then); a history with them counts them."""
    from tlsearch.training.engine import compute_seconds

    old = [{"epoch": 1, "train_loss": 1.0, "val_loss": 1.0, "val_mae": 1.0, "seconds": 2.0, "structures_per_s": 5.0,
            "lr": 1e-3}]
    new = [EpochMetrics(2, 1.0, 1.0, 1.0, 3.0, 5.0, 1e-3, compute_seconds=1.25)]
    assert compute_seconds(old) == 2.0 and compute_seconds(new) == 1.25
    assert compute_seconds(old + [m.as_dict() for m in new]) == 3.25
    assert EpochMetrics(**old[0]).compute_seconds is None  # a resumed trainer reads such a history
