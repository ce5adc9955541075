"""Replay synchronous successive halving on the search-efficiency grid's own learning curves (no training).

The grid of ``benchmarks/search_efficiency.py`` runs every configuration to the end and keeps each run's
per-epoch validation MAE. Successive halving from ``grace`` epochs with factor ``eta`` over a size's 11
configurations only ever looks at a prefix of the first repeat's curve, so its decisions, and the compute
they cost, can be replayed exactly from those curves: at each rung (``grace * eta**i`` epochs, below the
last) the best ``ceil(n / eta)`` by best validation MAE so far go on, the survivors of the last rung run
every repeat, and the pick is the survivor with the best mean validation MAE (its test MAE is the grid's).
This is what ``scheduler: {type: sh}`` does in a study (tlsearch/search/_sh.py), so the table shows how the
benchmark's verdict depends on the two settings, not only at the one the benchmark runs; each setting is
replayed without and with ``protect_families`` (each strategy family's best at a rung goes on too).

Before the table: how often the families' order at a rung epoch disagrees with their final order on these
curves. Per (target, size) and rung epoch E, each family (scratch, PT->FT, MPT) is ranked by the best
validation MAE so far at E of its best configuration (first repeat, what a scheduler sees) and, at the end,
by its best configuration's mean validation MAE over repeats (what the grid selects by); a pair ordered one
way at E and the other way at the end is a reversal (``RATIO grid_rung_family_pairs_reversed_pct``). A
family that is last at E among three is outside the best third, so successive halving without the family
rule drops it wholesale at E when all its configurations are ranked below the cut.

Usage: python benchmarks/sh_replay.py [--workdir DIR] (default /tmp/se_wd: search_efficiency.py's --workdir).
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tlsearch.search._sh_bracket import _Bracket, rungs  # noqa: E402 - the scheduler's own bookkeeping

SETTINGS = [(1, 2), (1, 3), (1, 4), (2, 3), (3, 3), (5, 3)]


def family(label: str) -> str:
    """The strategy family of a grid label ('scratch', 'PT->FT 2b', 'MPT new_head' -> scratch, PT->FT, MPT)."""
    return label.split()[0]


def replay_cell(rows: list[dict[str, Any]], grace: int, eta: float, epochs: int, repeats: int,
                protect: bool = False) -> tuple[str, int]:
    """(picked label, FT trial-epochs spent) for one (target, size): rows = the grid's configurations, halved
    by the scheduler's own bracket (GroupedSH's rungs, ranking and ceil(n / eta))."""
    b = _Bracket(len(rows), rungs(grace, eta, epochs), eta, protect)
    for i in range(len(rows)):
        b.add(str(i))
        b.families[str(i)] = family(rows[i]["label"])
    spent = prev = 0
    for e in b.rungs:
        spent += len(b.alive) * (e - prev)
        b.at_rung = {t: min(rows[int(t)]["curves"][0][:e]) for t in b.alive}  # best so far
        b.halve()
        prev = e
    spent += len(b.alive) * (epochs * repeats - prev)
    pick = min(b.alive, key=lambda t: statistics.mean(rows[int(t)]["val"]))
    return rows[int(pick)]["label"], spent


def replay(grids: dict[str, dict[Any, Any]], epochs: int, repeats: int) -> list[str]:
    """Table lines: per setting, compute fraction (PT included, as the benchmark counts it) and gaps."""
    cells = ", ".join(f"{p} {z}" for p, g in grids.items() for z in g["sizes"])
    lines = [f"replay of synchronous successive halving on the grid's curves (no training): grace, eta -> "
             f"compute fraction, worst gap, gaps per cell ({cells})"]
    for (grace, eta), protect in [(g, p) for g in SETTINGS for p in (False, True)]:
        gaps, spent, total = [], 0, 0
        for grid in grids.values():
            total += grid["pt_epochs"] + sum(r["epochs"] for z in grid["sizes"] for r in grid[z]["rows"])
            spent += grid["pt_epochs"]
            for z in grid["sizes"]:
                rows = grid[z]["rows"]
                label, cost = replay_cell(rows, grace, eta, epochs, repeats, protect)
                spent += cost
                best = min(rows, key=lambda r: statistics.mean(r["val"]))
                test = {r["label"]: statistics.mean(r["test"]) for r in rows}
                gaps.append(100 * (test[label] - test[best["label"]]) / test[best["label"]])
        rule = " protect_families" if protect else ""
        lines.append(f"  grace {grace} eta {eta}{rule}: compute {spent / total:.3f}, worst gap {max(gaps):+.1f} %  "
                     f"({', '.join(f'{g:+.1f}' for g in gaps)})")
    return lines


def family_reversals(grids: dict[str, dict[Any, Any]], epochs_at: list[int]) -> list[str]:
    """Lines: per (target, size) and epoch, the families' order there and at the end, reversals marked; then
    the share of family pairs reversed over all of them."""
    lines = ["families' order at a rung epoch (first repeat, best so far) vs at the end (mean over repeats):"]
    pairs = reversed_pairs = reversed_first = 0
    for target, grid in grids.items():
        for z in grid["sizes"]:
            rows = grid[z]["rows"]
            final: dict[str, float] = {}
            for r in rows:
                final[family(r["label"])] = min(final.get(family(r["label"]), float("inf")), statistics.mean(r["val"]))
            lines.append(f"  {target} {z}: end " + " < ".join(f"{f} {v:.4g}" for f, v in sorted(final.items(),
                                                                                             key=lambda kv: kv[1])))
            first: dict[str, float] = {}  # the first repeat's own end: the early-vs-late part alone
            for r in rows:
                first[family(r["label"])] = min(first.get(family(r["label"]), float("inf")), min(r["curves"][0]))
            for e in epochs_at:
                early: dict[str, float] = {}
                for r in rows:
                    f = family(r["label"])
                    early[f] = min(early.get(f, float("inf")), min(r["curves"][0][:e]))
                rev = [(a, b) for a, b in itertools.combinations(sorted(early), 2)
                       if (early[a] - early[b]) * (final[a] - final[b]) < 0]
                reversed_first += sum(1 for a, b in itertools.combinations(sorted(early), 2)
                                      if (early[a] - early[b]) * (first[a] - first[b]) < 0)
                pairs += len(early) * (len(early) - 1) // 2
                reversed_pairs += len(rev)
                lines.append(f"    epoch {e:2d}: " + " < ".join(f"{f} {v:.4g}" for f, v in sorted(early.items(),
                                                                                             key=lambda kv: kv[1]))
                             + (f"  REVERSED: {'; '.join(f'{a} vs {b}' for a, b in rev)}" if rev else ""))
    lines.append(f"{reversed_pairs} of {pairs} family pairs were ordered the other way at the end (mean over repeats, "
                 f"what the report selects by); {reversed_first} of {pairs} against the first repeat's own last epoch")
    lines.append(f"RATIO grid_rung_family_pairs_reversed_first_repeat_pct="
                 f"{100.0 * reversed_first / pairs if pairs else 0.0:.1f}")
    lines.append(f"RATIO grid_rung_family_pairs_reversed_pct={100.0 * reversed_pairs / pairs if pairs else 0.0:.1f}")
    return lines


def load_grids(work: Path, epochs: int, repeats: int) -> dict[str, dict[Any, Any]]:
    """The grids kept in ``work`` (grid-<target>.jsonl), in run_grid's shape, or {} if a run has no curve."""
    grids: dict[str, dict[Any, Any]] = {}
    for log in sorted(work.glob("grid-*.jsonl")):
        done = [json.loads(line) for line in log.read_text().splitlines()]
        if not done or any(not d.get("curve") for d in done):
            return {}
        sizes = sorted({d["size"] for d in done})
        g: dict[Any, Any] = {"sizes": sizes}
        for z in sizes:
            labels = list(dict.fromkeys(d["label"] for d in done if d["size"] == z))
            g[z] = {"rows": []}
            for lab in labels:
                rs = sorted((d for d in done if d["size"] == z and d["label"] == lab), key=lambda d: d["repeat"])
                g[z]["rows"].append({"label": lab, "val": [d["val"] for d in rs], "test": [d["test"] for d in rs],
                                     "curves": [d["curve"] for d in rs], "epochs": sum(d["epochs"] for d in rs)})
        g["pt_epochs"] = sum(e for e, _ in {d["pt"][0]: d["pt"][1:] for d in done if d["pt"]}.values())
        grids[log.stem.removeprefix("grid-")] = g
    return grids


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/se_wd"))
    args = ap.parse_args()
    settings = json.loads((args.workdir / "settings.json").read_text())
    grids = load_grids(args.workdir, settings["epochs"], settings["repeats"])
    if not grids:
        raise SystemExit(f"{args.workdir}: no grid with per-epoch curves (run benchmarks/search_efficiency.py)")
    epochs_at = sorted({e for g, eta in SETTINGS for e in rungs(g, eta, settings["epochs"])})
    print("\n".join(family_reversals(grids, epochs_at)))
    print("\n".join(replay(grids, settings["epochs"], settings["repeats"])))


if __name__ == "__main__":
    main()
