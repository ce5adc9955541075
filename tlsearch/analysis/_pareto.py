"""Accuracy against cost in a two-objective study (``objectives: [val_mae, cost]``, search/objectives.py): per
FT target and size, the Pareto front of the finished trials by validation MAE and cost, and the cheapest
strategy whose validation MAE lies within the best trial's spread over repeats.

Like every selection in the report, the front is drawn on validation MAE, never on test MAE; the held-out
test MAE of each trial on it is reported beside it. Costs are the trials table's (the study's final PT-share
divisor). Trials stopped early have no final cost and are never on a front.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from tlsearch.analysis._analyse import describe, family_members, finished, pct, short, size_key
from tlsearch.analysis._render import Doc
from tlsearch.search.objectives import seconds_of

KEYS = ("trial", "family", "strategy", "pt_source", "mpt_properties", "freeze", "reinit_head", "ft_lr", "repeats",
        "val_mae", "val_mae_std", "test_mae", "test_mae_std", "cost", "ft_seconds", "ft_compute_seconds",
        "pt_train_seconds")


def front(points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The points no other point dominates (no higher validation MAE and no higher cost, one of them lower),
    cheapest first."""
    out = []
    for p in points:
        if not any(q["val_mae"] <= p["val_mae"] and q["cost"] <= p["cost"]
                   and (q["val_mae"] < p["val_mae"] or q["cost"] < p["cost"]) for q in points):
            out.append(p)
    return sorted(out, key=lambda p: (p["cost"], p["val_mae"], p["trial"]))


def cheapest_within_spread(points: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """(the best trial by validation MAE, the cheapest trial whose validation MAE is at most the best's plus its
    std over repeats); with one repeat the spread is 0 and only ties with the best qualify."""
    if not points:
        return None
    best = min(points, key=lambda p: (p["val_mae"], p["trial"]))
    limit = best["val_mae"] + (best["val_mae_std"] or 0.0)
    cheap = min((p for p in points if p["val_mae"] <= limit), key=lambda p: (p["cost"], p["val_mae"], p["trial"]))
    return best, cheap


def pareto(trials: pl.DataFrame, targets: list[str], sizes: list[str],
           names: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """Per (target, FT size): every finished trial as a point, the front, the best, the cheapest within the best's
    spread, and a conclusion line."""
    fin = finished(trials).filter(pl.col("cost").is_not_null())
    seen = {str(x) for x in trials["ft_size"].to_list() if x is not None}
    out = []
    for target in targets:
        for size in list(dict.fromkeys([*sizes, *sorted(seen - set(sizes), key=size_key)])):
            d = fin.filter((pl.col("target") == target) & (pl.col("ft_size") == size))
            points = [{k: r.get(k) for k in KEYS} for r in d.sort("trial").iter_rows(named=True)]
            z: dict[str, Any] = {"target": target, "ft_size": size, "points": points, "front": front(points)}
            picked = cheapest_within_spread(points)
            if picked:
                z["best"], z["cheapest_within_spread"] = picked[0]["trial"], picked[1]["trial"]
            z["conclusion"] = _conclusion(z, picked, names, several=len(targets) > 1)
            out.append(z)
    return out


def _conclusion(z: dict[str, Any], picked: Any, names: dict[str, str] | None, several: bool) -> str:
    at = f"{short(z['target'], names)}, FT size {z['ft_size']}" if several else f"FT size {z['ft_size']}"
    if not picked:
        return f"{at}: no finished trial with a cost: no Pareto front."
    best, cheap = picked
    what = describe(best, names)
    if cheap["trial"] == best["trial"]:
        spread = (f"within its validation spread (+/- {best['val_mae_std']:.3g})" if best["val_mae_std"]
                  else "with one repeat (no spread)")
        return (f"{at}: the best trial by validation MAE, trial {best['trial']} ({what}; val MAE "
                f"{best['val_mae']:.4g}, {_s(best['cost'])} s), is also the cheapest {spread}; {len(z['front'])} "
                "trial(s) on the Pareto front.")
    return (f"{at}: the cheapest strategy within the best's validation spread is trial {cheap['trial']} "
            f"({describe(cheap, names)}; val MAE {cheap['val_mae']:.4g}, "
            f"test MAE {cheap['test_mae']:.4g}) at {_s(cheap['cost'])} s, {pct(100 * cheap['cost'] / best['cost'])} % "
            f"of the cost of the best (trial {best['trial']}, {what}; val MAE {best['val_mae']:.4g} +/- "
            f"{best['val_mae_std'] or 0:.2g}, {_s(best['cost'])} s).")


def _s(seconds: float) -> str:
    """Seconds with their significant digits: 1234, 56.8, 1.09."""
    return f"{seconds:.0f}" if abs(seconds) >= 100 else f"{seconds:.3g}"


def pareto_section(doc: Doc, fronts: list[dict[str, Any]], names: dict[str, str], plot: Path | None) -> None:
    doc.h("Accuracy vs cost (Pareto front per FT size)")
    doc.p("Cost: FT training compute over all repeats plus the trial's share of its PT model's training compute "
          "(divided among the trials of this study that used the model; scratch pays none), in CPU seconds on a "
          "CPU and wall seconds on a GPU. A trial is on the "
          "front when no other finished trial has both a lower validation MAE and a lower cost. The front is "
          "drawn on validation MAE; the test MAE is reported, never used to select. The cheapest strategy within "
          "the best's spread: the lowest cost among trials whose validation MAE is at most the best's plus its "
          "std over repeats.")
    doc.items([z["conclusion"] for z in fronts])
    for z in fronts:
        if not z["front"]:
            continue
        several = len({f["target"] for f in fronts}) > 1
        doc.p(f"{short(z['target'], names) + ', ' if several else ''}FT size {z['ft_size']} "
              f"({len(z['front'])} of {len(z['points'])} finished trials on the front):")
        doc.table(["trial", "family", "freeze", "val MAE", "test MAE", "cost (s)", "FT s", "PT share s", ""],
                  [[p["trial"], _family(p["family"], names), p["freeze"] or "", _pm(p, "val"), _pm(p, "test"),
                    _s(p["cost"]), _s(seconds_of(p, "ft")), _s(p["cost"] - seconds_of(p, "ft")),
                    _mark(z, p)] for p in z["front"]])
    doc.img(plot, "Validation MAE vs cost of every finished trial; the Pareto front joined")


def _family(family: str, names: dict[str, str] | None) -> str:
    """A family with its data named short (their labels, else without the source): 'MPT(elastic_tensor/K_VRH +
    ...)'."""
    parts = family_members(family)
    return f"{parts[0]}({' + '.join(short(p, names) for p in parts[1])})" if parts else family


def _pm(p: dict[str, Any], part: str) -> str:
    m, s = p[f"{part}_mae"], p[f"{part}_mae_std"]
    return f"{m:.4g} +/- {s:.2g}" if p["repeats"] and p["repeats"] > 1 and s is not None else f"{m:.4g}"


def _mark(z: dict[str, Any], p: dict[str, Any]) -> str:
    marks = (["best"] if p["trial"] == z.get("best") else []) + (
        ["cheapest within spread"] if p["trial"] == z.get("cheapest_within_spread") else [])
    return ", ".join(marks)


def plot(fronts: list[dict[str, Any]], path: Path, names: dict[str, str] | None = None) -> Path | None:
    """One panel per (target, FT size): every finished trial (cost, validation MAE) by family, the front joined
    as a staircase, the best and the cheapest within its spread marked."""
    from tlsearch.analysis._plots import _fam, _plt, _save

    panels = [z for z in fronts if z["points"]]
    if not panels:
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.8), squeeze=False)
    families = sorted({p["family"] for z in panels for p in z["points"]})
    colors = {f: plt.cm.tab10(i % 10) for i, f in enumerate(families)}
    for ax, z in zip(axes[0], panels):
        for f in families:
            pts = [p for p in z["points"] if p["family"] == f]
            if pts:
                ax.scatter([p["cost"] for p in pts], [p["val_mae"] for p in pts], color=colors[f], s=22,
                           label=_fam(f, 28, names))
        fr = z["front"]
        ax.step([p["cost"] for p in fr], [p["val_mae"] for p in fr], where="post", color="k", lw=1, label="front")
        for key, marker, label in (("best", "*", "best"), ("cheapest_within_spread", "o", "cheapest within spread")):
            p = next((p for p in z["points"] if p["trial"] == z.get(key)), None)
            if p:
                ax.scatter([p["cost"]], [p["val_mae"]], s=140, facecolors="none", edgecolors="k", marker=marker,
                           label=label)
        ax.set_xlabel("cost (s): FT + PT share")
        ax.set_ylabel("validation MAE")
        several = len({q["target"] for q in fronts}) > 1
        ax.set_title(f"{short(z['target'], names) + ', ' if several else ''}FT size {z['ft_size']}", fontsize=8)
        ax.legend(fontsize=6)
    fig.suptitle("Accuracy vs cost")
    return _save(fig, path)
