"""Selection regret: does validation pick what the held-out test set would, at small FT sizes?

Both ways side by side, on the same draws, in one script (issue 27, item 4):

- **baseline** (the selection before issue 27): each repeat's FT sample split once 90/10 into train/validation
  (``budget.cv_folds: 1``), 2 repeats; a configuration's validation MAE is the mean over repeats of its 10 %
  validation split, its test MAE the mean over repeats of its one model's.
- **new**: each repeat's FT sample cross-validated (``budget.cv_folds: auto``: 5 folds up to 300 structures, one
  90/10 split above), 2 repeats; validation MAE = mean over repeats of the out-of-fold MAE over the whole sample,
  test MAE = mean over repeats of the fold ensemble's. Selection = the lowest mean out-of-fold MAE (the leader of
  :func:`tlsearch.search.selection.verdict`; its probability of being best is printed beside it).

The grid is the quickstart's (``search_spaces/quickstart.yaml``: scratch, PT->FT on flla_2015 formation energy and
MPT on four other matminer properties, each with the paper's five freeze strategies: 11 configurations; ALIGNN
2+2/64/64, batch 16, lr 1e-3, ``--epochs`` FT epochs, every configuration to the last epoch, no early stopping).
For target ``n`` the shipped PT models are used; for ``eij_max`` the PT models are trained (``--pt-epochs``) without
``eij_max`` in the MPT set and without its held-out test set. A **draw set** d is one independent set of FT
draws: repeat r of draw set d uses sample/model seed ``1000 d + r`` for every configuration and both ways; the
held-out test set is fixed (the spec's split seed).

Per (target, size, draw set) and way: regret = test MAE of the selected configuration / the lowest test MAE
among the 11 configurations that way trained - 1; family agreement = the selected configuration's family
(scratch, PT->FT, MPT) is the family of the test-best configuration. Compute = trial-epochs (a fold model's epoch
counts as one).

Prints ``RATIO selection_regret_pct_<target>_<size>=`` (new, mean over draw sets),
``RATIO baseline_selection_regret_pct_<target>_<size>=``, ``RATIO family_agreement=`` (new; share of draw sets and
cells), ``RATIO baseline_family_agreement=`` and ``RATIO selection_compute_ratio=`` (new / baseline trial-epochs).
Targets: mean regret <= 5 % at 100 and <= 2 % at 800 on both targets; family agreement >= 0.8.

Every run is kept in ``--workdir`` (one JSON per run): an interrupted benchmark, or one grown with more draw sets,
targets or sizes, trains only what is missing.

Usage: python benchmarks/selection.py [--targets n eij_max] [--sizes 100 800] [--draws 5] [--epochs 20]
       [--jobs 2] [--workdir benchmarks/.selection-work]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "search_spaces" / "quickstart.yaml"
TARGETS = {"n": ("matminer2018:dielectric_constant", "n"),
           "eij_max": ("matminer2018:piezoelectric_tensor", "eij_max")}
MPT_ALL = [("matminer2018:elastic_tensor", "K_VRH"), ("matminer2018:elastic_tensor", "G_VRH"),
           ("matminer2018:piezoelectric_tensor", "eij_max"), ("matminer2018:dielectric_constant", "band_gap"),
           ("matminer2018:dielectric_constant", "n")]
FAMILY = {"scratch": "scratch", "finetune": "PT->FT", "mpt": "MPT"}


def make_spec(target: str, epochs: int, pt_epochs: int, cv_folds: int | str) -> Any:
    """The quickstart's spec for ``target``: for n the shipped PT models; otherwise its MPT set is the four
    properties other than the target (one subset) and its PT models are trained."""
    import yaml

    from tlsearch.search.spec import load_spec, spec_from_dict

    base = yaml.safe_load(QUICKSTART.read_text())
    ds, prop = TARGETS[target]
    base["data"]["target"] = {"dataset": ds, "property": prop}
    if target != "n":
        base["data"]["mpt_properties"] = [{"dataset": d, "property": p} for d, p in MPT_ALL if p != prop][:4]
        base["data"].pop("pretrained", None)
        base["budget"]["pt_epochs"] = pt_epochs
    base["budget"].update(max_epochs=epochs, repeats=2, cv_folds=cv_folds)
    base["scheduler"] = {"type": "none"}
    if target == "n":  # resolve the shipped PT files next to the quickstart
        tmp = QUICKSTART.parent / f".selection-{os.getpid()}.yaml"
        tmp.write_text(yaml.safe_dump(base))
        try:
            return load_spec(tmp)
        finally:
            tmp.unlink()
    return spec_from_dict(base)


def grid(spec: Any) -> list[dict[str, Any]]:
    return [{"strategy": "scratch"}] + [{"strategy": s, "freeze": f} for s in ("finetune", "mpt")
                                        for f in spec.search.freeze]


def label(cell: dict[str, Any]) -> str:
    return FAMILY[cell["strategy"]] + (f" {cell['freeze']}" if cell.get("freeze") else "")


def _run(job: dict[str, Any]) -> dict[str, Any]:
    """One training (one configuration, one repeat of one draw set, one way) in a worker with 1 torch thread."""
    import torch

    torch.set_num_threads(1)
    from tlsearch.search.space import train_config
    from tlsearch.search.spec import SearchSpec
    from tlsearch.training import train_trial

    spec = SearchSpec.model_validate(job["spec"])
    cfg = train_config(spec, {**job["cell"], "ft_size": job["size"]}, 0, cache_dir=job["cache"],
                       store_dir=job["store"])
    seed = 1000 * job["draw"] + job["repeat"]
    cfg = cfg.model_copy(update={"seed": seed, "threads": 1,
                                 "train": cfg.train.model_copy(update={"sample_seed": seed})})
    t0 = time.perf_counter()
    r = train_trial(cfg)
    return {**{k: job[k] for k in ("target", "size", "draw", "repeat", "way")}, "cell": label(job["cell"]),
            "family": FAMILY[job["cell"]["strategy"]], "val_mae": r.val["mae"], "test_mae": r.test["mae"],
            "folds": r.folds, "epochs": len(r.history) * r.folds, "seconds": time.perf_counter() - t0,
            "val_folds": [f["mae"] for f in r.val_folds] or [r.val["mae"]]}


def regret(val: dict[str, float], test: dict[str, float]) -> tuple[str, float]:
    """The configuration validation selects and its regret in %: its test MAE / the lowest test MAE - 1."""
    pick = min(val, key=lambda c: (val[c], c))
    return pick, 100.0 * (test[pick] / min(test.values()) - 1.0)


def summarise(runs: list[dict[str, Any]], out: Any) -> dict[str, float]:
    from tlsearch.search.selection import verdict

    ratios: dict[str, float] = {}
    agree: dict[str, list[bool]] = {"new": [], "baseline": []}
    epochs = {"new": 0, "baseline": 0}
    for r in runs:
        epochs[r["way"]] += r["epochs"]
    conds = sorted({(r["target"], r["size"]) for r in runs})
    for target, size in conds:
        for way in ("baseline", "new"):
            regrets = []
            for d in sorted({r["draw"] for r in runs if (r["target"], r["size"]) == (target, size)}):
                mine = [r for r in runs if (r["target"], r["size"], r["draw"], r["way"]) == (target, size, d, way)]
                by: dict[str, list[dict[str, Any]]] = {}
                for r in mine:
                    by.setdefault(r["cell"], []).append(r)
                if len(by) < 11 or any(len(v) < 2 for v in by.values()):
                    continue  # an incomplete draw set is not scored
                val = {c: statistics.mean(x["val_mae"] for x in v) for c, v in by.items()}
                test = {c: statistics.mean(x["test_mae"] for x in v) for c, v in by.items()}
                pick, reg = regret(val, test)
                best_test = min(test, key=test.get)
                fam = {c: v[0]["family"] for c, v in by.items()}
                agree[way].append(fam[pick] == fam[best_test])
                regrets.append(reg)
                fams = {}
                for c, v in sorted(by.items(), key=lambda kv: val[kv[0]]):
                    fams.setdefault(fam[c], {"family": fam[c], "trial": c, "val_mae": val[c], "cost": None,
                                             "cv_folds": v[0]["folds"],
                                             "val_mae_per_fold": [x for rr in sorted(v, key=lambda q: q["repeat"])
                                                                  for x in rr["val_folds"]]})
                sel = verdict(list(fams.values()))
                p = sel["p_best"].get(fam[pick])
                print(f"{target} {size} draw {d} {way:8s}: selects {pick:16s} (val {val[pick]:.4f}, test "
                      f"{test[pick]:.4f}); test-best {best_test:16s} ({test[best_test]:.4f}); regret {reg:5.1f} %; "
                      f"P(best family) {p if p is None else round(p, 2)}", file=out, flush=True)
            if regrets:
                key = f"selection_regret_pct_{target}_{size}" if way == "new" else \
                    f"baseline_selection_regret_pct_{target}_{size}"
                ratios[key] = statistics.mean(regrets)
                print(f"{target} {size} {way}: mean regret {statistics.mean(regrets):.2f} % over {len(regrets)} "
                      f"draw sets (max {max(regrets):.1f} %)", file=out, flush=True)
    if agree["new"]:
        ratios["family_agreement"] = sum(agree["new"]) / len(agree["new"])
    if agree["baseline"]:
        ratios["baseline_family_agreement"] = sum(agree["baseline"]) / len(agree["baseline"])
    if epochs["baseline"]:
        ratios["selection_compute_ratio"] = epochs["new"] / epochs["baseline"]
    return ratios


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--targets", nargs="+", default=["n", "eij_max"], choices=sorted(TARGETS))
    ap.add_argument("--sizes", nargs="+", type=int, default=[100, 800])
    ap.add_argument("--draws", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--pt-epochs", type=int, default=30)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--workdir", default=str(ROOT / "benchmarks" / ".selection-work"))
    ap.add_argument("--summary-only", action="store_true", help="score the runs in --workdir, train nothing")
    a = ap.parse_args()
    work = Path(a.workdir)
    (work / "runs").mkdir(parents=True, exist_ok=True)
    cache = os.environ.get("TLSEARCH_CACHE") or str(Path.home() / ".cache" / "tlsearch")
    store = str(work / "store")
    print(f"# selection benchmark: targets {a.targets}, sizes {a.sizes}, {a.draws} draw sets x 2 repeats, "
          f"{a.epochs} FT epochs, {a.jobs} workers x 1 thread; runs in {work}", flush=True)
    jobs = []
    for target in a.targets:
        specs = {"baseline": make_spec(target, a.epochs, a.pt_epochs, 1),
                 "new": make_spec(target, a.epochs, a.pt_epochs, "auto")}
        if specs["new"].data.pretrained:
            from tlsearch.search.pt_files import import_pretrained
            from tlsearch.training.store import PretrainStore

            import_pretrained(specs["new"], PretrainStore(store))
        for size in a.sizes:
            for d in range(a.draws):
                for way, spec in specs.items():
                    for cell in grid(spec):
                        for rep in range(2):
                            name = f"{target}-{size}-d{d}-{way}-{label(cell).replace(' ', '_')}-r{rep}.json"
                            jobs.append((work / "runs" / name, {
                                "spec": spec.model_dump(mode="json"), "cell": cell, "size": size, "draw": d,
                                "repeat": rep, "way": way, "target": target, "cache": cache, "store": store}))
    todo = [(p, j) for p, j in jobs if not p.exists()]
    print(f"# {len(jobs)} runs, {len(jobs) - len(todo)} already in the workdir, {len(todo)} to train", flush=True)
    if todo and not a.summary_only:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor, as_completed

        # PT models first, one at a time (each key is trained once; the store's lock would serialise them anyway)
        firsts = {}
        for p, j in todo:
            if j["cell"]["strategy"] != "scratch":
                firsts.setdefault(j["cell"]["strategy"] + j["target"], (p, j))
        t0 = time.perf_counter()
        for p, j in firsts.values():
            r = _run(j)
            p.write_text(json.dumps(r))
            print(f"{r['target']} {r['size']} d{r['draw']} {r['way']} {r['cell']} r{r['repeat']}: val "
                  f"{r['val_mae']:.4f} test {r['test_mae']:.4f} ({r['seconds']:.0f} s, PT first)", flush=True)
        rest = [(p, j) for p, j in todo if not p.exists()]
        with ProcessPoolExecutor(a.jobs, mp_context=mp.get_context("spawn")) as pool:
            futs = {pool.submit(_run, j): p for p, j in rest}
            for i, f in enumerate(as_completed(futs), 1):
                r = f.result()
                futs[f].write_text(json.dumps(r))
                el = time.perf_counter() - t0
                print(f"[{i}/{len(rest)}, {el / 60:.1f} min, ETA {el / i * (len(rest) - i) / 60:.0f} min] "
                      f"{r['target']} {r['size']} d{r['draw']} {r['way']} {r['cell']} r{r['repeat']}: val "
                      f"{r['val_mae']:.4f} test {r['test_mae']:.4f} ({r['seconds']:.0f} s)", flush=True)
    runs = [json.loads(p.read_text()) for p, _ in jobs if p.exists()]
    ratios = summarise(runs, sys.stdout)
    print(f"# scored {len(runs)} of {len(jobs)} runs", flush=True)
    for k, v in ratios.items():
        print(f"RATIO {k}={v:.4g}", flush=True)


if __name__ == "__main__":
    main()
