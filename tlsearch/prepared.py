"""A dataset ready for training: validated records with a finite target, their cached graphs and the
fixed held-out test split. This is what trials load (through the caches: nothing is re-serialised)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tlsearch.data import Dataset, DatasetRef, Skipped, Split, load_dataset, split_pool
from tlsearch.data.splits import DEFAULT_TEST_FRACTION
from tlsearch.errors import EmptyDatasetError
from tlsearch.graphs import GraphCache, GraphPack, GraphParams, GraphSet


@dataclass
class PreparedDataset:
    dataset: Dataset          # records that have a graph (and the property, when one was asked for)
    graphs: GraphSet
    rows: np.ndarray          # graph-pack row of each record in ``dataset``
    split: Split              # indices into ``dataset.records``
    skipped: list[Skipped]    # everything left out on the way, with reasons
    params: GraphParams

    def __len__(self) -> int:
        return len(self.dataset)

    def values(self, prop: str) -> np.ndarray:
        return self.dataset.values(prop)

    def batch(self, indices: np.ndarray) -> tuple[Any, Any]:
        """(graph, line graph) batch of the given record indices."""
        return self.graphs.pack.batch(self.rows[np.asarray(indices)], self.params.atom_features)

    def graph_stats(self) -> dict[str, float]:
        c = self.graphs.pack.counts
        rows = self.rows
        return {k: float(np.mean(c[k][rows])) for k in ("n_nodes", "n_edges", "n_triplets")}


def load_split(
    ref: str | DatasetRef,
    prop: str | None = None,
    test_fraction: float = DEFAULT_TEST_FRACTION,
    split_seed: int = 0,
    cache: str | Path | None = None,
) -> tuple[Dataset, Split]:
    """Load ``ref``, keep the records with a finite ``prop`` (if given) and split off the held-out test set;
    no graph is built. The split depends only on these records' ids, never on graphs."""
    ds = load_dataset(ref, cache=cache)
    if prop is not None:
        ds = ds.with_property(prop)
    return ds, split_pool(ds.ids, test_fraction, split_seed)


def prepare(
    ref: str | DatasetRef,
    params: GraphParams | None = None,
    prop: str | None = None,
    test_fraction: float = DEFAULT_TEST_FRACTION,
    split_seed: int = 0,
    cache: str | Path | None = None,
    progress: Callable[[int, int], None] | None = None,
    keep: Sequence[int] | np.ndarray | None = None,
) -> PreparedDataset:
    """Load ``ref``, keep the records with a finite ``prop`` (if given), split off the held-out test set,
    then build or load graphs. The split is taken before graph failures are removed, so the test set
    does not move when graph parameters change. ``keep`` (indices into the records of :func:`load_split`)
    builds graphs for those records only: the split is still taken on the whole dataset, then restricted."""
    ds, split = load_split(ref, prop, test_fraction, split_seed, cache)
    return prepare_split(ds, split, params, cache, progress, keep)


def prepare_split(
    ds: Dataset,
    split: Split,
    params: GraphParams | None = None,
    cache: str | Path | None = None,
    progress: Callable[[int, int], None] | None = None,
    keep: Sequence[int] | np.ndarray | None = None,
) -> PreparedDataset:
    """:func:`prepare` from what :func:`load_split` returned (the dataset is not loaded again). Records left
    out by ``keep`` are not listed in ``skipped``: they were never asked for."""
    params = params or GraphParams()
    n_all = len(ds)
    sel = np.arange(n_all) if keep is None else np.unique(np.asarray(keep, dtype=np.int64))
    if keep is not None:  # only these records get graphs; the split stays the whole dataset's, restricted
        ds = Dataset(ds.ref, [ds.records[i] for i in sel], ds.properties, list(ds.skipped), ds.provenance)
    if len(ds):
        gs = GraphCache(params, root=cache).get([r.atoms for r in ds.records], progress=progress)
    else:  # ``keep`` asked for nothing: an empty preparation, and no empty pack in the cache
        gs = GraphSet(GraphPack.from_graphs([], []), np.zeros(0, dtype=np.int64))
    ok = gs.row >= 0
    skipped = list(ds.skipped) + [Skipped(ds.records[i].id, r, d) for i, (r, d) in sorted(gs.failures.items())]
    if len(ds) and not ok.any():
        raise EmptyDatasetError(f"{ds.ref}: no structure gave a usable graph ({len(gs.failures)} failed)")
    keep_ok = np.flatnonzero(ok)
    new_index = np.full(n_all, -1, dtype=np.int64)
    new_index[sel[keep_ok]] = np.arange(len(keep_ok))
    kept = Dataset(ds.ref, [ds.records[i] for i in keep_ok], ds.properties, skipped, ds.provenance)

    def remap(idx: np.ndarray) -> np.ndarray:
        m = new_index[idx]
        return m[m >= 0]

    split = Split(remap(split.pool), remap(split.test), split.seed, split.test_fraction)
    return PreparedDataset(kept, gs, gs.row[keep_ok], split, skipped, params)
