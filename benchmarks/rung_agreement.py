"""Does an early-epoch ranking of the strategy families agree with their final ranking? Read from a finished study.

For every FT size and every rung epoch E (ASHA's or successive halving's decision points, or any epochs given),
the families (scratch, PT->FT per source, MPT per set) are ranked by the best validation MAE any of their trials
had at epoch E (first repeat), and by the validation MAE of their best finished trial (mean over repeats, what the
report selects by). A pair of families ordered one way at E and the other way at the end is a reversal: a
scheduler that judged families at E alone would have dropped the one that wins. Needs only trials.parquet and
history.parquet (run `tlsearch report DIR` first).

Usage: python benchmarks/rung_agreement.py EXPERIMENT_DIR [--epochs 4 12]
Last lines: RATIO rung_family_pairs_reversed_pct=<% of family pairs ordered differently at the rungs than at the end>
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import polars as pl


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("experiment", type=Path)
    ap.add_argument("--epochs", type=int, nargs="+", default=None, help="epochs to judge at (default: the rungs)")
    args = ap.parse_args()
    trials = pl.read_parquet(args.experiment / "trials.parquet")
    hist = pl.read_parquet(args.experiment / "history.parquet").join(
        trials.select("trial", "family", "ft_size"), on="trial")
    epochs = args.epochs or _rungs(args.experiment)
    pairs = reversed_pairs = 0
    for (size,), d in sorted(trials.group_by(["ft_size"]), key=lambda kv: int(kv[0][0]) if kv[0][0].isdigit() else 1e9):
        fin = d.filter(pl.col("state") == "finished")
        final = {f: float(g["val_mae"].min()) for (f,), g in fin.group_by(["family"])}
        print(f"FT size {size}: final family order (best finished trial's val MAE): "
              + " < ".join(f"{f} {v:.4g}" for f, v in sorted(final.items(), key=lambda kv: kv[1])))
        for epoch in epochs:
            at = hist.filter((pl.col("ft_size") == size) & (pl.col("epoch") == epoch))
            early = {f: float(g["val_mae"].min()) for (f,), g in at.group_by(["family"]) if f in final}
            rev = [(a, b) for a, b in itertools.combinations(sorted(early), 2)
                   if (early[a] - early[b]) * (final[a] - final[b]) < 0]
            pairs += len(list(itertools.combinations(early, 2)))
            reversed_pairs += len(rev)
            order = sorted(early.items(), key=lambda kv: kv[1])
            print(f"  at epoch {epoch}: " + " < ".join(f"{f} {v:.4g}" for f, v in order)
                  + (f"  REVERSED: {'; '.join(f'{a} vs {b}' for a, b in rev)}" if rev else "  (same order)"))
    print(f"{reversed_pairs} of {pairs} family pairs judged at a rung were ordered the other way at the end")
    print(f"RATIO rung_family_pairs_reversed_pct={100.0 * reversed_pairs / pairs if pairs else 0.0:.1f}")


def _rungs(exp: Path) -> list[int]:
    import json

    from tlsearch.search._sh_bracket import rungs

    spec = json.loads((exp / "spec.json").read_text())
    sch = spec["scheduler"]
    return rungs(sch.get("grace_period", 1), sch.get("reduction_factor", 3.0), spec["budget"]["max_epochs"])


if __name__ == "__main__":
    main()
