"""Predict with a trained configuration: the models of its repeats as an ensemble.

A model directory holds one tlsearch model file per repeat (``model.pt`` for repeat 0, ``model_repeat<i>.pt`` for
repeat i; each the weights, target scaler and TrainConfig, see :mod:`tlsearch.training.checkpoint`): a finished
trial's final checkpoint directory (``model_dir`` in trials.parquet) or a directory ``tlsearch export`` wrote (its
``model.json`` and model card next to them). One call loads it::

    from tlsearch.training import load_model
    model = load_model("exported/smoke-ft40")
    pred = model.predict_from("my_structures/")      # a folder, a structure file or a dataset reference
    pred.to_frame()                                  # id, y_pred (mean over repeats), y_std, ... per structure

Graphs are built with the models' own graph settings (through the graph cache in ``$TLSEARCH_CACHE``: a second call
on the same structures builds none); structures without a usable graph are returned in ``skipped`` with their reason,
the rest are predicted by every repeat. Inference runs under ``torch.inference_mode`` in batches of ``batch_size``
structures (each batch is assembled once and run through every repeat) on ``threads`` torch threads: by default the
CPUs this process may use (its affinity) that other work leaves free (:func:`default_threads`), so that its threads do
not spin against other processes.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

from tlsearch.data import Skipped
from tlsearch.errors import UserInputError
from tlsearch.graphs import GraphCache
from tlsearch.training.checkpoint import load_checkpoint
from tlsearch.training.config import TrainConfig
from tlsearch.training.engine import bf16_supported, pick_device
from tlsearch.training.model import PropertyModel
from tlsearch.training.tasks import Scaler, Task

MODEL_FILE = re.compile(r"model(?:_repeat(\d+))?(?:_fold(\d+))?\.pt")
INFO_FILE = "model.json"
# (stage, done, total): stage "read" and "graphs" count structures, "predict" structures run through every repeat
Progress = Callable[[str, int, int], None]
DEFAULT_BATCH = 64  # structures per inference batch (training uses 16: inference keeps no activations for backward)


def default_threads() -> int:
    """Torch threads that fit the CPUs this process has: its CPU affinity (a container's or ``taskset``'s share),
    less the CPUs other work keeps busy (the 1-minute load average against the machine's CPU count), at least 1.
    Threads beyond the free CPUs cost far more than they bring: OpenMP threads spin at every barrier while one of
    them waits for a core (2 threads on 2 cores beside other work: 6-16x the CPU time and 5-18x the wall time of 1
    thread; docs/benchmarks.md, "`predict` speed"). On an idle machine this is the affinity."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS has no affinity call
        cpus = os.cpu_count() or 1
    try:
        busy = os.getloadavg()[0]
    except OSError:  # pragma: no cover - no load average on this platform
        busy = 0.0
    free = (os.cpu_count() or cpus) - busy
    return max(1, min(cpus, int(free + 0.5)))


def positive(value: Any, name: str, example: int) -> int:
    """``value`` when it is a whole number >= 1; else a :class:`UserInputError` naming ``name`` (the option or
    argument the user gave it with) with ``example`` as a good value."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UserInputError(f"{name} {value!r}: must be a whole number >= 1; fix: give e.g. {name} {example}")
    return value


def keep_freed_memory() -> bool:
    """Let this process reuse the memory of freed tensors instead of handing it back to the OS after every op.

    glibc serves blocks above its mmap threshold (at most 32 MB) with fresh mappings and unmaps them when they are
    freed, so each batch's large activations (line-graph edges x hidden features) are page-faulted in and zeroed by
    the kernel again: on 1 thread that was 35-40 % of the CPU time of inference at batch 64 and 57 % at 128, all of
    it system time (``benchmarks/predict.py``), and it made large batches slower than small ones. Raising the mmap
    and trim thresholds keeps such blocks in the heap for reuse. Process-wide and for good, so `tlsearch predict`
    (whose process ends after predicting) calls it; a long-lived Python process may call it too. True when applied,
    False where there is no ``mallopt``."""
    import ctypes
    import ctypes.util

    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):  # pragma: no cover - not glibc
        return False
    m_trim_threshold, m_mmap_threshold, limit = -1, -3, 1 << 30
    return bool(mallopt(m_mmap_threshold, limit)) and bool(mallopt(m_trim_threshold, limit))


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block on ``n`` torch intra-op threads, then restore the caller's setting."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def model_file(repeat: int, fold: int | None = None) -> str:
    """The name of a repeat's model file in a model directory (of fold ``fold`` of a cross-validated trial):
    ``model.pt``, ``model_repeat<r>.pt``, ``model_fold<f>.pt`` (repeat 0), ``model_repeat<r>_fold<f>.pt``."""
    name = "model" + (f"_repeat{repeat}" if repeat else "") + (f"_fold{fold}" if fold is not None else "")
    return name + ".pt"


def model_files(directory: str | Path) -> list[Path]:
    """The model files of a model directory, by repeat then fold; empty when it is not one."""
    directory = Path(directory)
    found = [((int(m.group(1) or 0), int(m.group(2) or 0)), p)
             for p in (directory.iterdir() if directory.is_dir() else [])
             if (m := MODEL_FILE.fullmatch(p.name)) and p.is_file()]
    return [p for _, p in sorted(found)]


def member_label(path: Path) -> str:
    """``repeat<r>`` or ``repeat<r>_fold<f>``: which member of the ensemble a model file is."""
    m = MODEL_FILE.fullmatch(path.name)
    r, f = (int(m.group(1) or 0), m.group(2)) if m else (0, None)
    return f"repeat{r}" + (f"_fold{f}" if f is not None else "")


@dataclass
class Member:
    """One repeat's trained model."""

    path: Path
    model: PropertyModel
    scaler: Scaler
    config: TrainConfig


@dataclass
class Prediction:
    """Ensemble predictions: ``mean``/``std`` over the repeats and ``per_repeat`` (structures x repeats) for the
    structures in ``ids``; ``y`` the true values when the input had them (NaN where missing)."""

    property: str
    ids: list[str]
    mean: np.ndarray
    std: np.ndarray
    per_repeat: np.ndarray
    skipped: list[Skipped] = field(default_factory=list)
    y: np.ndarray | None = None
    value_source: str = ""
    notes: list[str] = field(default_factory=list)
    # which member each column of ``per_repeat`` is (``repeat<r>`` or, cross-validated, ``repeat<r>_fold<f>``)
    members: list[str] = field(default_factory=list)

    def mae(self, repeat: int | None = None) -> float | None:
        """MAE of the ensemble mean (or of one repeat) over the structures with a true value; None without any."""
        if self.y is None or not np.isfinite(self.y).any():
            return None
        p = self.mean if repeat is None else self.per_repeat[:, repeat]
        ok = np.isfinite(self.y)
        return float(np.abs(p[ok] - self.y[ok]).mean())

    def n_true(self) -> int:
        return 0 if self.y is None else int(np.isfinite(self.y).sum())

    def to_frame(self) -> pl.DataFrame:
        """One row per structure: id, y_pred, y_std, [y_true, abs_error,] y_pred_repeat<i>..., skipped (the reason
        a structure could not be predicted; its other columns are null)."""
        n, k = len(self.ids), len(self.skipped)
        pad: list[None] = [None] * k
        cols: dict[str, Any] = {"id": self.ids + [s.id for s in self.skipped],
                                "y_pred": [*self.mean.tolist(), *pad], "y_std": [*self.std.tolist(), *pad]}
        if self.y is not None:
            y = [None if not np.isfinite(v) else float(v) for v in self.y]
            cols["y_true"] = y + pad
            cols["abs_error"] = [None if t is None else abs(p - t) for p, t in zip(self.mean.tolist(), y)] + pad
        for r in range(self.per_repeat.shape[1]):
            label = self.members[r] if r < len(self.members) else f"repeat{r}"
            cols[f"y_pred_{label}"] = [*self.per_repeat[:, r].tolist(), *pad]
        cols["skipped"] = [None] * n + [f"{s.reason}: {s.detail}" if s.detail else s.reason for s in self.skipped]
        return pl.DataFrame(cols, schema={c: pl.String if c in ("id", "skipped") else pl.Float64 for c in cols})


class Ensemble:
    """The models of every repeat of one configuration; ``info`` is the exported ``model.json`` (or empty)."""

    def __init__(self, directory: Path, members: list[Member], info: dict[str, Any] | None = None) -> None:
        self.directory, self.members, self.info = directory, members, info or {}

    @property
    def config(self) -> TrainConfig:
        return self.members[0].config

    @property
    def property(self) -> str:
        return self.config.target.property

    def predict(self, atoms: Sequence[Any], ids: Sequence[str] | None = None, *, cache: str | Path | None = None,
                device: str = "auto", progress: Progress | None = None, threads: int | None = None,
                batch_size: int = DEFAULT_BATCH) -> Prediction:
        """Predict ``atoms`` (jarvis Atoms; ``ids`` default to their positions) with every repeat, on ``threads``
        torch threads (default :func:`default_threads`) in batches of ``batch_size`` structures."""
        threads = positive(threads, "threads", default_threads()) if threads is not None else default_threads()
        batch_size = positive(batch_size, "batch_size", DEFAULT_BATCH)
        ids = [str(i) for i in (ids if ids is not None else range(len(atoms)))]
        r = len(self.members)
        if not atoms:
            return Prediction(self.property, [], np.zeros(0), np.zeros(0), np.zeros((0, r)),
                              members=[member_label(m.path) for m in self.members])
        cfg = self.config
        with torch_threads(threads):  # graph building runs torch ops too: the same threads
            gs = GraphCache(cfg.graph.params(), root=cache, workers=threads).get(
                list(atoms), progress=(lambda d, t: progress("graphs", d, t)) if progress else None)
            ok = np.flatnonzero(gs.row >= 0)
            skipped = [Skipped(ids[i], reason, detail) for i, (reason, detail) in sorted(gs.failures.items())]
            task = Task(gs.pack, gs.row[ok], np.full((len(ok), 1), np.nan), [ids[i] for i in ok],
                        (self.property,), cfg.graph.atom_features)
            dev = pick_device(device if device != "auto" else cfg.device)
            per = self._infer(task, dev, batch_size, progress)
        std = per.std(axis=1, ddof=1) if r > 1 else np.zeros(len(ok))
        return Prediction(self.property, task.ids, per.mean(axis=1), std, per, skipped,
                          members=[member_label(m.path) for m in self.members])

    def _infer(self, task: Task, dev: torch.device, batch_size: int, progress: Progress | None) -> np.ndarray:
        """(structures, repeats) predictions in physical units: each batch is assembled once (outside inference
        mode: the cached feature table must stay a normal tensor) and run through every repeat."""
        n, runs = len(task), [_Runner(m, dev) for m in self.members]
        per = np.zeros((n, len(runs)))
        if progress:
            progress("predict", 0, n)  # the stage's clock starts here, not after its first batch
        for start in range(0, n, batch_size):
            idx = np.arange(start, min(n, start + batch_size))
            g, lg = task.batch(idx)
            if dev.type != "cpu":
                g, lg = g.to(dev), lg.to(dev)
            for j, run in enumerate(runs):
                per[idx, j] = run(g, lg)
            if progress:
                progress("predict", int(idx[-1]) + 1, n)
        return per

    def predict_from(self, source: str | Path, *, cache: str | Path | None = None, device: str = "auto",
                     progress: Progress | None = None, threads: int | None = None,
                     batch_size: int = DEFAULT_BATCH) -> Prediction:
        """Predict the structures of a folder, a structure file or a dataset reference (see
        :func:`tlsearch.data.inputs.read_structures`); entries that cannot be read are in ``skipped``. ``threads``
        and ``batch_size`` as in :meth:`predict`."""
        from tlsearch.data.inputs import read_structures

        threads = positive(threads, "threads", default_threads()) if threads is not None else None
        batch_size = positive(batch_size, "batch_size", DEFAULT_BATCH)
        found = read_structures(source, self.property, cache,
                                progress=(lambda d, t: progress("read", d, t)) if progress else None)
        pred = self.predict(found.atoms, found.ids, cache=cache, device=device, progress=progress, threads=threads,
                            batch_size=batch_size)
        if found.y is not None:
            keep = {rid: k for k, rid in enumerate(found.ids)}
            pred.y = np.asarray([found.y[keep[i]] for i in pred.ids], dtype=np.float64)
        pred.skipped = found.skipped + pred.skipped
        pred.value_source, pred.notes = found.value_source, found.notes
        from tlsearch.data.inputs import training_overlap

        cfg = self.config
        overlap = training_overlap(found.atoms, cfg.target.dataset, cfg.target.property, cfg.test_fraction,
                                   cfg.split_seed, cache)
        if overlap:
            pred.notes.append(overlap)
        return pred


class _Runner:
    """One repeat's model ready for inference on ``dev``: eval mode, bf16 autocast where its config asked for it
    and the hardware has it (as in training), outputs in physical units."""

    def __init__(self, m: Member, dev: torch.device) -> None:
        self.model, self.scaler = m.model.to(dev).eval(), m.scaler
        dgl = getattr(getattr(m.model, "spec", None), "backend", "") == "dgl"  # DGL kernels have no bf16
        self.amp = m.config.amp and bf16_supported(dev) and not dgl
        self.dev = dev

    def __call__(self, g: Any, lg: Any) -> np.ndarray:
        amp = torch.autocast(self.dev.type, dtype=torch.bfloat16) if self.amp else nullcontext()
        with torch.inference_mode(), amp:
            out = self.model(g, lg).float()
        return self.scaler.inverse(out.cpu().numpy())[:, 0]


def _member(path: Path) -> Member:
    try:
        model, scaler, config = load_checkpoint(path)
    except Exception as exc:  # noqa: BLE001 - a damaged file raises whatever torch.load meets
        raise UserInputError(f"{path}: cannot load this model file ({type(exc).__name__}: {str(exc)[:200]}); fix: "
                             "export the model again with `tlsearch export EXPERIMENT_DIR OUT_DIR`") from None
    return Member(path, model, scaler, config)


def load_model(path: str | Path) -> Ensemble:
    """The ensemble of a model directory (a finished trial's ``model_dir`` or a ``tlsearch export`` directory)."""
    directory = Path(path).expanduser().resolve()
    files = model_files(directory)
    if not files:
        inside = sorted(p.name for p in directory.iterdir() if model_files(p)) if directory.is_dir() else []
        hint = (f"it holds model directories: {', '.join(inside)}" if inside else
                "give a directory `tlsearch export` wrote, or a finished trial's model_dir from trials.parquet")
        raise UserInputError(f"{directory}: not a model directory (no model.pt); fix: {hint}")
    members = [_member(p) for p in files]
    first = members[0].config
    for m in members[1:]:
        if m.config.graph != first.graph or m.config.target != first.target or m.config.model != first.model:
            raise UserInputError(f"{m.path}: another model than {members[0].path} (target, graph or architecture "
                                 "differ); fix: keep one configuration's repeats per model directory")
    info_path = directory / INFO_FILE
    info = json.loads(info_path.read_text()) if info_path.is_file() else {}
    return Ensemble(directory, members, info)
