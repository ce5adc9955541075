"""Scratch vs PT->FT on real data: matminer2018 dielectric n at several FT sizes, repeated draws.

PT: flla_2015 formation energy (the FT target's held-out test structures excluded), once, through the
pre-trained model store. FT: all layers retrained (the paper's ALL-UF). Scratch: same model, same
sample, fresh weights. Scored on the fixed held-out test set of dielectric n (never used for selection).

Usage: python benchmarks/transfer.py [--sizes 100 800] [--repeats 3] [--ft-epochs 40] [--pt-epochs 20]
Last lines: RATIO pt_gain_at_<size>=<scratch MAE / PT->FT MAE>.
"""

from __future__ import annotations

import argparse
import statistics
import time

from tlsearch.training import config_from_dict, train_trial

MODEL = {"alignn_layers": 2, "gcn_layers": 2, "hidden_features": 64, "embedding_features": 32}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[100, 800])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--ft-epochs", type=int, default=40)
    ap.add_argument("--pt-epochs", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    target = {"dataset": "matminer2018:dielectric_constant", "property": "n"}
    pretrain = {"sources": [{"dataset": "matminer2018:flla_2015", "property": "formation_energy_per_atom"}],
                "optim": {"epochs": args.pt_epochs, "batch_size": 32, "lr": 1e-3}}
    rows: dict[tuple[str, int], list[float]] = {}
    t0 = time.perf_counter()
    for size in args.sizes:
        for rep in range(args.repeats):
            for mode in ("scratch", "finetune"):
                cfg = {"name": f"{mode}-{size}-{rep}", "mode": mode, "target": target, "model": MODEL,
                       "threads": args.threads, "seed": rep,
                       "train": {"sample_size": size, "sample_seed": rep,
                                 "optim": {"epochs": args.ft_epochs, "batch_size": 16, "lr": 1e-3}}}
                if mode == "finetune":
                    cfg["pretrain"] = pretrain
                r = train_trial(config_from_dict(cfg))
                rows.setdefault((mode, size), []).append(r.test["mae"])
                pt = f" PT {'hit' if r.pretrain.store_hit else 'trained'} {r.pretrain.pt_seconds:.0f}s" if r.pretrain else ""
                print(f"{mode:9s} size {size:4d} draw {rep}: test MAE {r.test['mae']:.4f} "
                      f"(val {r.val['mae']:.4f}, best epoch {r.best_epoch}, {r.seconds:.0f}s{pt})", flush=True)
    print(f"\ndielectric n, held-out test MAE, mean +/- std over {args.repeats} draws ({time.perf_counter() - t0:.0f}s)")
    for size in args.sizes:
        s, f = rows[("scratch", size)], rows[("finetune", size)]
        sd = lambda v: statistics.stdev(v) if len(v) > 1 else 0.0  # noqa: E731
        print(f"size {size:4d}: scratch {statistics.mean(s):.4f} +/- {sd(s):.4f} | PT(FE)->FT "
              f"{statistics.mean(f):.4f} +/- {sd(f):.4f} | gain {100 * (1 - statistics.mean(f) / statistics.mean(s)):+.1f} %")
    for size in args.sizes:
        print(f"RATIO pt_gain_at_{size}={statistics.mean(rows[('scratch', size)]) / statistics.mean(rows[('finetune', size)]):.3f}")


if __name__ == "__main__":
    main()
