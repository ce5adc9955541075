"""The training loop: one shared step for train, validation and test.

AdamW and OneCycle are built together, once, and the schedule steps per batch. Targets are scaled to
[-1, 1]; the loss is masked where a label is missing, so a missing label adds no gradient. Validation and
test run in eval mode without autograd. Progress leaves through a callback (this module imports neither
Ray nor W&B); ``state_dict``/``load_state_dict`` let a caller checkpoint and resume mid-run.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tlsearch.errors import TlsearchError
from tlsearch.training.config import OptimSpec
from tlsearch.training.freeze import set_train_mode
from tlsearch.training.tasks import Scaler, Task


class DivergenceError(TlsearchError):
    """The training loss became NaN or infinite."""


@dataclass
class EpochMetrics:
    epoch: int                # 1-based
    train_loss: float         # scaled units
    val_loss: float           # scaled units
    val_mae: float            # physical units (single property) or mean scaled MAE (several)
    seconds: float
    structures_per_s: float
    lr: float
    # what the epoch cost: this process's CPU seconds on a CPU (other processes' load does not inflate it, as it
    # does wall seconds), wall seconds on an accelerator; None in histories written before it was measured
    compute_seconds: float | None = None

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def compute_seconds(history: list[EpochMetrics] | list[dict[str, Any]]) -> float:
    """The compute of a run's epochs (``compute_seconds``; wall ``seconds`` for an epoch that lacks it)."""
    rows = [h.as_dict() if isinstance(h, EpochMetrics) else h for h in history]
    return float(sum(h["seconds"] if h.get("compute_seconds") is None else h["compute_seconds"] for h in rows))


Callback = Callable[[EpochMetrics, "Trainer"], bool | None]  # return True to stop early


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise TlsearchError("device 'cuda' was asked for but torch sees no CUDA GPU")
    return torch.device(name)


def bf16_supported(device: torch.device) -> bool:
    """bf16 autocast pays off on CUDA and on CPUs with native bf16 (AVX512-BF16 / AMX); elsewhere fp32."""
    if device.type == "cuda":
        return True
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except Exception:
        return False


def _loss(kind: str, pred: torch.Tensor, y: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    if kind == "mse":
        err = (pred - y) ** 2
    elif kind == "l1":
        err = (pred - y).abs()
    else:
        err = F.huber_loss(pred, y, reduction="none", delta=0.1)
    return (err * mask).sum() / mask.sum().clamp_min(1.0)


class Stepper:
    """Runs the model over a task in batches: the one step shared by training, validation and test."""

    def __init__(self, model: nn.Module, task: Task, scaler: Scaler, loss: str, batch_size: int,
                 device: torch.device, amp: bool = False) -> None:
        self.model, self.task, self.scaler = model.to(device), task, scaler
        self.loss_kind, self.batch_size, self.device = loss, batch_size, device
        # DGL's own kernels (the classic backend) have no bf16 versions: that backend always runs fp32
        self.amp = amp and bf16_supported(device) and getattr(getattr(model, "spec", None), "backend", "") != "dgl"
        ys = scaler.transform(task.y)
        self.mask = torch.as_tensor(np.isfinite(ys), dtype=torch.float32)
        self.ys = torch.as_tensor(np.where(np.isfinite(ys), ys, 0.0), dtype=torch.float32)  # masked anyway
        self.last_lr = math.nan
        self.opt: torch.optim.Optimizer | None = None
        self.sched: torch.optim.lr_scheduler.LRScheduler | None = None
        self.epoch = 0

    # ---- the one shared step ---------------------------------------------------------------------
    def step(self, idx: np.ndarray, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
        g, lg = self.task.batch(idx)
        if self.device.type != "cpu":
            g, lg = g.to(self.device), lg.to(self.device)
        y = self.ys[idx].to(self.device)
        m = self.mask[idx].to(self.device)
        amp = torch.autocast(self.device.type, dtype=torch.bfloat16) if self.amp else nullcontext()
        with torch.set_grad_enabled(train), amp:
            pred = self.model(g, lg).float()
            loss = _loss(self.loss_kind, pred, y, m)
        if train:
            assert self.opt is not None and self.sched is not None, "training needs a Trainer"
            if not torch.isfinite(loss):
                raise DivergenceError(f"training loss became {loss.item()} at epoch {self.epoch + 1}; "
                                      "lower the learning rate or check the targets")
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
            self.last_lr = float(self.opt.param_groups[-1]["lr"])  # the lr this step used (head group)
            self.sched.step()
        return loss.detach(), pred.detach()

    def run(self, idx: np.ndarray, train: bool) -> tuple[float, np.ndarray]:
        """One pass over ``idx`` in batches; returns the mean loss and the scaled predictions."""
        if train:
            set_train_mode(self.model)
        else:
            self.model.eval()
        bs = self.batch_size
        losses, preds, weights = [], [], []
        for start in range(0, len(idx), bs):
            chunk = idx[start : start + bs]
            loss, pred = self.step(chunk, train)
            losses.append(float(loss))
            weights.append(len(chunk))
            preds.append(pred.cpu().numpy())
        mean = float(np.average(losses, weights=weights)) if losses else math.nan
        return mean, np.concatenate(preds) if preds else np.zeros((0, self.ys.shape[1]))

    def predict(self, idx: np.ndarray) -> np.ndarray:
        """Predictions in physical units, (len(idx), properties)."""
        return self.scaler.inverse(self.run(np.asarray(idx), train=False)[1])


class Trainer(Stepper):
    def __init__(self, model: nn.Module, task: Task, scaler: Scaler, optim: OptimSpec, train_idx: np.ndarray,
                 val_idx: np.ndarray, device: torch.device, amp: bool = False, seed: int = 0,
                 body_lr_factor: float = 1.0) -> None:
        super().__init__(model, task, scaler, optim.loss, optim.batch_size, device, amp)
        self.optim, self.seed = optim, seed
        self.train_idx, self.val_idx = np.asarray(train_idx), np.asarray(val_idx)
        groups = []
        for name, factor in (("body", body_lr_factor), ("head", 1.0)):
            params = [p for n, p in model.named_parameters() if n.startswith(name + ".") and p.requires_grad]
            if params:
                groups.append({"params": params, "lr": optim.lr * factor, "name": name})
        if not groups:
            raise TlsearchError("no trainable parameters: the freeze strategy froze everything")
        self.opt = torch.optim.AdamW(groups, lr=optim.lr, weight_decay=optim.weight_decay)
        steps = max(1, math.ceil(len(self.train_idx) / optim.batch_size)) * optim.epochs
        pct_start = optim.pct_start
        if float(pct_start * steps) - 1 == 0:  # warm-up peaks at step 0: OneCycleLR would divide by zero
            pct_start *= 1 - 1e-9
        self.sched = torch.optim.lr_scheduler.OneCycleLR(
            self.opt, max_lr=[g["lr"] for g in groups], total_steps=steps, pct_start=pct_start)
        self.history: list[EpochMetrics] = []
        self.best_val = math.inf
        self.best_epoch = 0
        self.best_state: dict[str, torch.Tensor] | None = None
        self.pretrain: Any = None  # the PretrainInfo this run starts from (for per-epoch observers), or None

    def _val_mae(self, pred_scaled: np.ndarray) -> float:
        y = self.task.y[self.val_idx]
        if y.shape[1] == 1:
            return float(np.nanmean(np.abs(self.scaler.inverse(pred_scaled) - y)))
        err = np.abs(pred_scaled - self.scaler.transform(y))
        return float(np.nanmean(np.nanmean(err, axis=0)))

    # ---- the loop --------------------------------------------------------------------------------
    def run_epoch(self) -> tuple[EpochMetrics, np.ndarray]:
        """Train one epoch, then score the validation set; returns the epoch's metrics (also appended to
        ``history``) and the validation predictions in physical units. Choosing an epoch is the caller's."""
        t0, c0 = time.perf_counter(), time.process_time()
        order = self.train_idx[torch.randperm(len(self.train_idx),
                                              generator=torch.Generator().manual_seed(self.seed * 100003 + self.epoch)).numpy()]
        train_loss, _ = self.run(order, train=True)
        val_loss, val_pred = self.run(self.val_idx, train=False)
        self.epoch += 1
        secs = time.perf_counter() - t0
        compute = time.process_time() - c0 if self.device.type == "cpu" else secs
        metrics = EpochMetrics(self.epoch, train_loss, val_loss, self._val_mae(val_pred), secs,
                               len(self.train_idx) / secs, self.last_lr, compute)
        self.history.append(metrics)
        return metrics, self.scaler.inverse(val_pred)

    def fit(self, callback: Callback | None = None) -> list[EpochMetrics]:
        while self.epoch < self.optim.epochs:
            metrics, _ = self.run_epoch()
            if metrics.val_mae < self.best_val:
                self.best_val, self.best_epoch = metrics.val_mae, self.epoch
                self.best_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
            stop = bool(callback(metrics, self)) if callback else False
            patience = self.optim.patience
            if stop or (patience and self.epoch - self.best_epoch >= patience):
                break
        if self.optim.select == "best" and self.best_state is not None:
            self.model.load_state_dict(self.best_state)
        return self.history

    # ---- checkpoints -----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "opt": self.opt.state_dict(), "sched": self.sched.state_dict(),
                "epoch": self.epoch, "best_val": self.best_val, "best_epoch": self.best_epoch,
                "best_state": self.best_state, "history": [m.as_dict() for m in self.history]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["opt"])
        self.sched.load_state_dict(state["sched"])
        self.epoch, self.best_val, self.best_epoch = state["epoch"], state["best_val"], state["best_epoch"]
        self.best_state = copy.deepcopy(state["best_state"])
        self.history = [EpochMetrics(**m) for m in state["history"]]
