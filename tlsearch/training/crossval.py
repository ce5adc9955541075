"""Cross-validated fine-tuning: k fold models trained in lockstep, scored out of fold.

A fine-tuning sample is split into k folds (:func:`tlsearch.data.cv_folds`: the same folds for every configuration
of a study). Fold model i trains on the other k-1 folds and is validated on fold i, so every structure of the
sample is validated exactly once. The folds advance together, one epoch at a time, so each epoch has one
**out-of-fold MAE** over the whole sample: what a scheduler's rung and the search see (not one fold's number).

The epoch is chosen without peeking at a fold's own minimum: ``select: last`` keeps the final epoch, ``select:
best`` the one epoch whose out-of-fold MAE over all folds is lowest, shared by every fold model. The delivered model
is the fold models as an ensemble (their mean prediction); its held-out test MAE is reported as the ensemble's and
per fold.

:class:`CrossValTrainer` has the :class:`~tlsearch.training.engine.Trainer` surface a trial's observers use
(``fit``, ``history``, ``epoch``, ``best_epoch``, ``state_dict``/``load_state_dict``, ``model``, ``pretrain``).
"""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np
import torch
from torch import nn

from tlsearch.training.engine import Callback, EpochMetrics, Trainer


class CrossValTrainer:
    """The fold trainers of one sample, run in lockstep; ``folds[i]`` is the validation fold of ``trainers[i]``."""

    def __init__(self, trainers: list[Trainer], folds: list[np.ndarray], y: np.ndarray) -> None:
        if len(trainers) != len(folds) or len(trainers) < 2:
            raise ValueError(f"need one trainer per fold and >= 2 folds, got {len(trainers)} trainers, {len(folds)} folds")
        self.trainers, self.folds = trainers, [np.asarray(f) for f in folds]
        self.sample = np.concatenate(self.folds)
        self.y = np.asarray(y, dtype=float)  # the task's targets, physical units, (structures,)
        self.optim = trainers[0].optim
        self.model = nn.ModuleList([t.model for t in trainers])  # every fold's weights (observers poison/count them)
        self.history: list[EpochMetrics] = []
        self.epoch = 0
        self.best_val = math.inf
        self.best_epoch = 0
        self.best_states: list[dict[str, torch.Tensor]] | None = None
        self.oof: np.ndarray = np.full(len(self.sample), np.nan)  # out-of-fold predictions, sample order
        self.pretrain: Any = None

    @property
    def k(self) -> int:
        return len(self.trainers)

    def _epoch(self) -> tuple[EpochMetrics, np.ndarray]:
        rows, preds = [], []
        for t in self.trainers:
            m, p = t.run_epoch()
            rows.append(m)
            preds.append(p[:, 0])
        self.epoch += 1
        oof = np.concatenate(preds)
        mae = float(np.mean(np.abs(oof - self.y[self.sample])))
        n_val = [len(f) for f in self.folds]
        n_train = sum(len(t.train_idx) for t in self.trainers)
        secs = sum(m.seconds for m in rows)
        compute = sum(m.seconds if m.compute_seconds is None else m.compute_seconds for m in rows)
        metrics = EpochMetrics(
            self.epoch, float(np.average([m.train_loss for m in rows], weights=[len(t.train_idx) for t in self.trainers])),
            float(np.average([m.val_loss for m in rows], weights=n_val)), mae, secs, n_train / secs if secs else 0.0,
            rows[0].lr, compute)
        self.history.append(metrics)
        return metrics, oof

    def fit(self, callback: Callback | None = None) -> list[EpochMetrics]:
        while self.epoch < self.optim.epochs:
            metrics, oof = self._epoch()
            if metrics.val_mae < self.best_val:
                self.best_val, self.best_epoch = metrics.val_mae, self.epoch
                if self.optim.select == "best":  # one shared epoch: every fold model's weights at it
                    self.best_states = [{k: v.detach().clone() for k, v in t.model.state_dict().items()}
                                        for t in self.trainers]
                    self.oof = oof
            if self.optim.select == "last":
                self.oof = oof
            stop = bool(callback(metrics, self)) if callback else False
            patience = self.optim.patience
            if stop or (patience and self.epoch - self.best_epoch >= patience):
                break
        if self.optim.select == "best" and self.best_states is not None:
            for t, state in zip(self.trainers, self.best_states):
                t.model.load_state_dict(state)
        return self.history

    def chosen_epoch(self) -> int:
        """The epoch whose weights every fold model holds after ``fit``."""
        return self.best_epoch if self.optim.select == "best" and self.best_states is not None else self.epoch

    def val_fold_maes(self) -> list[float]:
        """Each fold's validation MAE at the chosen epoch (its share of the out-of-fold MAE)."""
        out, start = [], 0
        for f in self.folds:
            p = self.oof[start : start + len(f)]
            out.append(float(np.mean(np.abs(p - self.y[f]))))
            start += len(f)
        return out

    def predict(self, idx: np.ndarray) -> np.ndarray:
        """Each fold model's predictions in physical units, (len(idx), folds); their mean is the ensemble's."""
        return np.stack([t.predict(idx)[:, 0] for t in self.trainers], axis=1)

    # ---- checkpoints -----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"cv": True, "folds": [t.state_dict() for t in self.trainers], "epoch": self.epoch,
                "best_val": self.best_val, "best_epoch": self.best_epoch, "best_states": self.best_states,
                "oof": torch.as_tensor(self.oof), "history": [m.as_dict() for m in self.history]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not state.get("cv") or len(state["folds"]) != self.k:
            raise ValueError(f"this checkpoint is not of a {self.k}-fold cross-validated trial")
        for t, s in zip(self.trainers, state["folds"]):
            t.load_state_dict(s)
        self.epoch, self.best_val, self.best_epoch = state["epoch"], state["best_val"], state["best_epoch"]
        self.best_states = copy.deepcopy(state["best_states"])
        self.oof = np.asarray(state["oof"], dtype=float)
        self.history = [EpochMetrics(**m) for m in state["history"]]
