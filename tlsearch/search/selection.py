"""Selection that knows its noise: how sure validation is of the best strategy family at one condition.

Every finished trial carries its validation MAE per (repeat, fold) cell (``val_mae_per_fold``: with
``budget.cv_folds`` k folds per repeat, else one cell per repeat). Cell i is the same FT draw and the same fold for
every configuration of a condition (repeat r uses sample seed ``seed + r``; folds depend only on the draw), so the
families' best configurations are compared **paired by cell**. A paired bootstrap resamples the cells (the same
resample for every family) and counts how often each family has the lowest mean: its probability of being best.

A winner is named only when that probability reaches :data:`CLEAR` (0.9); otherwise the **tied set** is every family
whose probability reaches :data:`TIED` (0.05), and the cheapest member of it (lowest cost: FT compute plus its share
of the PT model, ``cost`` in trials.parquet) is named beside the leader. Reads numbers only (no torch, no Ray).
"""

from __future__ import annotations

from typing import Any

import numpy as np

CLEAR = 0.9   # probability of being best at which validation names a winner
TIED = 0.05   # a family at least this likely to be best is tied with the leader
BOOTSTRAP = 4000
SEED = 0


def cells(row: dict[str, Any]) -> list[float]:
    """A trial's validation MAE per paired cell: per (repeat, fold), else per repeat, else its one value."""
    for key in ("val_mae_per_fold", "val_mae_per_repeat"):
        v = row.get(key)
        if v is not None and len(v):
            return [float(x) for x in v]
    return [float(row["val_mae"])]


def _paired(rows: list[dict[str, Any]]) -> tuple[np.ndarray, str]:
    """The cells the rows share, (cells, rows), and what a cell is. Per fold only when every row has the same fold
    count (an imported trial of another study may not); else per repeat."""
    folds = {r.get("cv_folds") or 1 for r in rows}
    per_fold = len(folds) == 1 and all(r.get("val_mae_per_fold") is not None for r in rows)
    if per_fold:
        vals = [[float(x) for x in r["val_mae_per_fold"]] for r in rows]
        unit = "fold x repeat" if folds != {1} else "repeat"
    else:
        vals = [[float(x) for x in (r.get("val_mae_per_repeat") or [r["val_mae"]])] for r in rows]
        unit = "repeat"
    n = min(len(v) for v in vals)
    return np.asarray([v[:n] for v in vals]).T, unit


def probability_best(rows: list[dict[str, Any]], n_boot: int = BOOTSTRAP, seed: int = SEED) -> dict[str, Any]:
    """Each row's probability of having the lowest mean validation MAE under a paired bootstrap over the shared
    cells: ``{"p": [...], "cells": n, "unit": "fold x repeat" | "repeat"}``. One shared cell: no spread to resample,
    so ``p`` is None (validation cannot say how sure it is)."""
    if not rows:
        return {"p": [], "cells": 0, "unit": "repeat"}
    x, unit = _paired(rows)
    n = x.shape[0]
    if len(rows) == 1:
        return {"p": [1.0], "cells": n, "unit": unit}
    if n < 2:
        return {"p": None, "cells": n, "unit": unit}
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_boot, n))
    means = x[idx].mean(axis=1)  # (n_boot, rows)
    # ties (identical cells) share the win
    low = means.min(axis=1, keepdims=True)
    wins = (means <= low + 1e-12).astype(float)
    wins /= wins.sum(axis=1, keepdims=True)
    return {"p": [float(v) for v in wins.mean(axis=0)], "cells": n, "unit": unit}


def verdict(families: list[dict[str, Any]]) -> dict[str, Any]:
    """What validation can say about a condition's families (each the family's best trial, as the report's entries:
    ``family``, ``val_mae``, cells, ``cost``): every family's ``p_best``, the ``leader`` (lowest mean validation MAE),
    ``clear`` (its probability >= CLEAR), the ``tied`` families and the ``cheapest`` of them.

    Families are first compared on the cells all of them share; those that are not hopeless there (probability >=
    TIED) are compared again on the cells *they* share, which racing may have extended beyond the others'."""
    rows = sorted(families, key=lambda e: e["val_mae"])
    pb = probability_best(rows)
    p = pb["p"]
    if p is not None and len(rows) > 2:
        keep = [i for i, v in enumerate(p) if v >= TIED]
        sub = [rows[i] for i in keep]
        pb2 = probability_best(sub)
        if 1 < len(sub) < len(rows) and pb2["p"] is not None and pb2["cells"] > pb["cells"]:
            p = [0.0 if i not in keep else pb2["p"][keep.index(i)] for i in range(len(rows))]
            pb = {**pb2, "p": p}
    out: dict[str, Any] = {"cells": pb["cells"], "unit": pb["unit"], "clear_at": CLEAR, "tied_at": TIED,
                           "p_best": {r["family"]: (None if p is None else round(v, 4))
                                      for r, v in zip(rows, p or [None] * len(rows))}}
    if not rows:
        return {**out, "leader": None, "clear": False, "tied": [], "cheapest": None}
    # the leader: the most probably best (the lowest mean on the compared cells), else the lowest mean MAE
    lead = 0 if p is None else max(range(len(rows)), key=lambda i: (p[i], -i))
    leader = rows[lead]
    if p is None:
        tied = list(rows)
        clear = len(rows) == 1
    else:
        clear = p[lead] >= CLEAR
        tied = [leader] if clear else [r for r, v in zip(rows, p) if v >= TIED or r is leader]
    costs = [r.get("cost") for r in tied]
    cheapest = min(tied, key=lambda r: (r.get("cost") is None, r.get("cost") or 0.0, r["val_mae"]))
    return {**out, "leader": leader["family"], "clear": bool(clear), "tied": [r["family"] for r in tied],
            "cheapest": cheapest["family"] if any(c is not None for c in costs) else None,
            "cheapest_trial": cheapest["trial"] if any(c is not None for c in costs) else None}


def merged_summary(final: dict[str, Any], extra: list[dict[str, Any]]) -> dict[str, Any]:
    """A trial's final summary with the repeats racing added (each ``extra`` is a race trial's final summary of
    later repeats of the same configuration): per-repeat and per-(repeat, fold) lists extended in repeat order,
    means and spreads over every repeat, epochs and compute added. The first trial's model directory stays the
    delivered model (its repeats' fold ensemble)."""
    import json
    import statistics

    def listed(d: dict[str, Any], key: str) -> list[Any]:
        v = d.get(key)
        return json.loads(v) if isinstance(v, str) else list(v or [])

    out = dict(final)
    parts = [final, *extra]
    for key in ("val_mae_per_repeat", "test_mae_per_repeat", "val_mae_per_fold", "test_mae_per_fold"):
        out[key] = json.dumps([x for d in parts for x in listed(d, key)])
    for part in ("val", "test"):
        vals = [x for d in parts for x in listed(d, f"{part}_mae_per_repeat")]
        if vals:
            out[f"{part}_mae"] = statistics.mean(vals)
            out[f"{part}_mae_std"] = statistics.stdev(vals) if len(vals) > 1 else 0.0
        for key in ("rmse", "r2"):  # means over repeats, weighted by each part's repeats
            pairs = [(d.get(f"{part}_{key}"), int(d.get("repeats") or 1)) for d in parts if d.get(f"{part}_{key}") is not None]
            if pairs:
                out[f"{part}_{key}"] = sum(v * n for v, n in pairs) / sum(n for _, n in pairs)
    out["repeats"] = sum(int(d.get("repeats") or 0) for d in parts)
    out["raced_repeats"] = sum(int(d.get("repeats") or 0) for d in extra)
    for key in ("epochs_run", "wall_seconds", "ft_seconds", "ft_compute_seconds"):
        if any(key in d for d in parts):
            out[key] = sum(d.get(key) or 0 for d in parts)
    return out
