"""The cost objective under load: wall seconds (what `cost` counted before) vs compute seconds (what it counts
now: the trial process's CPU seconds on a CPU), for the same training on an idle and on a loaded machine.

One FT training (``train_trial``, scratch, real data: ``matminer2018:dielectric_constant`` property ``n``,
``--size`` structures, tlsearch's default small ALIGNN, one torch thread, fixed seed) runs in a subprocess,
alternately with the machine idle and with ``--busy`` pure-Python busy loops beside it (as many as the CPUs, so
the trial shares its core with one, like a trial next to another trial or someone's job on a shared node);
``--repeats`` pairs. For each run: the FT wall seconds (sum of the epochs' ``seconds``), the FT compute seconds
(``compute_seconds``) and the validation MAE (identical seeds: the accuracy is the same, or the comparison
would be of different work).

Ratios (loaded / idle, medians over the repeats): ``cost_wall_loaded_over_idle`` (the baseline: wall seconds)
and ``cost_compute_loaded_over_idle``; 1 means load does not move a trial's cost. ``val_mae_same`` = 1 when every
run's validation MAE is the same to 1e-6.

Usage: python benchmarks/cost_noise.py [--size 200] [--epochs 5] [--repeats 2]
Last lines: RATIO <name>=<value>.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

JOB = """
import json, sys, torch
torch.set_num_threads(1)
from tlsearch.training import config_from_dict, train_trial
r = train_trial(config_from_dict(json.loads(sys.argv[1])))
print("RESULT " + json.dumps({"wall": sum(h.seconds for h in r.history),
                              "compute": sum(h.compute_seconds for h in r.history), "val_mae": r.val["mae"]}))
"""


def run(cfg: dict) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", JOB, json.dumps(cfg)], capture_output=True, text=True, env=env,
                          timeout=3600)
    line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
    if line is None:
        raise SystemExit(f"training failed: {proc.stderr[-3000:]}")
    return json.loads(line.removeprefix("RESULT "))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=200)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--busy", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args()
    cfg = {"mode": "scratch", "target": {"dataset": "matminer2018:dielectric_constant", "property": "n"},
           "train": {"sample_size": args.size, "optim": {"epochs": args.epochs, "batch_size": 32}}, "seed": 0}
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs")
    print(f"training: scratch, dielectric n, {args.size} FT structures, {args.epochs} epochs, small ALIGNN, 1 thread")
    print(f"load: {args.busy} busy loop(s) beside the loaded runs")
    run(cfg)  # warm: datasets and graphs into the cache, so every timed run does the same work
    rows: list[tuple[str, dict]] = []
    for i in range(args.repeats):
        for loaded in (False, True):
            busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.busy)] \
                if loaded else []
            try:
                time.sleep(0.5 if busy else 0)
                r = run(cfg)
            finally:
                for b in busy:
                    b.kill()
                    b.wait()
            name = "loaded" if loaded else "idle"
            rows.append((name, r))
            print(f"repeat {i + 1} {name:6s}: FT wall {r['wall']:7.2f} s  FT compute {r['compute']:7.2f} s  "
                  f"val MAE {r['val_mae']:.6f}", flush=True)
    med = {(name, k): statistics.median(r[k] for n, r in rows if n == name)
           for name in ("idle", "loaded") for k in ("wall", "compute")}
    maes = [r["val_mae"] for _, r in rows]
    print(f"median idle: wall {med['idle', 'wall']:.2f} s, compute {med['idle', 'compute']:.2f} s; "
          f"median loaded: wall {med['loaded', 'wall']:.2f} s, compute {med['loaded', 'compute']:.2f} s")
    print(f"val MAE over all runs: {min(maes):.6f} .. {max(maes):.6f}")
    print(f"RATIO cost_wall_loaded_over_idle={med['loaded', 'wall'] / med['idle', 'wall']:.3f}")
    print(f"RATIO cost_compute_loaded_over_idle={med['loaded', 'compute'] / med['idle', 'compute']:.3f}")
    print(f"RATIO val_mae_same={int(max(maes) - min(maes) <= 1e-6)}")


if __name__ == "__main__":
    main()
