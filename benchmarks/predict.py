"""`tlsearch predict` throughput vs a training epoch, and vs the old predict loop, side by side (issue 26.1).

Issue 26.1: `tlsearch predict` on 3,000 structures with a 3-repeat 2+2/64 model took 11 min 11 s wall (10 min 48 s
user, 2 min 24 s system) on a machine that trains an epoch of 720 such structures in seconds. This script measures,
in one process, on the same structures and the same thread count:

- data: ``--n`` structures of the ``matminer2018:flla_2015`` pool (real DFT crystals, 1-25 atoms; every k-th of the
  pool, so the sizes are the pool's), written as a folder of POSCARs + ``id_prop.csv`` (ids are file names: the issue's
  ``folder:`` target). Graphs: tlsearch's defaults (8 A, 12 neighbours, every bond pair a triplet).
- training: ``train_trial`` from scratch on that folder (its 90 % pool: 81 % train, 9 % validation), ALIGNN 2+2
  layers, hidden 64, embedding 64 (the quickstart's model), batch 16, ``--epochs`` epochs on ``--threads`` torch
  threads. Training throughput = training structures / seconds of the epoch's training pass (``Trainer.run(train=
  True)``, timed by wrapping it), the median over the epochs after the first.
- the model file is copied to ``--repeats`` repeats (an ensemble like the issue's 3 repeats; copies predict the same
  numbers, and the time is what is measured here).
- predict (new): ``load_model(dir).predict_from("folder:...", threads=T, batch_size=B)``, the whole call (reading the
  dataset, graphs, inference of every repeat, the leakage check), structures per second of the ensemble. ``cold``: a
  fresh cache (the folder parsed, every graph built); ``warm``: the graphs cached (training built them: the same
  structures); the RATIO uses warm, as a training epoch uses cached graphs too.
- predict (old): the inference loop before the fix, copied from it: one ``Stepper`` per repeat at the model's training
  batch size (16), grad disabled (no inference mode), each repeat assembling its own batches, on torch's own thread
  count (the old `predict` set none); and the same old loop at the new thread count, to separate the causes. Both
  against the new inference (``Ensemble.predict`` on the same pre-read structures, warm graphs) on every ``--stride``-th
  structure (the old loop is slow on a loaded machine), interleaved over ``--rounds`` rounds, medians.

A loaded machine (the issue's: trials running beside `predict`) is what makes thread counts matter; ``--busy N`` runs N
pure-Python busy loops beside every measurement. The load average is printed with each number.

Usage: python benchmarks/predict.py [--n 3000] [--repeats 3] [--epochs 2] [--threads T] [--batch-size 64]
                                    [--stride 10] [--rounds 2] [--busy 0] [--workdir DIR]
Last lines: RATIO <name>=<value>.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402

TORCH_DEFAULT_THREADS = torch.get_num_threads()  # what the old `predict` ran on: it set no thread count
DATASET, PROP = "matminer2018:flla_2015", "formation_energy_per_atom"
MODEL = {"alignn_layers": 2, "gcn_layers": 2, "hidden_features": 64, "embedding_features": 64}
TRAIN_BATCH = 16


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
    """Every k-th record of the dataset's pool as ``<id>.vasp`` + ``id_prop.csv``; (structures, max atoms)."""
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

    def timed(self: Any, idx: np.ndarray, train: bool) -> Any:
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


def old_infer(ens: Any, task: Any, threads: int) -> np.ndarray:
    """The inference loop of `predict` before issue 26 (tlsearch.training.predict at 32929b5), on ``threads``."""
    from tlsearch.training.engine import Stepper, pick_device

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        dev = pick_device("cpu")
        per = np.zeros((len(task), len(ens.members)))
        for j, m in enumerate(ens.members):
            o = m.config.train.optim
            per[:, j] = Stepper(m.model, task, m.scaler, o.loss, o.batch_size, dev, m.config.amp).predict(
                np.arange(len(task)))[:, 0]
        return per
    finally:
        torch.set_num_threads(before)


def timed(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    """(wall s, CPU s of this process, result)."""
    t, c = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - t, time.process_time() - c, out


def main() -> None:
    from tlsearch.training.predict import DEFAULT_BATCH, default_threads

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=3000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--threads", type=int, default=None, help="default: what `tlsearch predict` picks now")
    ap.add_argument("--batch-size", type=int, default=DEFAULT_BATCH)
    ap.add_argument("--stride", type=int, default=10, help="old vs new on every k-th structure")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--busy", type=int, default=0, help="busy loops beside every measurement")
    ap.add_argument("--workdir", type=Path, default=None, help="keep the folder, model and caches here")
    args = ap.parse_args()
    threads = args.threads or default_threads()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="tls-predict-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    cache, folder, model_dir = work / "cache", work / "folder", work / "model"
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs (affinity "
          f"{len(os.sched_getaffinity(0))}), torch {torch.__version__}, python {platform.python_version()}; {load()}")
    print(f"threads: {threads} for training and the new predict (default_threads() now: {default_threads()}); "
          f"torch's own default (the old predict): {TORCH_DEFAULT_THREADS}; busy loops beside: {args.busy}")
    print(f"work directory: {work}", flush=True)

    if not folder.exists():
        n, max_atoms = write_folder(folder, args.n, cache)
        print(f"data: {n} structures of {DATASET} ({PROP}), up to {max_atoms} atoms, as {folder}", flush=True)
    target = f"folder:{folder}"
    with busy_loops(args.busy):
        t0 = time.perf_counter()
        train_rate, pass_s, n_train = train(folder, model_dir, cache, threads, args.epochs)
        print(f"training: {args.epochs} epochs in {time.perf_counter() - t0:.1f} s (incl. graphs); training pass "
              f"{', '.join(f'{s:.1f}' for s in pass_s)} s for {n_train} structures at batch {TRAIN_BATCH}: "
              f"{train_rate:.1f} structures/s; {load()}", flush=True)
    for r in range(1, args.repeats):
        shutil.copy(model_dir / "model.pt", model_dir / f"model_repeat{r}.pt")

    from tlsearch.data.inputs import read_structures
    from tlsearch.graphs import GraphCache
    from tlsearch.training import load_model
    from tlsearch.training.tasks import Task

    ens = load_model(model_dir)
    R = len(ens.members)
    rates: dict[str, float] = {}
    with busy_loops(args.busy):
        fresh = work / f"cold-cache-{time.time_ns()}"
        for name, kw in (("cold", {"cache": fresh}), ("warm", {"cache": cache}), ("warm", {"cache": cache})):
            wall, cpu, pred = timed(lambda: ens.predict_from(target, threads=threads, batch_size=args.batch_size,
                                                             **kw))
            n = len(pred.ids)
            rates[name] = n / wall
            print(f"predict {name}: {n} structures x {R} repeats in {wall:.1f} s wall, {cpu:.1f} s CPU: "
                  f"{n / wall:.1f} structures/s ({threads} threads, batch {args.batch_size}); {load()}", flush=True)
        shutil.rmtree(fresh, ignore_errors=True)

        found = read_structures(target, PROP, cache)
        sub = list(range(0, len(found.atoms), args.stride))
        gs = GraphCache(ens.config.graph.params(), root=cache).get([found.atoms[i] for i in sub])
        task = Task(gs.pack, gs.row, np.full((len(sub), 1), np.nan), [found.ids[i] for i in sub], (PROP,), "cgcnn")
        sides: dict[str, Callable[[], np.ndarray]] = {
            f"old loop, torch's {TORCH_DEFAULT_THREADS} threads, batch {TRAIN_BATCH}":
                lambda: old_infer(ens, task, TORCH_DEFAULT_THREADS),
            f"old loop, {threads} threads, batch {TRAIN_BATCH}": lambda: old_infer(ens, task, threads),
            f"new, {threads} threads, batch {args.batch_size}":
                lambda: ens.predict([found.atoms[i] for i in sub], [found.ids[i] for i in sub], cache=cache,
                                    threads=threads, batch_size=args.batch_size).per_repeat,
        }
        walls: dict[str, list[float]] = {k: [] for k in sides}
        outs: dict[str, np.ndarray] = {}
        print(f"old vs new inference on every {args.stride}th structure ({len(sub)}), {R} repeats, graphs cached:")
        for rnd in range(args.rounds):
            for name, fn in sides.items():
                wall, cpu, outs[name] = timed(fn)
                walls[name].append(wall)
                print(f"  round {rnd + 1} {name}: {wall:.2f} s wall, {cpu:.2f} s CPU, {len(sub) / wall:.1f} "
                      f"structures/s; {load()}", flush=True)
    first, *rest = outs.values()
    diff = max(float(np.abs(o - first).max()) for o in rest)
    med = {k: statistics.median(v) for k, v in walls.items()}
    old, old_same, new = med.values()
    print(f"largest difference between the sides' predictions: {diff:.3g} (eV/atom)")
    print(f"medians: {', '.join(f'{k}: {len(sub) / v:.1f} structures/s' for k, v in med.items())}")
    print(f"RATIO predict_structures_per_s_vs_train={rates['warm'] / train_rate:.2f}")
    print(f"RATIO predict_cold_structures_per_s_vs_train={rates['cold'] / train_rate:.2f}")
    print(f"RATIO predict_model_passes_per_s_vs_train={R * rates['warm'] / train_rate:.2f}")
    print(f"RATIO predict_speedup_vs_old={old / new:.2f}")
    print(f"RATIO predict_speedup_vs_old_loop_same_threads={old_same / new:.2f}")


if __name__ == "__main__":
    main()
