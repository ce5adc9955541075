"""Data quality of one (dataset, property) as a study uses it: how many entries the source had, how many are used,
every skipped entry with its id and reason (parse-level: unparsable or missing file, duplicate id, bad structure,
no finite value; graph-level once graphs exist: isolated atoms, too few neighbours), target statistics and the
held-out test size. ``tlsearch data describe`` prints it, ``tlsearch run`` prints one line per dataset and keeps
it in the experiment (``data.json``), and the report's "Data" section shows it."""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from tlsearch.data._base import Dataset
from tlsearch.data.splits import split_pool

MAX_LISTED = 1000  # skipped entries kept by id per dataset (the counts by reason are always complete)


def target_stats(values: np.ndarray) -> dict[str, float]:
    v = values[np.isfinite(values)]
    if not len(v):
        return {"count": 0}
    q = np.percentile(v, [0, 50, 100])
    return {"count": int(len(v)), "mean": float(v.mean()), "std": float(v.std()), "min": float(q[0]),
            "median": float(q[1]), "max": float(q[2])}


def dataset_entries(ds: Dataset, graph_failures: dict[str, tuple[str, str]] | None = None) -> list[dict[str, str]]:
    """The entries of ``ds`` no property can use: skipped when parsed, and (``graph_failures``: record id ->
    (reason, detail)) those whose graph could not be built."""
    return ([{"id": s.id, "reason": s.reason, "detail": s.detail} for s in ds.skipped]
            + [{"id": rid, "reason": f"graph: {reason}", "detail": detail}
               for rid, (reason, detail) in (graph_failures or {}).items()])


def count_reasons(entries: list[dict[str, str]]) -> dict[str, int]:
    return dict(Counter(e["reason"] for e in entries))


def quality(ds: Dataset, prop: str, test_fraction: float | None = None, split_seed: int = 0,
            graph_failures: dict[str, tuple[str, str]] | None = None) -> dict[str, Any]:
    """The quality record of ``prop`` in ``ds``. ``test_fraction``: the held-out split to size (the target's);
    ``graph_failures``: record id -> (reason, detail) of structures whose graph could not be built (None: graphs
    not checked)."""
    failed = graph_failures or {}
    values = ds.values(prop)
    finite = [r.id for r, v in zip(ds.records, values) if np.isfinite(v)]
    has = set(finite)
    failed = {i: f for i, f in failed.items() if i in has}  # the others are skipped for having no value
    skipped = dataset_entries(ds, failed) + [{"id": r.id, "reason": f"no finite {prop}", "detail": ""}
                                             for r, v in zip(ds.records, values) if not np.isfinite(v)]
    used = [i for i in finite if i not in failed]
    out: dict[str, Any] = {"ref": str(ds.ref), "property": prop, "entries": len(ds.records) + len(ds.skipped),
                           "used": len(used), "skipped": len(skipped), "skipped_by_reason": count_reasons(skipped),
                           "skipped_entries": skipped[:MAX_LISTED], "graphs_checked": graph_failures is not None,
                           "target": target_stats(np.array([v for r, v in zip(ds.records, values)
                                                            if r.id not in failed], dtype=float))}
    if test_fraction is not None and used:
        # as the trials split: over the entries with a value, before graph failures leave (the test set does not
        # move when graph parameters change), then without them
        split = split_pool(finite, test_fraction, split_seed)
        out.update(test=sum(finite[i] not in failed for i in split.test),
                   pool=sum(finite[i] not in failed for i in split.pool))
    return out


def line(q: dict[str, Any], label: str | None = None) -> str:
    """One line: '<dataset>/<property>: 118 used, 5 skipped: 2 unparsable structure, 1 missing file'."""
    name = label or f"{q['ref']}/{q['property']}"
    reasons = ", ".join(f"{n} {r}" for r, n in sorted(q["skipped_by_reason"].items(), key=lambda kv: -kv[1]))
    return f"{name}: {q['used']} used, {q['skipped']} skipped" + (f": {reasons}" if reasons else "")
