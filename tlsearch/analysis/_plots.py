"""The report's figures (matplotlib, Agg backend, PNG). Each function takes analysis results (plain dicts,
polars frames) and a path, draws one figure and returns the path, or None when there is nothing to draw."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from tlsearch.analysis._analyse import family_members, short


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"figure.dpi": 100, "font.size": 9, "axes.grid": True, "grid.alpha": 0.3})
    return plt


def _save(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", bbox_inches="tight")  # tight bbox: long labels are never cut off
    _plt().close(fig)
    return path


def _fam(family: str, width: int = 34, names: dict[str, str] | None = None) -> str:
    """A family label for a figure: property names only ('MPT(n + K_VRH + ...)'), or the data's labels in the
    spec (``names``: ``dataset/property`` -> label), wrapped."""
    import textwrap

    parts = family_members(family)
    if not parts:
        return family
    props = " + ".join((names or {}).get(p) or p.rsplit("/", 1)[-1] for p in parts[1])
    return "\n".join(textwrap.wrap(f"{parts[0]}({props})", width))


def learning_curves(curves: dict[str, list[dict[str, Any]]], target: str, path: Path,
                    names: dict[str, str] | None = None) -> Path | None:
    if not curves:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for family, pts in sorted(curves.items()):
        pts = sorted(pts, key=lambda p: p["n_train"])
        ax.errorbar([p["n_train"] for p in pts], [p["test_mae"] for p in pts],
                    yerr=[p["test_mae_std"] or 0 for p in pts], marker="o", capsize=3,
                    label=_fam(family, names=names))
    ax.set_xscale("log")
    ax.set_xlabel("FT training structures")
    ax.set_ylabel(f"test MAE of {short(target, names)}")
    ax.set_title("Learning curves (best configuration per family, selected on validation)")
    ax.legend(fontsize=7)
    return _save(fig, path)


def heatmap(sizes: list[dict[str, Any]], path: Path, names: dict[str, str] | None = None) -> Path | None:
    families = sorted({f["family"] for s in sizes for f in s["families"]})
    if not families:
        return None
    plt = _plt()
    cols = [s["ft_size"] for s in sizes]
    grid = [[float("nan")] * len(cols) for _ in families]
    text = [[""] * len(cols) for _ in families]
    for j, s in enumerate(sizes):
        for f in s["families"]:
            i = families.index(f["family"])
            grid[i][j] = f["test_mae"]
            text[i][j] = f"{f['test_mae']:.3g}" + (f"\n+/-{f['test_mae_std']:.1g}" if f["repeats"] > 1 else "")
    fig, ax = plt.subplots(figsize=(2.0 + 1.3 * len(cols), 1.2 + 0.55 * len(families)))
    im = ax.imshow(grid, cmap="viridis_r", aspect="auto")
    vals = [v for row in grid for v in row if v == v]
    lo, span = min(vals), (max(vals) - min(vals)) or 1.0
    ax.set_xticks(range(len(cols)), labels=cols)
    ax.set_yticks(range(len(families)), labels=[_fam(f, names=names) for f in families], fontsize=7)
    ax.set_xlabel("FT size")
    ax.grid(False)
    for i in range(len(families)):
        for j in range(len(cols)):
            v = grid[i][j]
            dark = v == v and (v - lo) / span > 0.5  # viridis_r: high values are dark
            ax.text(j, i, text[i][j], ha="center", va="center", fontsize=7, color="w" if dark else "k")
    fig.colorbar(im, ax=ax, label="test MAE")
    ax.set_title("Test MAE: strategy family x FT size")
    return _save(fig, path)


def freeze_effect(sizes: list[dict[str, Any]], path: Path) -> Path | None:
    rows = [(s["ft_size"], r) for s in sizes for r in s["freeze_ranking"]]
    if not rows:
        return None
    plt = _plt()
    strategies = sorted({r["freeze"] for _, r in rows})
    cols = [s["ft_size"] for s in sizes]
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    width = 0.8 / max(1, len(cols))
    for j, size in enumerate(cols):
        vals = {r["freeze"]: r for sz, r in rows if sz == size}
        xs = [i + j * width for i, f in enumerate(strategies) if f in vals]
        ax.bar(xs, [vals[f]["test_mae"] for f in strategies if f in vals], width,
               yerr=[vals[f]["test_mae_std"] or 0 for f in strategies if f in vals], capsize=3, label=f"FT size {size}")
    ax.set_xticks([i + width * (len(cols) - 1) / 2 for i in range(len(strategies))], labels=strategies)
    ax.set_ylabel("test MAE (best per freeze strategy)")
    ax.set_title("Effect of the freeze strategy (transfer trials)")
    ax.legend(fontsize=7)
    return _save(fig, path)


def parity(best: list[tuple[str, dict[str, Any], str | None]], target: str, path: Path,
           names: dict[str, str] | None = None, targets: list[str] | None = None) -> Path | None:
    """One panel per FT size (per target and size: ``targets``, one per entry of ``best``): test predictions of
    the best trial (first repeat)."""
    panels = [(size, b, pl.read_parquet(p).filter(pl.col("split") == "test"), (targets or [])[i] if targets else target)
              for i, (size, b, p) in enumerate(best) if p and Path(p).exists()]
    if not panels:
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3.6), squeeze=False)
    for ax, (size, b, df, target) in zip(axes[0], panels):
        y, p = df["y_true"].to_numpy(), df["y_pred"].to_numpy()
        lo, hi = float(min(y.min(), p.min())), float(max(y.max(), p.max()))
        ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
        ax.scatter(y, p, s=10, alpha=0.7)
        ax.set_xlabel(f"DFT {short(target, names)}")
        ax.set_ylabel("predicted")
        ax.set_title(f"FT size {size}: trial {b['trial']}\n{_fam(b['family'], names=names)}", fontsize=8)
    return _save(fig, path)


def importance(imps: dict[str, dict[str, float] | str], path: Path) -> Path | None:
    panels = [(k, v) for k, v in imps.items() if isinstance(v, dict) and v]
    if not panels:
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, len(panels), figsize=(3.4 * len(panels), 0.6 + 0.3 * max(len(v) for _, v in panels)),
                             squeeze=False)
    for ax, (branch, v) in zip(axes[0], panels):
        names = list(v)[::-1]
        ax.barh(names, [v[n] for n in names])
        ax.set_title(f"PED-ANOVA: {branch}", fontsize=8)
        ax.set_xlabel("importance")
    return _save(fig, path)


def progress(trials: pl.DataFrame, path: Path) -> Path | None:
    d = trials.filter(pl.col("val_mae").is_not_null()).sort("trial")
    if d.height == 0:
        return None
    plt = _plt()
    order = trials.sort("trial")
    epochs = order["epochs_run"].fill_null(0).cum_sum().to_list()
    cum = dict(zip(order["trial"].to_list(), epochs))
    best, bx, by, ce = float("inf"), [], [], []
    for r in d.iter_rows(named=True):
        best = min(best, r["val_mae"])
        bx.append(r["trial"]), by.append(best), ce.append(cum[r["trial"]])
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(8.0, 3.2))
    a1.scatter(d["trial"], d["val_mae"], s=10, alpha=0.5, label="trial")
    a1.step(bx, by, where="post", color="C3", label="best so far")
    a1.set_xlabel("trial")
    a1.set_ylabel("validation MAE")
    a1.legend(fontsize=7)
    a2.step(ce, by, where="post", color="C3")
    a2.set_xlabel("FT trial-epochs spent")
    a2.set_ylabel("best validation MAE so far")
    fig.suptitle("Search progress")
    return _save(fig, path)


def atlas(atlas: list[dict[str, Any]], path: Path, names: dict[str, str] | None = None) -> Path | None:
    """One heat map per FT size: gain of PT->FT over scratch (%) per PT source (rows) and FT target (columns),
    the numbers (mean +/- std over repeats, freeze strategy) in the cells; blank where nothing was compared."""
    if not atlas or not any(c.get("gain_pct") for a in atlas for c in a["cells"]):
        return None
    plt = _plt()
    rows, cols = atlas[0]["sources"], atlas[0]["targets"]
    fig, axes = plt.subplots(1, len(atlas), figsize=(1.8 + 1.7 * len(cols) * len(atlas), 1.4 + 0.6 * len(rows)),
                             squeeze=False)
    vals = [abs(c["gain_pct"]["mean"]) for a in atlas for c in a["cells"] if c.get("gain_pct")]
    lim = max(vals) or 1.0
    for ax, a in zip(axes[0], atlas):
        cells = {(c["source"], c["target"]): c for c in a["cells"]}
        grid = [[cells[(r, t)]["gain_pct"]["mean"] if cells[(r, t)].get("gain_pct") else float("nan")
                 for t in a["targets"]] for r in a["sources"]]
        im = ax.imshow(grid, cmap="RdBu", vmin=-lim, vmax=lim, aspect="auto")
        ax.set_xticks(range(len(a["targets"])), labels=[short(t, names) for t in a["targets"]], rotation=30,
                      ha="right", fontsize=7)
        first = ax is axes[0][0]  # the sources are named once, on the left: the panels share them
        ax.set_yticks(range(len(a["sources"])), labels=[short(r, names) for r in a["sources"]] if first else [],
                      fontsize=7)
        ax.grid(False)
        for i, r in enumerate(a["sources"]):
            for j, t in enumerate(a["targets"]):
                g = cells[(r, t)].get("gain_pct")
                txt = "-" if not g else f"{g['mean']:+.1f}" + (f"\n+/-{g['std']:.1f}" if g.get("std") is not None
                                                              else "") + f"\n{cells[(r, t)].get('freeze') or ''}"
                ax.text(j, i, txt, ha="center", va="center", fontsize=6)
        ax.set_title(f"FT size {a['ft_size']}", fontsize=8)
    fig.colorbar(im, ax=list(axes[0]), label="gain over scratch (%)")
    fig.suptitle("Transferability atlas: PT source x FT target")
    return _save(fig, path)
