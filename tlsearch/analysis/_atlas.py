"""The transferability atlas of a study with several FT targets: per FT size, the gain over scratch of every
PT source on every target (Devi et al.'s pair-wise matrix), plus MPT, from the trials table alone.

A cell (source, target, size) is the best finished PT->FT trial from that source on that target at that size
(selected by validation MAE among that source's trials, any freeze), compared with the best finished scratch
trial of the same target and size: the test-MAE gain in %, paired by repeat (mean +/- std over repeats), and
the freeze strategy of the selected trial. A cell without a finished comparison says why.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from tlsearch.analysis._analyse import best_by_val, finished, gain_pct, short, size_key
from tlsearch.analysis._render import Doc

MPT = "MPT"


def _cell(d: pl.DataFrame, scratch: dict[str, Any] | None, source: str, target: str) -> dict[str, Any]:
    out: dict[str, Any] = {"source": source, "target": target}
    if source == target:
        return {**out, "note": "the target itself (never a PT source for itself)"}
    b = best_by_val(d.filter(pl.col("strategy") == "mpt") if source == MPT else
                    d.filter((pl.col("strategy") == "finetune") & (pl.col("pt_source") == source)))
    if b is None:
        return {**out, "note": "no finished trial"}
    out.update(trial=b["trial"], freeze=b["freeze"], test_mae=b["test_mae"], test_mae_std=b["test_mae_std"],
               val_mae=b["val_mae"], repeats=b["repeats"])
    if source == MPT:
        out["mpt_properties"] = b["mpt_properties"]
    if scratch is None:
        return {**out, "note": "no finished scratch trial to compare with"}
    return {**out, "gain_pct": gain_pct(b, scratch), "scratch_trial": scratch["trial"],
            "scratch_test_mae": scratch["test_mae"]}


def atlas(trials: pl.DataFrame, targets: list[str], sources: list[str], sizes: list[str]) -> list[dict[str, Any]]:
    """Per FT size (those listed, then any other a trial had): the sources (PT sources, then ``MPT`` when any
    trial used it), the targets and one cell per (source, target)."""
    fin = finished(trials)
    has_mpt = trials.filter(pl.col("strategy") == "mpt").height > 0
    rows = sources + ([MPT] if has_mpt else [])
    seen = {str(x) for x in trials["ft_size"].to_list() if x is not None}
    out = []
    for size in list(dict.fromkeys([*sizes, *sorted(seen - set(sizes), key=size_key)])):
        cells = []
        for t in targets:
            d = fin.filter((pl.col("ft_size") == size) & (pl.col("target") == t))
            scratch = best_by_val(d.filter(pl.col("strategy") == "scratch"))
            cells += [_cell(d, scratch, s, t) for s in rows]
        out.append({"ft_size": size, "sources": rows, "targets": targets, "cells": cells})
    return out


def cell_text(c: dict[str, Any]) -> str:
    """A cell as the report's table shows it: gain +/- spread (freeze), or why there is none."""
    g = c.get("gain_pct")
    if not g:
        return c.get("note", "")
    spread = f" +/- {g['std']:.1f}" if g.get("std") is not None else ""
    return f"{g['mean']:+.1f} %{spread} ({c['freeze']})" if c.get("freeze") else f"{g['mean']:+.1f} %{spread}"


def atlas_section(doc: Doc, atlas: list[dict[str, Any]], names: dict[str, str], plot: Path | None) -> None:
    """The transferability atlas: per FT size, PT source (rows, then MPT) x FT target (columns)."""
    doc.h("Transferability atlas (gain over scratch, per PT source and FT target)")
    doc.p("Each cell: the best finished PT->FT trial from that source on that target (selected by validation MAE, "
          "any freeze; its freeze strategy in brackets) against the target's best scratch trial at the same FT "
          "size: test-MAE gain in %, paired by repeat (mean +/- std over repeats; positive = transfer is better). "
          "MPT: the best multi-property pre-training trial. A cell without a finished comparison says why.")
    for a in atlas:
        cells = {(c["source"], c["target"]): c for c in a["cells"]}
        doc.p(f"FT size {a['ft_size']}:")
        doc.table(["PT source \\ FT target", *[short(t, names) for t in a["targets"]]],
                  [[short(src, names) if src != "MPT" else "MPT",
                    *[cell_text(cells[(src, t)]) for t in a["targets"]]] for src in a["sources"]])
    doc.img(plot, "Gain of PT->FT over scratch (%, paired over repeats) per PT source and FT target")
