"""Search efficiency on a fixed real benchmark: tlsearch's search vs the exhaustive grid the paper ran by hand.

Benchmark (both sides): matminer2018 (real DFT data), FT targets dielectric_constant/n and
piezoelectric_tensor/eij_max (Devi et al.'s DC and PZ sets), FT sizes 100 and 800. Per target one spec built
from ``BASE`` below (a tiny ALIGNN: 1 ALIGNN + 1 GCN layer, hidden 32, embedding 16; batch 32; PT on 1500
structures for 6 epochs, PT lr 1e-3; the quickstart's settings when the benchmark was written, kept here so
that a change of the quickstart does not change this benchmark): strategies scratch, PT->FT (flla_2015
formation_energy_per_atom) and MPT (one set: every BASE MPT property except the target itself, so 5
for n and 4 for eij_max), the paper's five freeze strategies (all_unfrozen, 2b, 3b, new_head, last_layer),
ft_lr fixed to 1e-3 (so both sides cover the same discrete space: 1 + 5 + 5 = 11 configurations per size),
``--epochs`` FT epochs (15), ``--repeats`` FT draws per configuration (3; repeat i uses sample/model seed i on
both sides, and both train with 1 torch thread per run, so a configuration gives the same numbers on either
side).

Sides:

- grid: all 11 configurations x sizes x repeats, each run to the last epoch (no early stopping, as in the
  paper): ``train_config(spec, params, repeat)`` + ``train_trial`` in ``--jobs`` (2) worker processes,
  1 torch thread each, like the search's 2 concurrent 1-CPU trials (no Ray, no Optuna, no W&B). Per
  (target, size) the configuration with the best mean validation MAE is selected; its mean +/- std test
  MAE over repeats is reported.
- search: ``tlsearch.search.runner.run_study`` per target on a fresh local Ray (Tuner + OptunaSearch TPE +
  the FT-size cycling sampler; 1 CPU per trial, 2 concurrent; W&B disabled), then
  ``tlsearch.analysis.build_report``: per size the reported best (selected by validation MAE) and its test
  MAE. ``--scheduler sh`` (default): synchronous successive halving per FT size from 1 epoch with factor 3
  (rungs at 1, 3 and 9 epochs of the first repeat: 11 -> 4 -> 2 -> 1) and 22 trials per target, so each
  size's share holds the whole strategy x freeze grid and the sampler tries each combination once (the grid,
  screened instead of run in full). ``--scheduler asha``: ASHA (grace 5, factor 3) with
  ``--trials`` 6 (one trial per strategy family and size; the numbers of the previous version). One search
  per ``--search-seeds`` seed (spec ``search_seed``: the TPE sampler's seed only; data draws and model
  initialisations stay the grid's); with sh every trial is a covered grid cell, so the seed changes nothing
  and the seeds check that the search repeats itself. The verdict: the mean compute fraction over seeds and
  the worst gap over seeds and cells. Then a replay of successive halving at other (grace, factor) settings
  on the grid's own per-epoch curves (``benchmarks/sh_replay.py``; no training).

Compute = trial-epochs: FT epochs of every run and repeat (search: ``epochs_run`` of trials.parquet, which
counts the epochs the scheduler let a stopped trial run) + PT epochs once per distinct PT model. Each side pays for
its own PT: the grid's PT store is its own directory (PT epochs counted from ``result.pretrain``, once per
key); the search's is ``$TLSEARCH_CACHE/pretrained``, emptied before each study, and its PT epochs are read
from the models in it afterwards (the report's own count, from the PT keys the trials report with their
first epoch, is printed next to it). Both sides share one ``TLSEARCH_CACHE`` for parsed datasets and graphs (built once, up front,
by a 1-epoch warm-up that counts for neither side; ``--data-cache DIR`` copies datasets, sources and graphs,
never PT models, from an existing cache). A second measure weights each epoch by its training structures
(a PT epoch on ~1350 structures costs more than an FT epoch on 90). With ``--workdir DIR`` an interrupted run
picks up where it stopped: finished grid runs and finished studies are kept there and not run again.

Target (issue 6, 5a): the search's best test MAE within 5 % of the grid's at <= 20 % of its compute.
Usage: python benchmarks/search_efficiency.py [--targets n eij_max] [--sizes 100 800] [--scheduler sh] [--trials 22]
       [--search-seeds 0 1 2] [--epochs 15] [--repeats 3] [--jobs 2] [--quick] [--keep] [--data-cache DIR] [--workdir DIR]
Last lines: RATIO <name>=<value>.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

BASE = """
data:
  pretrain_sources: [{dataset: "matminer2018:flla_2015", property: formation_energy_per_atom}]
  mpt_properties:
    - {dataset: "matminer2018:flla_2015", property: formation_energy_per_atom}
    - {dataset: "matminer2018:elastic_tensor", property: K_VRH}
    - {dataset: "matminer2018:elastic_tensor", property: G_VRH}
    - {dataset: "matminer2018:piezoelectric_tensor", property: eij_max}
    - {dataset: "matminer2018:dielectric_constant", property: band_gap}
  pt_sample_size: 1500
search:
  strategy: [scratch, finetune, mpt]
  freeze: [all_unfrozen, 2b, 3b, new_head, last_layer]
  batch_size: 32
  architecture: {alignn_layers: 1, gcn_layers: 1, hidden_features: 32, embedding_features: 16}
budget: {max_epochs: 15, pt_epochs: 6}
scheduler: {type: asha, grace_period: 5, reduction_factor: 3}
resources: {cpus_per_trial: 1, gpus_per_trial: 0, max_concurrent: 2}
storage: experiments
"""
TARGETS = {"n": "matminer2018:dielectric_constant", "eij_max": "matminer2018:piezoelectric_tensor"}
FT_LR = 1e-3


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_spec(prop: str, sizes: list[int], trials: int, epochs: int, repeats: int, search_seed: int = 0,
              scheduler: str = "sh") -> Any:
    import yaml

    from tlsearch.search.spec import spec_from_dict

    data = yaml.safe_load(BASE)
    target = {"dataset": TARGETS[prop], "property": prop}
    n_mpt = len([p for p in data["data"]["mpt_properties"] if p != target])
    data.update(name=f"search-eff-{prop}-s{search_seed}", search_seed=search_seed, tracking={"project": "tlsearch-search-efficiency", "mode": "disabled"},
                cluster={"dashboard_host": "127.0.0.1", "dashboard_port": _free_port()})
    data["data"]["target"] = target
    data["search"].update(ft_size=list(sizes), ft_lr=FT_LR, mpt_subset={"min_size": n_mpt, "max_size": n_mpt})
    q = data["budget"]
    grace = max(1, round(data["scheduler"]["grace_period"] * epochs / q["max_epochs"]))
    data["budget"] = {**q, "trials": trials, "max_epochs": epochs, "repeats": repeats}
    data["scheduler"]["grace_period"] = grace
    if scheduler == "sh":  # successive halving from one epoch, keeping the best third at each rung
        data["scheduler"] = {"type": "sh", "grace_period": 1, "reduction_factor": 3}
    return spec_from_dict(data, where="benchmarks/search_efficiency.py spec")


def cells(spec: Any) -> list[dict[str, Any]]:
    """The grid: scratch, then PT->FT and MPT with each freeze strategy (one PT source, one MPT set)."""
    return [{"strategy": "scratch"}] + [{"strategy": s, "freeze": f} for s in ("finetune", "mpt")
                                        for f in spec.search.freeze]


def label(strategy: str, freeze: str | None) -> str:
    return {"scratch": "scratch", "finetune": "PT->FT", "mpt": "MPT"}[strategy] + (f" {freeze}" if freeze else "")


def _ms(xs: list[float]) -> str:
    return f"{statistics.mean(xs):.4f} +/- {statistics.stdev(xs) if len(xs) > 1 else 0.0:.4f}"


def warm_up(spec: Any, cache: Path) -> None:
    """Parse every dataset and build every graph pack once (1 FT epoch, 1 PT epoch, in a throw-away store)."""
    from tlsearch.search.space import train_config
    from tlsearch.training import train_trial

    with tempfile.TemporaryDirectory(prefix="tlsse-warm-") as store:
        for cell in cells(spec)[:: len(spec.search.freeze)]:  # scratch, PT->FT, MPT
            cfg = train_config(spec, {**cell, "ft_size": spec.search.ft_size[0]}, 0, cache_dir=cache,
                               store_dir=store)
            tr, pt = cfg.train, cfg.pretrain
            upd = {"threads": 1, "train": tr.model_copy(update={"optim": tr.optim.model_copy(update={"epochs": 1})})}
            if pt is not None:
                upd["pretrain"] = pt.model_copy(update={"optim": pt.optim.model_copy(update={"epochs": 1})})
            train_trial(cfg.model_copy(update=upd))


def _grid_run(spec_json: dict[str, Any], params: dict[str, Any], repeat: int, cache: str, store: str) -> dict:
    """One grid run in a worker process (1 torch thread, like a Ray trial with cpus_per_trial 1)."""
    from tlsearch.search.space import train_config
    from tlsearch.search.spec import SearchSpec
    from tlsearch.training import train_trial

    cfg = train_config(SearchSpec.model_validate(spec_json), params, repeat, cache_dir=cache, store_dir=store)
    res = train_trial(cfg.model_copy(update={"threads": 1}))
    pt = res.pretrain
    return {"val": res.val["mae"], "test": res.test["mae"], "epochs": len(res.history), "n_train": res.n_train,
            "pt": (pt.key, pt.epochs, pt.n_train) if pt else None, "curve": [m.val_mae for m in res.history]}


def run_grid(spec: Any, work: Path, jobs: int) -> dict[str, Any]:
    """Every grid run (finished ones are kept in ``grid-<target>.jsonl`` and not run again on a rerun)."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    prop, reps, t0 = spec.data.target.property, spec.budget.repeats, time.perf_counter()
    log = work / f"grid-{prop}.jsonl"
    done = {(d["size"], d["label"], d["repeat"]): d for d in map(json.loads, log.read_text().splitlines())
            } if log.exists() else {}
    grid = [(z, c, label(c["strategy"], c.get("freeze"))) for z in spec.search.ft_size for c in cells(spec)]
    todo = [(z, c, lab, r) for z, c, lab in grid for r in range(reps) if (z, lab, r) not in done]
    def show(z: int, lab: str, when: str) -> None:
        v, t = [done[(z, lab, i)]["val"] for i in range(reps)], [done[(z, lab, i)]["test"] for i in range(reps)]
        print(f"  grid {prop} size {z} {lab:18s} val {_ms(v)}  test {_ms(t)}  ({when})", flush=True)

    if done:
        print(f"  grid: {len(done)} runs done by an earlier invocation, {len(todo)} to go", flush=True)
        for z, _, lab in grid:
            if all((z, lab, i) in done for i in range(reps)):
                show(z, lab, "earlier invocation")
    sj, args = spec.model_dump(mode="json"), (str(work / "cache"), str(work / f"grid-pt-{prop}"))
    with ProcessPoolExecutor(jobs, mp_context=mp.get_context("spawn")) as pool, open(log, "a") as fh:
        runs = pool.map(_grid_run, *zip(*[(sj, {**c, "ft_size": z}, r, *args) for z, c, _, r in todo]))
        for (z, c, lab, r), res in zip(todo, runs):
            if res["epochs"] != spec.budget.max_epochs:
                raise RuntimeError(f"a grid run stopped after {res['epochs']} epochs")
            done[(z, lab, r)] = {"size": z, "label": lab, "repeat": r, **res}
            fh.write(json.dumps(done[(z, lab, r)]) + "\n")
            fh.flush()
            if all((z, lab, i) in done for i in range(reps)):
                show(z, lab, f"{time.perf_counter() - t0:.0f} s")
    out: dict[Any, Any] = {z: {"rows": []} for z in spec.search.ft_size}
    for z, _, lab in grid:
        rs = [done[(z, lab, i)] for i in range(reps)]
        out[z]["rows"].append({"label": lab, "val": [d["val"] for d in rs], "test": [d["test"] for d in rs],
                               "curves": [d.get("curve") for d in rs],
                               "epochs": sum(d["epochs"] for d in rs),
                               "sepochs": sum(d["epochs"] * d["n_train"] for d in rs), "n_train": rs[0]["n_train"]})
    for z in spec.search.ft_size:
        out[z]["best"] = min(out[z]["rows"], key=lambda x: statistics.mean(x["val"]))
    pt = {d["pt"][0]: d["pt"][1:] for d in done.values() if d["pt"]}  # PT epochs once per PT model
    out.update(pt_epochs=sum(e for e, _ in pt.values()), pt_sepochs=sum(e * n for e, n in pt.values()),
               pt_models=len(pt), wall=time.perf_counter() - t0)
    return out


def run_search(spec: Any, work: Path, n_train: dict[int, int]) -> dict[str, Any]:
    """One study (a finished one is read back from ``search-<target>.json``; an unfinished one starts over)."""
    import polars as pl
    import ray
    from rich.console import Console

    from tlsearch._io import read_header
    from tlsearch.analysis import build_report
    from tlsearch.search import runner
    from tlsearch.search.experiment import Experiment

    tag = "" if spec.scheduler.type == "asha" else f"-{spec.scheduler.type}"
    saved = work / f"search-{spec.data.target.property}{tag}-t{spec.budget.trials}-s{spec.search_seed}.json"
    if saved.exists():
        print("  search: finished by an earlier invocation", flush=True)
        return json.loads(saved.read_text())
    store, root = work / "cache" / "pretrained", work / "exp"
    shutil.rmtree(store, ignore_errors=True)  # the search's own PT store: what it holds afterwards, it trained
    shutil.rmtree(root / spec.name, ignore_errors=True)
    t0 = time.perf_counter()
    exp = Experiment.create(spec, root, spec.name)
    try:
        with open(work / "study.log", "a") as fh:
            runner.run_study(spec, exp, Console(file=fh, width=120))
    finally:
        ray.shutdown()
    wall = time.perf_counter() - t0
    pts = [read_header(p)[0]["meta"] for p in store.glob("*.pt")]
    rep = build_report(exp)
    trials = pl.read_parquet(rep.trials)
    out: dict[str, Any] = {"wall": wall, "pt_models": len(pts), "pt_epochs": sum(m["epochs"] for m in pts),
                           "pt_sepochs": sum(m["epochs"] * m["n_train"] for m in pts),
                           "report_compute": rep.summary["compute"], "report": str(rep.html)}
    for z in rep.summary["by_ft_size"]:
        t, b = trials.filter(pl.col("ft_size") == z["ft_size"]), z["best"]
        ep = int(t["epochs_run"].fill_null(0).sum())
        out[z["ft_size"]] = {"label": label(b["strategy"], b["freeze"]), "test_mae": b["test_mae"],
                             "test_std": b["test_mae_std"], "val_mae": b["val_mae"], "epochs": ep,
                             "sepochs": ep * n_train[int(z["ft_size"])],
                             "states": dict(t.group_by("state").len().iter_rows())}
    missing = [z for z in spec.search.ft_size if str(z) not in out]
    if missing:
        raise RuntimeError(f"no finished search trial at FT size(s) {missing}; see {work / 'study.log'}")
    saved.write_text(json.dumps(out))
    return out


def summarise(results: dict[str, Any], args: Any, epochs: int, repeats: int, t_start: float) -> None:
    """Per sampler seed: the table (grid best vs search best per target and size, compute) and the verdict;
    then over seeds: mean compute fraction, worst and mean gap."""
    print(f"\nheld-out test MAE, mean +/- std over {repeats} repeats; gap = 100 * (search - grid) / grid; "
          f"compute in trial-epochs (FT)")
    fracs, all_gaps, met = [], [], 0
    for seed in args.search_seeds:
        print(f"\n-- sampler seed {seed}")
        print(f"{'target':8s} {'size':>4s} | {'grid best (by val)':18s} {'test MAE':>17s} | {'search best':18s} "
              f"{'test MAE':>17s} | {'gap %':>6s} | {'grid ep':>7s} {'search ep':>9s} {'ratio':>5s} | search trials")
        gaps, tot = [], {"g": 0, "s": 0, "gs": 0, "ss": 0}
        for prop, (grid, searches) in results.items():
            search = searches[seed]
            for size in args.sizes:
                g, srch = grid[size]["best"], search[str(size)]
                gm = statistics.mean(g["test"])
                gap = 100 * (srch["test_mae"] - gm) / gm
                gaps.append(gap)
                ge = sum(r["epochs"] for r in grid[size]["rows"])
                states = ", ".join(f"{n} {k}" for k, n in sorted(srch["states"].items()))
                print(f"{prop:8s} {size:4d} | {g['label']:18s} {_ms(g['test']):>17s} | {srch['label']:18s} "
                      f"{srch['test_mae']:.4f} +/- {srch['test_std']:.4f} | {gap:+6.1f} | {ge:7d} {srch['epochs']:9d} "
                      f"{srch['epochs'] / ge:5.2f} | {states}")
            ft_g = sum(sum(r["epochs"] for r in grid[z]["rows"]) for z in args.sizes)
            ft_s = sum(search[str(z)]["epochs"] for z in args.sizes)
            g_all, s_all = ft_g + grid["pt_epochs"], ft_s + search["pt_epochs"]
            print(f"{prop:8s} all  | grid {ft_g} FT + {grid['pt_epochs']} PT ({grid['pt_models']} models) = {g_all}; "
                  f"search {ft_s} FT + {search['pt_epochs']} PT ({search['pt_models']} models) = {s_all}; "
                  f"ratio {s_all / g_all:.3f}")
            tot["g"] += g_all
            tot["s"] += s_all
            tot["gs"] += sum(sum(r["sepochs"] for r in grid[z]["rows"]) for z in args.sizes) + grid["pt_sepochs"]
            tot["ss"] += sum(search[str(z)]["sepochs"] for z in args.sizes) + search["pt_sepochs"]
        frac = tot["s"] / tot["g"]
        ok = frac <= 0.20 and max(gaps) <= 5.0
        met += ok
        fracs.append(frac)
        all_gaps += gaps
        print(f"seed {seed}: trial-epochs (PT included) grid {tot['g']}, search {tot['s']}, ratio {frac:.3f}; weighted by "
              f"training structures per epoch: ratio {tot['ss'] / tot['gs']:.3f}; worst gap {max(gaps):+.1f} %, mean "
              f"{statistics.mean(gaps):+.1f} %: target {'met' if ok else 'NOT met'}")
    mfrac = statistics.mean(fracs)
    ok = mfrac <= 0.20 and max(all_gaps) <= 5.0
    grids = {p: {"sizes": args.sizes, **{z: g[z] for z in args.sizes}, "pt_epochs": g["pt_epochs"]}
             for p, (g, _) in results.items()}
    if all(r["curves"][0] for g in grids.values() for z in args.sizes for r in g[z]["rows"]):
        from sh_replay import SETTINGS, family_reversals, replay  # benchmarks/: from the grid's curves, no training

        from tlsearch.search._sh_bracket import rungs

        at = sorted({e for g, eta in SETTINGS for e in rungs(g, eta, epochs)})
        print("\n" + "\n".join(family_reversals(grids, at)))
        print("\n" + "\n".join(replay(grids, epochs, repeats)))
    print(f"\ntarget (best test MAE within 5 % of the grid's in every cell, at <= 20 % of its compute): "
          f"{'met' if ok else 'NOT met'} over {len(fracs)} sampler seeds (met by {met}): compute {100 * mfrac:.1f} % "
          f"(per seed {', '.join(f'{100 * f:.1f}' for f in fracs)}), worst gap {max(all_gaps):+.1f} %, mean gap "
          f"{statistics.mean(all_gaps):+.1f} %; {epochs} FT epochs, {repeats} repeats, {args.trials} trials per "
          f"target; total time {time.perf_counter() - t_start:.0f} s")
    print(f"RATIO search_compute_fraction={mfrac:.4f}")
    print(f"RATIO search_best_gap_pct={max(all_gaps):.2f}")
    print(f"RATIO search_best_gap_pct_mean={statistics.mean(all_gaps):.2f}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--targets", nargs="+", default=list(TARGETS), choices=list(TARGETS))
    ap.add_argument("--sizes", type=int, nargs="+", default=[100, 800])
    ap.add_argument("--scheduler", choices=["sh", "asha"], default="sh",
                    help="sh: successive halving from 1 epoch, eta 3 (default); asha: ASHA from 5 epochs")
    ap.add_argument("--trials", type=int, default=None,
                    help="search trials per target over both sizes (default: 22 with sh, one per grid cell; "
                    "6 with asha)")
    ap.add_argument("--search-seeds", type=int, nargs="+", default=[0, 1, 2],
                    help="one search per seed of its sampler (spec search_seed); the data draws are the grid's")
    ap.add_argument("--epochs", type=int, default=None, help="FT epochs (default 15; 6 with --quick)")
    ap.add_argument("--repeats", type=int, default=None, help="FT draws per configuration (3; 2 with --quick)")
    ap.add_argument("--jobs", type=int, default=2, help="grid runs at a time (worker processes, 1 thread each)")
    ap.add_argument("--quick", action="store_true", help="check run: 6 epochs, 2 repeats")
    ap.add_argument("--data-cache", type=Path, help="copy datasets/sources/graphs (not PT models) from here")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    ap.add_argument("--workdir", type=Path, help="work here instead of a temporary directory (kept); a rerun "
                    "with the same settings reuses its finished grid runs and studies")
    args = ap.parse_args()
    args.trials = args.trials or (22 if args.scheduler == "sh" else 6)
    epochs = args.epochs or (6 if args.quick else 15)
    repeats = args.repeats or (2 if args.quick else 3)
    t_start = time.perf_counter()

    tmp = args.workdir.resolve() if args.workdir else Path(tempfile.mkdtemp(prefix="tlsse-"))
    cache, home, log = tmp / "cache", tmp / "home", tmp / "study.log"
    settings = json.dumps({"sizes": args.sizes, "epochs": epochs, "repeats": repeats})  # the grid's
    old = json.loads((tmp / "settings.json").read_text()) if (tmp / "settings.json").exists() else None
    if old is not None and {k: v for k, v in old.items() if k != "trials"} != json.loads(settings):
        sys.exit(f"{tmp} holds a run with other settings ({(tmp / 'settings.json').read_text()}); use another --workdir")
    home.mkdir(parents=True, exist_ok=True)
    (tmp / "settings.json").write_text(settings)
    if args.data_cache and not cache.exists():
        for sub in ("datasets", "sources", "graphs"):
            if (args.data_cache / sub).is_dir():
                shutil.copytree(args.data_cache / sub, cache / sub, ignore=shutil.ignore_patterns("*.lock"))
    os.environ.update(HOME=str(home), TLSEARCH_CACHE=str(cache), WANDB_MODE="disabled", WANDB_SILENT="true",
                      PYTHONWARNINGS="ignore", RAY_TMPDIR=str(tmp), RAY_AUTH_MODE="disabled")
    for var in ("RAY_AUTH_TOKEN_PATH", "RAY_ADDRESS", "WANDB_API_KEY"):
        os.environ.pop(var, None)
    print(f"temporary directory: {tmp} (study output in {log}); load average {os.getloadavg()[0]:.2f}", flush=True)
    results: dict[str, Any] = {}
    try:
        for prop in args.targets:
            spec = make_spec(prop, args.sizes, args.trials, epochs, repeats, scheduler=args.scheduler)
            grid_n = len(cells(spec)) * len(args.sizes)
            print(f"\n== {spec.data.target.label}: grid {grid_n} configurations x {repeats} repeats x {epochs} epochs; "
                  f"search {args.trials} trials ({spec.scheduler.type} grace {spec.scheduler.grace_period}, reduction "
                  f"{spec.scheduler.reduction_factor:g}) per sampler seed {args.search_seeds}; MPT set: "
                  f"{', '.join(p.property for p in spec.mpt_candidates)}", flush=True)
            t = time.perf_counter()
            warm_up(spec, cache)
            print(f"  warm-up (datasets, graphs): {time.perf_counter() - t:.0f} s", flush=True)
            grid = run_grid(spec, tmp, args.jobs)
            searches = {}
            for seed in args.search_seeds:
                print(f"  search (sampler seed {seed}): run_study ({args.trials} trials) ...", flush=True)
                sspec = make_spec(prop, args.sizes, args.trials, epochs, repeats, search_seed=seed,
                                  scheduler=args.scheduler)
                search = searches[seed] = run_search(sspec, tmp, {z: grid[z]["best"]["n_train"] for z in args.sizes})
                rc = search["report_compute"]
                print(f"  search wall {search['wall']:.0f} s (incl. Ray start-up); PT: {search['pt_models']} "
                      f"model(s), {search['pt_epochs']} epochs from its store (the report counts {rc['pt_models']} / "
                      f"{rc['pt_epochs']}); report {search['report']}", flush=True)
            results[prop] = (grid, searches)
            print(f"  grid wall {grid['wall']:.0f} s", flush=True)
        summarise(results, args, epochs, repeats, t_start)
    finally:
        if args.keep or args.workdir:
            print(f"kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
