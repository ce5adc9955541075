"""Warm start (issue 15.3): a search that imports an earlier study's finished trials reaches the grid's best with
fewer new trial-epochs than the same search from cold.

Benchmark: matminer2018 dielectric n at FT size 100 (real DFT data), the tiny ALIGNN and PT settings of
``benchmarks/search_efficiency.py`` (its BASE spec), ``--epochs`` FT epochs (15), ``--repeats`` (2), no early
stopping (scheduler none).

- earlier: scratch and PT->FT (flla_2015 formation energy) with all layers or 2B retrained: 3 configurations.
- the new space: scratch, PT->FT and MPT x the paper's five freeze strategies: 11 configurations, each tried
  once (the budget is the grid, so its best is the grid's best).
- cold: the new space from nothing, 11 trials. warm: the same spec with ``--warm-start`` of the earlier study and
  11 less the imported trials (``budget.trials`` counts the trials a study runs; imported ones are not run).

Each study pays for its own PT (its own empty PT store; datasets and graphs come from one shared cache, built
by the earlier study). Compute = FT trial-epochs run by the study (imported trials ran nothing) + PT epochs of the
models it trained. Prints both sides' best configuration and validation MAE (they must agree) and
``RATIO warm_start_compute_fraction=`` (warm / cold). About 10 min on 2 idle cores.

Usage: python benchmarks/warm_start.py [--epochs 15] [--repeats 2] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).parent))


def spec(name: str, strategies: list[str], freezes: list[str], trials: int, epochs: int, repeats: int) -> Any:
    import yaml

    from search_efficiency import BASE, _free_port

    from tlsearch.search.spec import spec_from_dict

    data = yaml.safe_load(BASE)
    data["data"]["target"] = {"dataset": "matminer2018:dielectric_constant", "property": "n"}
    data["data"]["mpt_properties"] = [p for p in data["data"]["mpt_properties"] if p["property"] != "band_gap"]
    data.update(name=name, tracking={"mode": "disabled"}, scheduler={"type": "none"},
                cluster={"dashboard_host": "127.0.0.1", "dashboard_port": _free_port()})
    data["search"].update(strategy=strategies, freeze=freezes, ft_size=[100], ft_lr=1e-3,
                          mpt_subset={"min_size": 4, "max_size": 4})
    data["budget"] = {"trials": trials, "max_epochs": epochs, "pt_epochs": 6, "repeats": repeats}
    return spec_from_dict(data, where=f"benchmarks/warm_start.py {name}")


def run(s: Any, work: Path, warm: list[Path] | None = None) -> dict[str, Any]:
    """One study through the CLI's own steps (warm start, run_study, report); its compute and best."""
    import polars as pl
    import ray
    from rich.console import Console

    from tlsearch.analysis import build_report
    from tlsearch.search import runner
    from tlsearch.search.experiment import Experiment
    from tlsearch.search.warm_start import import_trials
    from tlsearch.training._store_io import read_header

    store = work / "cache" / "pretrained"
    shutil.rmtree(store, ignore_errors=True)  # each study pays for its own PT
    exp = Experiment.create(s, work / "exp", s.name)
    t0 = time.perf_counter()
    imported = import_trials(s, exp, warm)[0] if warm else []
    try:
        with open(work / "study.log", "a") as fh:
            runner.run_study(s, exp, Console(file=fh, width=120))
    finally:
        ray.shutdown()
    pt_epochs = sum(read_header(p)[0]["meta"]["epochs"] for p in store.glob("*.pt"))
    rep = build_report(exp)
    trials = pl.read_parquet(rep.trials)
    ran = trials.filter(pl.col("imported_from").is_null())
    best = rep.summary["by_ft_size"][0]["best"]
    return {"ft_epochs": int(ran["epochs_run"].fill_null(0).sum()), "pt_epochs": pt_epochs, "ran": ran.height,
            "imported": len(imported), "best": (best["strategy"], best["freeze"], best["val_mae"]),
            "wall": time.perf_counter() - t0, "dir": exp.root}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="tlsearch-warm-"))
    shutil.rmtree(work / "exp", ignore_errors=True)
    (work / "home").mkdir(parents=True, exist_ok=True)
    os.environ.update(HOME=str(work / "home"), TLSEARCH_CACHE=str(work / "cache"), WANDB_MODE="disabled",
                      RAY_TMPDIR=tempfile.mkdtemp(prefix="tlsw", dir="/tmp"), RAY_AUTH_MODE="disabled",
                      PYTHONWARNINGS="ignore")
    freezes = ["all_unfrozen", "2b", "3b", "new_head", "last_layer"]
    e, r = args.epochs, args.repeats
    earlier = run(spec("earlier", ["scratch", "finetune"], ["all_unfrozen", "2b"], 3, e, r), work)
    print(f"earlier study: {earlier['ran']} trials, {earlier['ft_epochs']} FT + {earlier['pt_epochs']} PT epochs "
          f"({earlier['wall']:.0f} s)", flush=True)
    from tlsearch.search.warm_start import candidates

    grid = spec("cold", ["scratch", "finetune", "mpt"], freezes, 11, e, r)
    n_imported = len(candidates(grid, [earlier["dir"]])[0])
    sides = {}
    # budget.trials counts new trials: the warm search asks for the grid's 11 less the ones it imports
    for name, warm, trials in (("cold", None, 11), ("warm", [earlier["dir"]], 11 - n_imported)):
        sides[name] = out = run(spec(name, ["scratch", "finetune", "mpt"], freezes, trials, e, r), work, warm)
        print(f"{name}: {out['ran']} trials run, {out['imported']} imported; {out['ft_epochs']} FT + "
              f"{out['pt_epochs']} PT epochs; best {out['best'][0]} {out['best'][1] or ''} val MAE "
              f"{out['best'][2]:.4f} ({out['wall']:.0f} s)", flush=True)
    cold, warm = sides["cold"], sides["warm"]
    same = cold["best"] == warm["best"]
    print(f"the warm search {'reached' if same else 'DID NOT reach'} the cold search's (the grid's) best")
    frac = (warm["ft_epochs"] + warm["pt_epochs"]) / (cold["ft_epochs"] + cold["pt_epochs"])
    print(f"RATIO warm_start_compute_fraction={frac:.3f}")
    print(f"RATIO warm_start_same_best={int(same)}")


if __name__ == "__main__":
    main()
