"""`tlsearch predict` throughput vs a training epoch, and vs the old `predict`, side by side (issue 26.1).

Issue 26.1: `tlsearch predict` on 3,000 structures with a 3-repeat 2+2/64 model took 11 min 11 s wall (10 min 48 s
user, 2 min 24 s system) on a machine that trains an epoch of 720 such structures in seconds. This script measures,
in one run, on the same structures and the same thread count:

- data: ``--n`` structures of the ``matminer2018:flla_2015`` pool (real DFT crystals, 1-25 atoms; evenly spread over
  the pool), written as a folder of POSCARs + ``id_prop.csv`` (ids are file names: the issue's ``folder:`` target).
  Graphs: tlsearch's defaults (8 A, 12 neighbours, every bond pair a triplet).
- training (in this process): ``train_trial`` from scratch on that folder (its 90 % pool: 81 % train, 9 %
  validation), ALIGNN 2+2 layers, hidden 64, embedding 64 (the quickstart's model), batch 16, ``--epochs`` epochs on
  ``--threads`` torch threads (default: what `tlsearch predict` picks at the start). Training throughput = training
  structures / seconds of the epoch's training pass (``Trainer.run(train=True)``, timed by wrapping it), the median
  over the epochs after the first. The model file is then copied to ``--repeats`` repeats (an ensemble like the
  issue's 3 repeats; copies predict the same numbers, and time is what is measured).
- each predict side is a fresh process on the whole folder, timed like the issue (wall, user and system seconds of
  the child), interleaved over ``--rounds`` rounds, graphs cached (training built them), medians:
  new      - the command itself: ``tlsearch predict MODEL folder:... --out p.csv --threads T`` (batch 64, inference
             mode, each batch assembled once for every repeat, freed memory kept for reuse); its "inference:" line
             gives the inference stage's own rate. Once more first with an empty cache (``cold``: the folder
             parsed, every graph built).
  no-tweak - the same library call without ``keep_freed_memory`` (glibc then unmaps every freed activation).
  old      - ``predict_from`` with the inference loop before the fix, copied from it (tlsearch 32929b5): one
             ``Stepper`` per repeat at the model's training batch size (16), grad disabled (no inference mode), each
             repeat assembling its own batches, on torch's own thread count (the old `predict` set none).

A loaded machine (the issue's: trials running beside `predict`) is what makes thread counts matter; ``--busy N`` runs
N pure-Python busy loops beside every measurement. The load average is printed with each number.

Usage: python benchmarks/predict.py [--n 3000] [--repeats 3] [--epochs 2] [--threads T] [--rounds 2] [--busy 0]
                                    [--workdir DIR]
Last lines: RATIO <name>=<value>.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

DATASET, PROP = "matminer2018:flla_2015", "formation_energy_per_atom"
MODEL = {"alignn_layers": 2, "gcn_layers": 2, "hidden_features": 64, "embedding_features": 64}
TRAIN_BATCH = 16
CHILD_TAG = "PREDICT_BENCH_CHILD "


def load() -> str:
    return f"load {os.getloadavg()[0]:.1f}"


@contextmanager
def busy_loops(n: int) -> Iterator[None]:
    """``n`` pure-Python busy loops beside the block (a loaded machine)."""
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]
    try:
        if procs:
            time.sleep(1.0)
        yield
    finally:
        for p in procs:
            p.kill()
            p.wait()


def write_folder(folder: Path, n: int, cache: Path) -> tuple[int, int]:
    """``n`` records spread evenly over the dataset's pool as ``<id>.vasp`` + ``id_prop.csv``; (structures, max
    atoms)."""
    import numpy as np

    from tlsearch.prepared import load_split

    ds, split = load_split(DATASET, PROP, cache=cache)
    pick = split.pool[np.linspace(0, len(split.pool) - 1, min(n, len(split.pool))).astype(int)]
    folder.mkdir(parents=True)
    rows, atoms = ["file,formation_energy_per_atom"], []
    for i in pick:
        r = ds.records[i]
        r.atoms.write_poscar(str(folder / f"{r.id}.vasp"))
        rows.append(f"{r.id}.vasp,{r.targets[PROP]}")
        atoms.append(r.atoms.num_atoms)
    (folder / "id_prop.csv").write_text("\n".join(rows) + "\n")
    return len(pick), max(atoms)


def train(folder: Path, out: Path, cache: Path, threads: int, epochs: int) -> tuple[float, list[float], int]:
    """Train the model; (training structures/s: median over the epochs after the first, every epoch's training-pass
    seconds, training structures)."""
    from tlsearch.training import config_from_dict, train_trial
    from tlsearch.training.engine import Trainer

    passes: list[tuple[int, float]] = []
    run = Trainer.run

    def timed(self: Any, idx: Any, train: bool) -> Any:
        t = time.perf_counter()
        result = run(self, idx, train)
        if train:
            passes.append((len(idx), time.perf_counter() - t))
        return result

    cfg = config_from_dict({"mode": "scratch", "target": {"dataset": f"folder:{folder}", "property": PROP},
                            "model": MODEL, "threads": threads, "cache_dir": str(cache), "output_dir": str(out),
                            "train": {"sample_size": "all", "optim": {"epochs": epochs, "batch_size": TRAIN_BATCH}}})
    Trainer.run = timed  # type: ignore[method-assign]
    try:
        train_trial(cfg)
    finally:
        Trainer.run = run  # type: ignore[method-assign]
    later = passes[1:] or passes
    return statistics.median(n / s for n, s in later), [s for _, s in passes], passes[0][0]


# ---- the predict sides, each in a child process ----------------------------------------------------------------
def _old_predict(self: Any, atoms: Any, ids: Any = None, *, cache: Any = None, device: str = "auto",
                 progress: Any = None, **_: Any) -> Any:
    """``Ensemble.predict`` before issue 26 (tlsearch 32929b5), verbatim but for the timing of its inference loop."""
    import numpy as np

    from tlsearch.data import Skipped
    from tlsearch.graphs import GraphCache
    from tlsearch.training.engine import Stepper, pick_device
    from tlsearch.training.predict import Prediction
    from tlsearch.training.tasks import Task

    ids = [str(i) for i in (ids if ids is not None else range(len(atoms)))]
    r = len(self.members)
    cfg = self.config
    gs = GraphCache(cfg.graph.params(), root=cache).get(list(atoms))
    ok = np.flatnonzero(gs.row >= 0)
    skipped = [Skipped(ids[i], reason, detail) for i, (reason, detail) in sorted(gs.failures.items())]
    task = Task(gs.pack, gs.row[ok], np.full((len(ok), 1), np.nan), [ids[i] for i in ok], (self.property,),
                cfg.graph.atom_features)
    dev = pick_device(device if device != "auto" else cfg.device)
    per = np.zeros((len(ok), r))
    t = time.perf_counter()
    for j, m in enumerate(self.members):
        o = m.config.train.optim
        per[:, j] = Stepper(m.model, task, m.scaler, o.loss, o.batch_size, dev, m.config.amp).predict(
            np.arange(len(ok)))[:, 0]
    _old_predict.inference_s = time.perf_counter() - t  # type: ignore[attr-defined]
    std = per.std(axis=1, ddof=1) if r > 1 else np.zeros(len(ok))
    return Prediction(self.property, task.ids, per.mean(axis=1), std, per, skipped)


def child(side: str, model_dir: str, target: str, threads: int) -> None:
    """One predict side in this (fresh) process; prints its numbers after ``CHILD_TAG``."""
    import torch

    from tlsearch.training.predict import Ensemble, load_model

    ens = load_model(model_dir)
    stage: dict[str, float] = {}
    if side == "old":
        Ensemble.predict = _old_predict  # type: ignore[method-assign]
        kw: dict[str, Any] = {}
    else:  # "no-tweak": today's library call, without keep_freed_memory
        def progress(name: str, done: int, total: int) -> None:
            if name == "predict":
                stage.setdefault("t0", time.perf_counter())
                stage["t1"] = time.perf_counter()
        kw = {"threads": threads, "progress": progress}
    t = time.perf_counter()
    pred = ens.predict_from(target, **kw)
    wall = time.perf_counter() - t
    infer = getattr(_old_predict, "inference_s", None) if side == "old" else stage["t1"] - stage["t0"]
    print(CHILD_TAG + json.dumps({"n": len(pred.ids), "call_s": wall, "inference_s": infer,
                                  "torch_threads": torch.get_num_threads() if side == "old" else threads,
                                  "mean": float(pred.mean.mean())}))


def run_side(side: str, model_dir: Path, target: str, threads: int, cache: Path, out: Path) -> dict[str, Any]:
    """Run a side in a child process: its wall, user and system seconds, and what it reported."""
    env = {**os.environ, "TLSEARCH_CACHE": str(cache)}
    if side in ("new", "cold"):
        cmd = [sys.executable, "-m", "tlsearch.cli.main", "predict", str(model_dir), target, "--out", str(out),
               "--threads", str(threads)]
    else:
        cmd = [sys.executable, __file__, "--child", side, "--model", str(model_dir), "--target", target,
               "--threads", str(threads)]
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=7200)
    wall = time.perf_counter() - t
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"{side} failed ({proc.returncode}): {proc.stderr[-3000:]}")
    got: dict[str, Any] = {"wall": wall, "user": r1.ru_utime - r0.ru_utime, "sys": r1.ru_stime - r0.ru_stime}
    line = next((x for x in proc.stdout.splitlines() if x.startswith(CHILD_TAG)), None)
    if line is not None:
        got.update(json.loads(line.removeprefix(CHILD_TAG)))
    else:  # the CLI: its summary line
        m = re.search(r"inference: (\d+) structure\(s\) x \d+ repeat\(s\) in ([\d.]+) s", proc.stderr)
        if m is None:
            raise SystemExit(f"{side}: no inference line in\n{proc.stderr[-3000:]}")
        import polars as pl

        got.update(n=int(m.group(1)), inference_s=float(m.group(2)), mean=float(pl.read_csv(out)["y_pred"].mean()))
    return got


def show(side: str, got: dict[str, Any], repeats: int) -> str:
    n, inf = got["n"], got["inference_s"]
    return (f"{side:8s}: {n} structures x {repeats} repeats: {got['wall']:.1f} s wall ({n / got['wall']:.1f} "
            f"structures/s), {got['user']:.1f} s user, {got['sys']:.1f} s system; inference {inf:.1f} s "
            f"({n / inf:.1f} structures/s)" + (f", {got['torch_threads']} torch threads" if "torch_threads" in got
                                               else "") + f"; {load()}")


def main() -> None:
    import torch

    from tlsearch.training.predict import default_threads

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=3000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--threads", type=int, default=None, help="default: what `tlsearch predict` picks now")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--busy", type=int, default=0, help="busy loops beside every measurement")
    ap.add_argument("--workdir", type=Path, default=None, help="keep the folder, model and caches here")
    ap.add_argument("--child", choices=("old", "no-tweak"), help=argparse.SUPPRESS)
    ap.add_argument("--model", help=argparse.SUPPRESS)
    ap.add_argument("--target", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args.child, args.model, args.target, args.threads)

    threads = args.threads or default_threads()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="tls-predict-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    cache, folder, model_dir = work / "cache", work / "folder", work / "model"
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs (affinity "
          f"{len(os.sched_getaffinity(0))}), torch {torch.__version__}, python {platform.python_version()}; {load()}")
    print(f"threads: {threads} for training and the new predict (default_threads() now: {default_threads()}); "
          f"torch's own default, the old predict's: {torch.get_num_threads()}; busy loops beside: {args.busy}")
    print(f"work directory: {work}", flush=True)
    if not folder.exists():
        n, max_atoms = write_folder(folder, args.n, cache)
        print(f"data: {n} structures of {DATASET} ({PROP}), up to {max_atoms} atoms, as {folder}", flush=True)
    target = f"folder:{folder}"
    with busy_loops(args.busy):
        t0 = time.perf_counter()
        train_rate, pass_s, n_train = train(folder, model_dir, cache, threads, args.epochs)
        print(f"training: {args.epochs} epochs in {time.perf_counter() - t0:.1f} s (with graphs); training pass "
              f"{', '.join(f'{s:.1f}' for s in pass_s)} s for {n_train} structures at batch {TRAIN_BATCH}: "
              f"{train_rate:.1f} structures/s on {threads} thread(s); {load()}", flush=True)
    for r in range(1, args.repeats):
        shutil.copy(model_dir / "model.pt", model_dir / f"model_repeat{r}.pt")

    runs: dict[str, list[dict[str, Any]]] = {"new": [], "no-tweak": [], "old": []}
    with busy_loops(args.busy):
        fresh = work / f"cold-cache-{time.time_ns()}"
        cold = run_side("cold", model_dir, target, threads, fresh, work / "p.csv")
        shutil.rmtree(fresh, ignore_errors=True)
        print(show("cold", cold, args.repeats), flush=True)
        for rnd in range(args.rounds):
            for side in runs:
                runs[side].append(run_side(side, model_dir, target, threads, cache, work / "p.csv"))
                print(f"round {rnd + 1} " + show(side, runs[side][-1], args.repeats), flush=True)
    med = {side: {k: statistics.median(g[k] for g in got) for k in ("wall", "user", "sys", "inference_s")}
           for side, got in runs.items()}
    n = runs["new"][0]["n"]
    means = {round(g["mean"], 6) for got in [*runs.values(), [cold]] for g in got}
    print(f"mean prediction of every child run (eV/atom): {sorted(means)}")
    print("medians: " + "; ".join(f"{s} {m['wall']:.1f} s wall, {m['user']:.1f} user, {m['sys']:.1f} system, "
                                  f"inference {n / m['inference_s']:.1f} structures/s" for s, m in med.items()))
    new, old = med["new"], med["old"]
    print(f"RATIO predict_structures_per_s_vs_train={n / new['wall'] / train_rate:.2f}")
    print(f"RATIO predict_inference_structures_per_s_vs_train={n / new['inference_s'] / train_rate:.2f}")
    print(f"RATIO predict_model_passes_per_s_vs_train={args.repeats * n / new['inference_s'] / train_rate:.2f}")
    print(f"RATIO predict_cold_structures_per_s_vs_train={n / cold['wall'] / train_rate:.2f}")
    print(f"RATIO predict_speedup_vs_old={old['wall'] / new['wall']:.2f}")
    print(f"RATIO predict_inference_speedup_vs_old={old['inference_s'] / new['inference_s']:.2f}")
    print(f"RATIO predict_malloc_tweak_speedup={med['no-tweak']['wall'] / new['wall']:.2f}")


if __name__ == "__main__":
    main()
