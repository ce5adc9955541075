"""Training tasks: graphs (rows of a GraphPack) + a target matrix with NaN where a label is missing.

``single_task`` wraps one prepared dataset. ``merged_task`` builds the multi-property pre-training set:
structures present in several source datasets are de-duplicated by content (their graph keys) and their
labels merged; every source's own held-out test records and every structure of the fine-tuning target's
held-out test set are excluded, so pre-training never sees what the target's test set will score.
``sampled_merged_task`` is the same set for a PT sample size: it draws the sample first and builds only its graphs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tlsearch.data import draw_sample
from tlsearch.errors import EmptyDatasetError
from tlsearch.graphs import GraphCache, GraphPack, GraphParams
from tlsearch.prepared import PreparedDataset, load_split, prepare_split


@dataclass
class Task:
    pack: GraphPack
    rows: np.ndarray                 # pack row of each item
    y: np.ndarray                    # (items, properties) float64, NaN = missing
    ids: list[str]
    properties: tuple[str, ...]
    atom_features: str = "cgcnn"

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def keys(self) -> list[str]:
        return [self.pack.keys[r] for r in self.rows]

    def batch(self, idx: np.ndarray) -> tuple[Any, Any]:
        return self.pack.batch(self.rows[idx], self.atom_features)


def single_task(prep: PreparedDataset, prop: str) -> Task:
    y = prep.values(prop)[:, None]
    return Task(prep.graphs.pack, prep.rows, y, prep.dataset.ids, (prop,), prep.params.atom_features)


def merged_task(sources: Sequence[tuple[PreparedDataset, str]], exclude_keys: set[str]) -> Task:
    """Pool records of every source (their held-out test records left out), merged by structure content."""
    props = tuple(dict.fromkeys(p for _, p in sources))
    order: dict[str, int] = {}
    graphs: list[dict[str, np.ndarray]] = []
    ids: list[str] = []
    labels: list[dict[str, float]] = []
    for prep, prop in sources:
        values = prep.values(prop)
        pack = prep.graphs.pack
        for i in prep.split.pool:
            key = pack.keys[prep.rows[i]]
            if key in exclude_keys or not np.isfinite(values[i]):
                continue
            if key not in order:
                order[key] = len(graphs)
                graphs.append(pack.graph(prep.rows[i]))
                ids.append(prep.dataset.records[i].id)
                labels.append({})
            labels[order[key]][prop] = float(values[i])
    if not graphs:
        raise EmptyDatasetError("the pre-training set is empty after removing held-out test structures")
    y = np.full((len(graphs), len(props)), np.nan)
    for j, lab in enumerate(labels):
        for p, v in lab.items():
            y[j, props.index(p)] = v
    pack = GraphPack.from_graphs(list(order), graphs)
    atom_features = sources[0][0].params.atom_features
    return Task(pack, np.arange(len(graphs)), y, ids, props, atom_features)


def sampled_merged_task(sources: Sequence[tuple[str, str]], exclude_keys: set[str], size: int, seed: int,
                        params: GraphParams, *, test_fraction: float, split_seed: int,
                        cache: str | Path | None = None) -> Task:
    """:func:`merged_task` of a random ``size``-structure sample of the pooled ``(dataset, property)`` sources,
    drawn before any graph is built. The candidates are the structures ``merged_task`` would pool, in its order
    and by its rules (each source's held-out split taken on its whole dataset, ``exclude_keys`` and non-finite
    labels left out, merged by graph key), with keys computed from the structures; the sample is
    ``draw_sample(candidates, size, "random", seed)``; graphs are built for the drawn structures only (every
    source record of one, so labels merge as before)."""
    gc = GraphCache(params, root=cache)
    keys: dict[tuple[str, str], str] = {}  # (dataset, record id) -> graph key: a dataset may be several sources
    loaded, eligible = [], []
    for dataset, prop in sources:
        ds, split = load_split(dataset, prop, test_fraction, split_seed, cache)
        values = ds.values(prop)
        ok: dict[int, str] = {}
        for i in split.pool:
            rec = ds.records[i]
            if (str(ds.ref), rec.id) not in keys:
                keys[str(ds.ref), rec.id] = gc.key(rec.atoms)
            key = keys[str(ds.ref), rec.id]
            if key not in exclude_keys and np.isfinite(values[i]):
                ok[int(i)] = key
        loaded.append((ds, split))
        eligible.append(ok)
    candidates = list(dict.fromkeys(k for ok in eligible for k in ok.values()))
    drawn = {candidates[j] for j in draw_sample(np.arange(len(candidates)), size, "random", seed=seed)}
    # a drawn structure whose graph fails is dropped here (prepare leaves it out): the set may be short of size
    preps = [prepare_split(ds, split, params, cache, keep=[i for i, k in ok.items() if k in drawn])
             for (ds, split), ok in zip(loaded, eligible)]
    return merged_task([(prep, prop) for prep, (_, prop) in zip(preps, sources)], exclude_keys)


@dataclass
class Scaler:
    """Per-property affine target scaling fitted on training rows only: ``minmax`` maps the training range
    to [-1, 1] (the paper's); ``standard`` subtracts the mean and divides by the standard deviation
    (robust to a few extreme values, e.g. refractive indices up to 16 with a median of 2.2)."""

    lo: np.ndarray      # offset
    hi: np.ndarray      # offset + 2 * scale, so that transform = 2 (y - lo) / (hi - lo) - 1
    kind: str = "minmax"

    @classmethod
    def fit(cls, y: np.ndarray, kind: str = "minmax") -> "Scaler":
        if kind == "minmax":
            lo, hi = np.nanmin(y, axis=0), np.nanmax(y, axis=0)
        elif kind == "standard":
            mean, std = np.nanmean(y, axis=0), np.nanstd(y, axis=0)
            lo, hi = mean - std, mean + std  # 2 (y - lo) / (hi - lo) - 1 == (y - mean) / std
        else:
            raise ValueError(f"unknown scaling {kind!r}; valid: minmax, standard")
        hi = np.where(hi > lo, hi, lo + 1.0)
        return cls(lo.astype(np.float64), hi.astype(np.float64), kind)

    def transform(self, y: np.ndarray) -> np.ndarray:
        return 2.0 * (y - self.lo) / (self.hi - self.lo) - 1.0

    def inverse(self, s: np.ndarray) -> np.ndarray:
        return (s + 1.0) / 2.0 * (self.hi - self.lo) + self.lo

    def to_dict(self) -> dict[str, object]:
        return {"lo": self.lo.tolist(), "hi": self.hi.tolist(), "kind": self.kind}

    @classmethod
    def from_dict(cls, d: dict) -> "Scaler":
        return cls(np.asarray(d["lo"], dtype=np.float64), np.asarray(d["hi"], dtype=np.float64),
                   str(d.get("kind", "minmax")))
