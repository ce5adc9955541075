"""``train_trial(config) -> TrialResult``: everything one trial does, usable from plain Python.

scratch:  sample the target's FT pool -> train a fresh model.
finetune: pre-train on one source property (through the store: once per distinct setup) -> copy the
          body (and the single-output head unless a new/re-initialised head is asked for) -> freeze per
          strategy -> fine-tune on the sample.
mpt:      pre-train one body with one head per source property (labels merged across datasets, loss
          masked where missing, target property left out unless asked) -> body + fresh head -> fine-tune.
The target's held-out test set is scored once, at the end; it never steers training or selection.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

from tlsearch.data import cv_folds, draw_sample, folds_for, train_val_split
from tlsearch.data.descriptors import descriptor_matrix
from tlsearch.prepared import PreparedDataset, prepare
from tlsearch.training.checkpoint import save_checkpoint
from tlsearch.training.config import CheckpointSpec, TargetSpec, TrainConfig
from tlsearch.training.crossval import CrossValTrainer
from tlsearch.training.engine import Callback, EpochMetrics, Stepper, Trainer, compute_seconds, pick_device
from tlsearch.training.freeze import apply_freeze, trainable_prefixes
from tlsearch.training.model import PropertyModel, count_parameters
from tlsearch.training.predict import model_file
from tlsearch.training.store import PretrainStore, StoreEntry
from tlsearch.training.tasks import Scaler, merged_task, sampled_merged_task, single_task


def regression_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    y, p = np.asarray(y, dtype=float).ravel(), np.asarray(p, dtype=float).ravel()
    err = p - y
    ss_tot = float(((y - y.mean()) ** 2).sum()) if len(y) else 0.0
    return {"mae": float(np.abs(err).mean()), "rmse": float(np.sqrt((err**2).mean())),
            "r2": float(1 - (err**2).sum() / ss_tot) if ss_tot > 0 else float("nan"), "n": int(len(y))}


@dataclass
class PretrainInfo:
    key: str
    sources: list[str]
    store_hit: bool
    pt_seconds: float
    wait_seconds: float
    epochs: int
    n_train: int
    train_seconds: float = 0.0  # the PT epochs' own seconds (pt_seconds also counts building its data)
    compute_seconds: float = 0.0  # the PT epochs' compute (engine.compute_seconds: CPU seconds on a CPU)


@dataclass
class TrialResult:
    name: str
    mode: str
    history: list[EpochMetrics]
    best_epoch: int
    val: dict[str, float]
    test: dict[str, float]
    eval_sets: dict[str, dict[str, float]] = field(default_factory=dict)
    pretrain: PretrainInfo | None = None
    n_train: int = 0
    n_val: int = 0
    n_params: int = 0
    n_trainable: int = 0
    seconds: float = 0.0
    predictions: Path | None = None
    device: str = "cpu"
    gpu_peak_mb: float | None = None  # the GPU memory this trial's tensors peaked at (CUDA only)
    # cross-validation (``train.cv_folds``): how many fold models; ``val`` is then the out-of-fold MAE over the whole
    # sample and ``test`` the fold ensemble's; these hold each fold's own validation and test metrics
    folds: int = 1
    val_folds: list[dict[str, float]] = field(default_factory=list)
    test_folds: list[dict[str, float]] = field(default_factory=list)
    chosen_epoch: int = 0  # the epoch whose weights the delivered model(s) hold


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _prep(cfg: TrainConfig, dataset: str, prop: str) -> PreparedDataset:
    return prepare(dataset, cfg.graph.params(), prop=prop, test_fraction=cfg.test_fraction,
                   split_seed=cfg.split_seed, cache=cfg.cache_dir)


def _pt_sources(cfg: TrainConfig) -> list[tuple[str, str]]:
    assert cfg.pretrain is not None
    srcs = [(s.dataset, s.property) for s in cfg.pretrain.sources if isinstance(s, TargetSpec)]
    if cfg.mode == "mpt" and not cfg.pretrain.include_target:
        srcs = [s for s in srcs if s != (cfg.target.dataset, cfg.target.property)] or srcs
    return srcs


def store_for(cfg: TrainConfig) -> PretrainStore:
    """The store a trial of ``cfg`` uses: ``store_dir``, else ``<cache_dir>/pretrained``, else the default."""
    store_dir = cfg.store_dir or (str(Path(cfg.cache_dir) / "pretrained") if cfg.cache_dir else None)
    return PretrainStore(store_dir)


def pt_material(cfg: TrainConfig, exclude: set[str]) -> dict[str, Any]:
    """Everything that determines the PT model of ``cfg`` (its store key is a hash of this)."""
    assert cfg.pretrain is not None
    pt = cfg.pretrain
    return {"sources": _pt_sources(cfg), "sample_size": pt.sample_size, "val_fraction": pt.val_fraction,
            "head": "multi" if cfg.mode == "mpt" else "linear", "head_depth": pt.head_depth,
            "optim": pt.optim.model_dump(), "seed": pt.seed, "model": cfg.model.model_dump(),
            "graph": cfg.graph.params().key_material(), "test_fraction": cfg.test_fraction,
            "split_seed": cfg.split_seed, "exclude": sorted(exclude),
            # a sample is drawn before graphs are built (graph failures leave the draw): not the older models
            **({"sample_before_graphs": True} if pt.sample_size != "all" else {})}


def _pretrain(cfg: TrainConfig, exclude: set[str], device: torch.device,
              progress: Callback | None = None) -> StoreEntry:
    assert cfg.pretrain is not None
    pt = cfg.pretrain
    sources = _pt_sources(cfg)
    material = pt_material(cfg, exclude)
    head = material["head"]

    def train() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        if pt.sample_size == "all":
            task = merged_task([(_prep(cfg, d, p), p) for d, p in sources], exclude)
        else:  # the sample is drawn first and only its graphs are built
            task = sampled_merged_task(sources, exclude, pt.sample_size, pt.seed, cfg.graph.params(),
                                       test_fraction=cfg.test_fraction, split_seed=cfg.split_seed, cache=cfg.cache_dir)
        sample = np.arange(len(task))  # all of it, or the drawn sample
        tr, va = train_val_split(sample, pt.val_fraction, seed=pt.seed)
        scaler = Scaler.fit(task.y[tr], pt.optim.scaling)
        seed_everything(pt.seed)
        model = PropertyModel(cfg.model, head, len(task.properties), pt.head_depth, cfg.graph.atom_features)
        trainer = Trainer(model, task, scaler, pt.optim, tr, va, device, cfg.amp, pt.seed)
        trainer.fit(progress)
        meta = {"properties": list(task.properties), "scaler": scaler.to_dict(), "head": head,
                "n_train": int(len(tr)), "n_val": int(len(va)), "epochs": trainer.epoch,
                "best_val": trainer.best_val, "history": [m.as_dict() for m in trainer.history]}
        return model.state_dict(), meta

    return store_for(cfg).get_or_train(material, train)


def _held_out_keys(cfg: TrainConfig, prep: PreparedDataset | None = None) -> set[str]:
    """The target's held-out test structures, and those of ``pretrain.held_out_of`` (the study's other targets):
    pre-training never sees them (leakage guard)."""
    prep = prep or _prep(cfg, cfg.target.dataset, cfg.target.property)
    task = single_task(prep, cfg.target.property)
    keys = {task.keys[i] for i in prep.split.test}
    for other in cfg.pretrain.held_out_of if cfg.pretrain else []:
        op = _prep(cfg, other.dataset, other.property)
        otask = single_task(op, other.property)
        keys |= {otask.keys[i] for i in op.split.test}
    return keys


def pretrained_entry(cfg: TrainConfig, progress: Callback | None = None, *,
                     prep: PreparedDataset | None = None, device: torch.device | None = None) -> StoreEntry:
    """The PT model a ``finetune``/``mpt`` trial of ``cfg`` starts from: loaded from the store, or trained into
    it (``progress`` sees each PT epoch then). ``tlsearch pretrain`` calls this too, so both compute one key."""
    if cfg.pretrain is None or any(isinstance(s, CheckpointSpec) for s in cfg.pretrain.sources):
        raise ValueError(f"mode {cfg.mode!r} with these sources pre-trains nothing (scratch, or a checkpoint source)")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = device or pick_device(cfg.device)
    return _pretrain(cfg, _held_out_keys(cfg, prep), device, progress)


def _from_checkpoint(cfg: TrainConfig, src: CheckpointSpec) -> tuple[StoreEntry, PretrainInfo]:
    """A checkpoint PT source: its weights, checked against the trial's architecture; nothing is pre-trained."""
    from tlsearch.training.pt_checkpoint import check_architecture, read_checkpoint

    ckpt = read_checkpoint(src.checkpoint)
    check_architecture(ckpt, cfg.model, cfg.graph.atom_features)
    entry = StoreEntry(ckpt.digest[:32], ckpt.path, ckpt.state, {"head": ckpt.head, **ckpt.meta}, hit=False,
                       wait_seconds=0.0)
    return entry, PretrainInfo(entry.key, [src.label], False, 0.0, 0.0, int(ckpt.meta.get("epochs") or 0),
                               int(ckpt.meta.get("n_train") or 0))


def _init_from_pretrained(model: PropertyModel, cfg: TrainConfig, entry: StoreEntry) -> None:
    body = {k[len("body."):]: v for k, v in entry.state.items() if k.startswith("body.")}
    model.body.load_state_dict(body)
    tr = cfg.train
    if tr.freeze == "new_head":
        model.replace_head("mlp")
    elif cfg.mode == "finetune" and not tr.reinit_head and entry.meta.get("head", "linear") == "linear":
        # keep the PT property's fc, as the paper does (a checkpoint with another head gets a fresh one)
        model.head.load_state_dict({k[len("head."):]: v for k, v in entry.state.items() if k.startswith("head.")})


def sample_parts(cfg: TrainConfig, sample: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train, validation) index pairs of a drawn FT sample: one 90/10-style split, or with ``train.cv_folds`` one
    pair per fold (every structure of the sample validated exactly once; the same folds for every configuration)."""
    tr = cfg.train
    k = folds_for(len(sample), tr.cv_folds)
    if k <= 1:
        return [train_val_split(sample, tr.val_fraction, seed=tr.sample_seed)]
    return [(np.setdiff1d(sample, f), f) for f in cv_folds(sample, k, seed=tr.sample_seed)]


def _new_trainer(cfg: TrainConfig, task: Any, entry: StoreEntry | None, train_idx: np.ndarray, val_idx: np.ndarray,
                 device: torch.device) -> Trainer:
    """A fresh model (seeded: every fold of a trial starts from the same weights), initialised from the PT model,
    frozen per strategy, and its trainer."""
    tr = cfg.train
    seed_everything(cfg.seed)
    model = PropertyModel(cfg.model, "linear", 1, atom_features=cfg.graph.atom_features)
    if entry is not None:
        _init_from_pretrained(model, cfg, entry)
    prefixes = trainable_prefixes(tr.freeze, cfg.model.alignn_layers, cfg.model.gcn_layers, tr.freeze_depth)
    apply_freeze(model, prefixes)
    scaler = Scaler.fit(task.y[train_idx], tr.optim.scaling)
    return Trainer(model, task, scaler, tr.optim, train_idx, val_idx, device, cfg.amp, cfg.seed, tr.body_lr_factor)


def train_trial(cfg: TrainConfig, callback: Callback | None = None, resume: dict[str, Any] | None = None) -> TrialResult:
    t0 = time.perf_counter()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = pick_device(cfg.device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    prep = _prep(cfg, cfg.target.dataset, cfg.target.property)
    task = single_task(prep, cfg.target.property)
    tr = cfg.train
    desc = descriptor_matrix([r.atoms for r in prep.dataset.records]) if tr.sampling == "diverse" else None
    sample = draw_sample(prep.split.pool, tr.sample_size, tr.sampling, seed=tr.sample_seed,
                         targets=task.y[:, 0], descriptors=desc)
    parts = sample_parts(cfg, sample)

    entry, info = None, None
    if cfg.mode != "scratch":
        src = cfg.pretrain.sources[0] if cfg.pretrain else None
        if isinstance(src, CheckpointSpec):
            entry, info = _from_checkpoint(cfg, src)
        else:
            entry = pretrained_entry(cfg, prep=prep, device=device)
            m = entry.meta
            epochs_s = sum(h.get("seconds", 0.0) for h in m["history"]) if m.get("history") else m["pt_seconds"]
            info = PretrainInfo(entry.key, [f"{d}/{p}" for d, p in _pt_sources(cfg)], entry.hit, m["pt_seconds"],
                                entry.wait_seconds, m["epochs"], m["n_train"], epochs_s,
                                compute_seconds(m["history"]) if m.get("history") else m["pt_seconds"])

    trainers = [_new_trainer(cfg, task, entry, tr_idx, va_idx, device) for tr_idx, va_idx in parts]
    trainer: Trainer | CrossValTrainer = (trainers[0] if len(trainers) == 1 else
                                          CrossValTrainer(trainers, [va for _, va in parts], task.y[:, 0]))
    trainer.pretrain = info
    if resume is not None:
        trainer.load_state_dict(resume)
    trainer.fit(callback)

    test_idx = prep.split.test
    y_test = task.y[test_idx, 0]
    if isinstance(trainer, CrossValTrainer):
        val_idx, p_val = trainer.sample, trainer.oof
        per_fold = trainer.predict(test_idx)
        p_test = per_fold.mean(axis=1)
        val_folds = [{"mae": m, "n": len(f)} for m, f in zip(trainer.val_fold_maes(), trainer.folds)]
        test_folds = [regression_metrics(y_test, per_fold[:, i]) for i in range(trainer.k)]
        fold_of = np.concatenate([np.full(len(f), i) for i, f in enumerate(trainer.folds)])
        chosen = trainer.chosen_epoch()
    else:
        val_idx = parts[0][1]
        p_val, p_test = trainer.predict(val_idx)[:, 0], trainer.predict(test_idx)[:, 0]
        val_folds, test_folds, fold_of = [], [], np.zeros(len(val_idx), dtype=int)
        chosen = trainer.best_epoch if tr.optim.select == "best" and trainer.best_state is not None else trainer.epoch
    val, test = regression_metrics(task.y[val_idx, 0], p_val), regression_metrics(y_test, p_test)
    evals = {}
    for spec in cfg.eval_sets:
        ep = _prep(cfg, spec.dataset, spec.property)
        etask = single_task(ep, spec.property)
        idx = np.arange(len(etask))
        pred = np.mean([Stepper(t.model, etask, t.scaler, tr.optim.loss, tr.optim.batch_size, device, cfg.amp)
                        .predict(idx)[:, 0] for t in trainers], axis=0)
        evals[spec.label] = regression_metrics(etask.y[:, 0], pred)
    pred_path = None
    if cfg.output_dir:
        out = Path(cfg.output_dir)
        for i, t in enumerate(trainers):
            extra = {"val": val, "test": test, "best_epoch": trainer.best_epoch, "chosen_epoch": chosen}
            if len(trainers) > 1:
                extra.update(fold=i, folds=len(trainers), fold_val=val_folds[i], fold_test=test_folds[i])
            save_checkpoint(out / model_file(0, None if len(trainers) == 1 else i), t.model, t.scaler,
                            cfg, extra)
        pred_path = out / "predictions.parquet"
        pred_path.parent.mkdir(parents=True, exist_ok=True)
        ids = prep.dataset.ids
        pl.DataFrame({
            "split": ["val"] * len(val_idx) + ["test"] * len(test_idx),
            "id": [ids[i] for i in val_idx] + [ids[i] for i in test_idx],
            "y_true": np.concatenate([task.y[val_idx, 0], y_test]),
            "y_pred": np.concatenate([p_val, p_test]),
            # the fold that validated the structure (its out-of-fold prediction); -1 on the test set (the ensemble)
            "fold": np.concatenate([fold_of, np.full(len(test_idx), -1)]).astype(np.int64),
        }).write_parquet(pred_path)
    n_params, n_trainable = count_parameters(trainers[0].model)
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    return TrialResult(cfg.name, cfg.mode, trainer.history, trainer.best_epoch, val, test, evals, info,
                       len(parts[0][0]), len(val_idx), n_params, n_trainable, time.perf_counter() - t0, pred_path,
                       device.type, peak, len(trainers), val_folds, test_folds, chosen)
