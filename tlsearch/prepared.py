"""A dataset ready for training: validated records with a finite target, their cached graphs and the
fixed held-out test split. This is what trials load (through the caches: nothing is re-serialised)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tlsearch.data import Dataset, DatasetRef, Skipped, Split, load_dataset, split_pool
from tlsearch.data.splits import DEFAULT_TEST_FRACTION
from tlsearch.errors import EmptyDatasetError
from tlsearch.graphs import GraphCache, GraphParams, GraphSet


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


def prepare(
    ref: str | DatasetRef,
    params: GraphParams | None = None,
    prop: str | None = None,
    test_fraction: float = DEFAULT_TEST_FRACTION,
    split_seed: int = 0,
    cache: str | Path | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> PreparedDataset:
    """Load ``ref``, keep the records with a finite ``prop`` (if given), split off the held-out test set,
    then build or load graphs. The split is taken before graph failures are removed, so the test set
    does not move when graph parameters change."""
    params = params or GraphParams()
    ds = load_dataset(ref, cache=cache)
    if prop is not None:
        ds = ds.with_property(prop)
    split = split_pool(ds.ids, test_fraction, split_seed)
    gs = GraphCache(params, root=cache).get([r.atoms for r in ds.records], progress=progress)
    ok = gs.row >= 0
    skipped = list(ds.skipped) + [Skipped(ds.records[i].id, r, d) for i, (r, d) in sorted(gs.failures.items())]
    if not ok.any():
        raise EmptyDatasetError(f"{ds.ref}: no structure gave a usable graph ({len(gs.failures)} failed)")
    keep = np.flatnonzero(ok)
    new_index = np.full(len(ds), -1, dtype=np.int64)
    new_index[keep] = np.arange(len(keep))
    kept = Dataset(ds.ref, [ds.records[i] for i in keep], ds.properties, skipped, ds.provenance)

    def remap(idx: np.ndarray) -> np.ndarray:
        m = new_index[idx]
        return m[m >= 0]

    split = Split(remap(split.pool), remap(split.test), split.seed, split.test_fraction)
    return PreparedDataset(kept, gs, gs.row[keep], split, skipped, params)
