"""Per-trial overhead of Ray Tune + W&B: the same trials through ``run_study`` vs in-process, side by side.

What runs (identical on both sides):

- the study: the smoke spec (``search_spaces/smoke.yaml``) with strategy ``[scratch]`` only, a fixed
  configuration (every dimension a scalar or a one-element list, ``ft_lr`` 1e-3), architecture 2 ALIGNN +
  2 GCN layers, hidden 64, embedding 32, target ``emt:alloys?n=<--n>&seed=0`` / bulk_modulus with
  ``ft_size: all`` (the whole non-test pool: 324 train + 36 validation structures at ``--n 400``),
  ``budget.trials = --trials``, one repeat, scheduler ``none`` (FIFO, every trial runs all its epochs),
  ``max_concurrent: 1`` and ``cpus_per_trial: 2`` (one trial at a time, 2 torch threads), W&B ``offline``.
- trial length: one in-process trial is measured first (after a warm-up that also generates the EMT data
  and builds the graph cache, so neither side pays for that) and ``max_epochs`` is chosen so that one trial
  takes about ``--trial-seconds`` (``--epochs`` overrides the calibration).

Sides:

- baseline: the N ``TrainConfig`` s the Ray trials train (``train_config(spec, params, 0)`` with the
  parameters the searcher hands every trial; with nothing searched that is ``{}``; this is checked against
  the configs Ray actually ran), with the threads the trainable sets (``cpus_per_trial``), run one after
  the other in this process by ``train_trial`` with ``torch.set_num_threads(2)`` and a per-epoch callback
  that does nothing. Wall time: sum of the N ``train_trial`` calls.
- Ray: ``run_study(spec, exp, console)`` in this process (local Ray with the dashboard, ``Tuner`` +
  ``OptunaSearch`` + FIFO + ``WandbLoggerCallback`` offline + the live view; inside each trial
  ``tune.report`` + a checkpoint every epoch and the ``ray.util.metrics`` updates). Wall time: from just
  before ``ray.init`` (``runner.start_ray`` is wrapped to time it) to after ``run_study`` returns.
  Ray start-up = the ``start_ray`` call.

Reported: per-trial seconds of both sides (Ray: ``train_trial`` time inside the worker, Tune's
``time_total_s``, and the sum of epoch seconds, so a slower training loop and fixed per-trial costs can be
told apart), Ray start-up, per-trial overhead = (ray_wall - startup - baseline_wall) / N, and the overhead
as a share of the baseline wall time, with and without start-up:

    ray_wandb_overhead_pct               = 100 * (ray_wall - baseline_wall) / baseline_wall
    ray_wandb_overhead_pct_excl_startup  = 100 * (ray_wall - startup - baseline_wall) / baseline_wall

Target (the issue): <= 10 % for trials of >= 30 s. With ``--repeats R`` the sides alternate
(B R, R B, B R, ...) and the median over repeats of each number is reported.

Environment: everything goes to a temporary directory (experiment, ``TLSEARCH_CACHE``, ``HOME``, so Ray
generates its auth token there, ``--auth-disabled`` sets ``RAY_AUTH_MODE=disabled`` instead; and
``RAY_TMPDIR``, so ``ray.init()`` starts a fresh local instance instead of joining one that someone else
started with ``ray start``); the dashboard gets a free port; ``WANDB_API_KEY`` is dropped. Other load on
the machine skews both sides, and badly: two torch threads on two oversubscribed cores can run an epoch
10-50x slower. Before anything is measured the script waits (polling every 30 s, at most ``--load-wait``
s) until the 1-minute load average is <= ``--max-load`` (0 disables the wait), and prints the load
averages (they include this benchmark's own processes: about 2 while a trial trains). A ``ray stop
--force`` run by someone else on the machine kills the Ray side (and this process with it).

Usage: python benchmarks/overhead.py [--trials 4] [--trial-seconds 30] [--epochs E] [--n 400] [--repeats 1] [--cpus 2]
Last lines: RATIO <name>=<value>.
"""

from __future__ import annotations

import argparse
import math
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

SMOKE = REPO / "search_spaces" / "smoke.yaml"
ARCH = {"alignn_layers": 2, "gcn_layers": 2, "hidden_features": 64, "embedding_features": 32}
FT_LR = 1e-3
CPUS = 2


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def wait_for_load(max_load: float, max_wait: float, poll: float = 30.0) -> None:
    print(f"load average (1/5/15 min) at start: {_load()}", flush=True)
    if max_load <= 0:
        return
    t0 = time.monotonic()
    while os.getloadavg()[0] > max_load:
        waited = time.monotonic() - t0
        if waited >= max_wait:
            print(f"load average still {_load()} after {waited:.0f} s; going on anyway (numbers may be skewed)",
                  flush=True)
            return
        print(f"load average {_load()} > {max_load}; waiting {poll:.0f} s ({waited:.0f} s waited so far)",
              flush=True)
        time.sleep(poll)
    print(f"load average {_load()} <= {max_load} after {time.monotonic() - t0:.0f} s of waiting", flush=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_spec(n: int, trials: int, epochs: int, dashboard_port: int) -> Any:
    import yaml

    from tlsearch.search.spec import spec_from_dict

    data = yaml.safe_load(SMOKE.read_text())
    data["name"] = "overhead"
    data["data"] = {"target": {"dataset": f"emt:alloys?n={n}&seed=0", "property": "bulk_modulus"}}
    data["search"] = {"strategy": ["scratch"], "ft_size": ["all"], "ft_lr": FT_LR,
                      "batch_size": data["search"]["batch_size"], "architecture": dict(ARCH)}
    data["budget"] = {"trials": trials, "max_epochs": epochs, "pt_epochs": 1, "repeats": 1}
    data["scheduler"] = {"type": "none"}
    data["resources"] = {"cpus_per_trial": CPUS, "gpus_per_trial": 0, "max_concurrent": 1}
    data["tracking"] = {"project": "tlsearch-overhead", "mode": "offline"}
    data["cluster"] = {"dashboard_host": "127.0.0.1", "dashboard_port": dashboard_port}
    return spec_from_dict(data, where="benchmarks/overhead.py spec")


# The parameters the searcher hands every trial: the space suggests nothing (all dimensions fixed).
PARAMS: dict[str, Any] = {}


def trial_configs(spec: Any, cache: Path) -> list[Any]:
    from tlsearch.search.space import train_config

    return [train_config(spec, PARAMS, 0, cache_dir=cache).model_copy(update={"threads": CPUS})
            for _ in range(spec.budget.trials)]


def _with_epochs(cfg: Any, epochs: int) -> Any:
    tr = cfg.train
    return cfg.model_copy(update={"train": tr.model_copy(update={"optim": tr.optim.model_copy(
        update={"epochs": epochs})})})


def calibrate(spec: Any, cache: Path, target_s: float) -> int:
    """Warm up (generates the EMT data and the graph cache), time a 3-epoch trial, return the epochs that
    make one trial last about ``target_s`` (5 % margin)."""
    from tlsearch.training import train_trial

    cfg = trial_configs(spec, cache)[0]
    t = time.perf_counter()
    train_trial(_with_epochs(cfg, 1))
    print(f"warm-up (data generation, graph cache, 1 epoch): {time.perf_counter() - t:.1f} s", flush=True)
    secs: list[float] = []
    res = train_trial(_with_epochs(cfg, 3), callback=lambda m, tr: secs.append(m.seconds))
    epoch_s = statistics.median(secs[1:])
    fixed = max(0.0, res.seconds - sum(secs))
    epochs = max(1, math.ceil((1.05 * target_s - fixed) / epoch_s))
    print(f"calibration: 3-epoch trial {res.seconds:.2f} s, epoch {epoch_s:.2f} s (median of epochs 2-3), "
          f"fixed per trial {fixed:.2f} s, {res.n_train} train / {res.n_val} val structures -> "
          f"{epochs} epochs for a ~{target_s:g} s trial", flush=True)
    return epochs


def run_baseline(spec: Any, cache: Path) -> dict[str, Any]:
    import torch

    from tlsearch.training import train_trial

    torch.set_num_threads(CPUS)
    per_trial, epoch_sums = [], []
    for cfg in trial_configs(spec, cache):
        secs: list[float] = []

        def on_epoch(m: Any, trainer: Any) -> None:
            secs.append(m.seconds)

        t = time.perf_counter()
        res = train_trial(cfg, callback=on_epoch)
        per_trial.append(time.perf_counter() - t)
        epoch_sums.append(sum(secs))
        assert len(res.history) == spec.budget.max_epochs, res.history
    return {"wall": sum(per_trial), "per_trial": per_trial, "epoch_sums": epoch_sums}


def run_ray(spec: Any, root: Path, name: str, log: Path) -> dict[str, Any]:
    import ray
    from rich.console import Console

    from tlsearch.search import runner
    from tlsearch.search.experiment import Experiment
    from tlsearch.search.space import resolve

    exp = Experiment.create(spec, root, name)
    timing: dict[str, float] = {}
    orig = runner.start_ray

    def timed_start_ray(*a: Any, **k: Any) -> str:
        timing["t0"] = time.perf_counter()
        url = orig(*a, **k)
        timing["startup"] = time.perf_counter() - timing["t0"]
        timing["url"] = url
        return url

    runner.start_ray = timed_start_ray
    try:
        with open(log, "a") as fh:
            results = runner.run_study(spec, exp, Console(file=fh, width=120))
        wall = time.perf_counter() - timing["t0"]
    finally:
        runner.start_ray = orig
        ray.shutdown()
    url = str(timing.get("url", ""))
    if url and not url.rstrip("/").endswith(f":{spec.cluster.dashboard_port}"):
        raise RuntimeError(f"ray.init joined another Ray instance (dashboard {url}), not a fresh local one")
    if results.errors or len(results) != spec.budget.trials:
        raise RuntimeError(f"Ray study failed ({len(results)} results, errors: {results.errors}); see {log}")
    want = resolve(spec, PARAMS)
    per_trial, tune_s, epoch_sums, reporting = [], [], [], []
    for r in sorted(results, key=lambda r: r.metrics.get("timestamp", 0)):
        m = r.metrics
        if resolve(spec, r.config) != want:
            raise RuntimeError(f"a Ray trial ran another configuration: {r.config}")
        if not m.get("final") or m.get("epochs_run") != spec.budget.max_epochs:
            raise RuntimeError(f"a Ray trial did not finish all {spec.budget.max_epochs} epochs: {m}")
        df = r.metrics_dataframe
        epochs = df[df["final"] == False]  # noqa: E712  (a pandas column)
        per_trial.append(float(m["wall_seconds"]))
        tune_s.append(float(m["time_total_s"]))
        epoch_sums.append(float(epochs["seconds"].sum()))
        reporting.append((float(m["report_seconds"]), float(m["checkpoint_seconds"])))
    return {"wall": wall, "startup": timing["startup"], "per_trial": per_trial, "tune_s": tune_s,
            "epoch_sums": epoch_sums, "reporting": reporting, "url": url}


def _fmt(xs: list[float]) -> str:
    return "[" + ", ".join(f"{x:.2f}" for x in xs) + "]"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trials", type=int, default=4)
    ap.add_argument("--trial-seconds", type=float, default=30.0, help="target length of one trial (calibrated)")
    ap.add_argument("--epochs", type=int, default=None, help="epochs per trial (skips the calibration)")
    ap.add_argument("--n", type=int, default=400, help="EMT structures in the target dataset")
    ap.add_argument("--repeats", type=int, default=1, help="baseline/Ray pairs, alternating order")
    ap.add_argument("--cpus", type=int, default=2, help="cpus_per_trial = torch threads on both sides (default 2: "
                    "all of a 2-core machine, so Ray's and W&B's own processes compete with the trial)")
    ap.add_argument("--max-load", type=float, default=1.5, help="wait until the 1-min load average is <= this")
    ap.add_argument("--load-wait", type=float, default=600.0, help="longest wait for the load to drop, s")
    ap.add_argument("--auth-disabled", action="store_true", help="RAY_AUTH_MODE=disabled instead of a token")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = ap.parse_args()
    globals()["CPUS"] = args.cpus
    t_start = time.perf_counter()

    tmp = Path(tempfile.mkdtemp(prefix="tlsoh-"))
    home, cache, log = tmp / "home", tmp / "cache", tmp / "study.log"
    home.mkdir()
    # RAY_TMPDIR: Ray's session files go here, and ray.init() cannot find (and join) a cluster that someone
    # else started with `ray start` (it looks for <temp dir>/ray/ray_current_cluster).
    os.environ.update(HOME=str(home), TLSEARCH_CACHE=str(cache), WANDB_MODE="offline", WANDB_SILENT="true",
                      PYTHONWARNINGS="ignore", RAY_TMPDIR=str(tmp))
    for var in ("RAY_AUTH_TOKEN_PATH", "RAY_AUTH_MODE", "RAY_ADDRESS", "WANDB_API_KEY"):
        os.environ.pop(var, None)
    if args.auth_disabled:
        os.environ["RAY_AUTH_MODE"] = "disabled"
    print(f"temporary directory: {tmp} (study output in {log})", flush=True)
    try:
        wait_for_load(args.max_load, args.load_wait)
        port = _free_port()
        probe = make_spec(args.n, args.trials, 3, port)
        epochs = args.epochs or calibrate(probe, cache, args.trial_seconds)
        if args.epochs:  # still generate the data and graphs before anything is timed
            from tlsearch.training import train_trial

            train_trial(_with_epochs(trial_configs(probe, cache)[0], 1))
        spec = make_spec(args.n, args.trials, epochs, port)
        print(f"setup: {args.trials} trials x {epochs} epochs, scratch, fixed config {resolve_str(spec)}, "
              f"{CPUS} threads, one trial at a time, W&B offline; {os.cpu_count()} CPUs", flush=True)

        rows: list[dict[str, float]] = []
        for rep in range(args.repeats):
            order = ["baseline", "ray"] if rep % 2 == 0 else ["ray", "baseline"]
            out: dict[str, dict[str, Any]] = {}
            for side in order:
                print(f"repeat {rep + 1}/{args.repeats}: {side} ... (load {_load()})", flush=True)
                if side == "baseline":
                    out[side] = run_baseline(spec, cache)
                else:
                    out[side] = run_ray(spec, tmp / "exp", f"overhead{rep}", log)
                    time.sleep(3)  # let Ray's processes exit before anything else is timed
            b, r = out["baseline"], out["ray"]
            n = args.trials
            row = {"baseline_wall": b["wall"], "ray_wall": r["wall"], "startup": r["startup"],
                   "pct": 100 * (r["wall"] - b["wall"]) / b["wall"],
                   "pct_excl": 100 * (r["wall"] - r["startup"] - b["wall"]) / b["wall"],
                   "per_trial": (r["wall"] - r["startup"] - b["wall"]) / n}
            rows.append(row)
            print(f"  baseline per-trial s (train_trial in process):  {_fmt(b['per_trial'])}  "
                  f"sum {b['wall']:.2f}  (epoch seconds {_fmt(b['epoch_sums'])})")
            print(f"  Ray per-trial s (train_trial inside the worker): {_fmt(r['per_trial'])}  "
                  f"(epoch seconds {_fmt(r['epoch_sums'])}; Tune time_total_s {_fmt(r['tune_s'])})")
            print(f"  Ray: fresh local instance, dashboard {r['url'] or '(none)'}")
            print(f"  Ray wall {r['wall']:.2f} s = start-up {r['startup']:.2f} s + "
                  f"{r['wall'] - r['startup']:.2f} s for the trials ({(r['wall'] - r['startup']) / n:.2f} s per "
                  f"trial vs {b['wall'] / n:.2f} s in process)")
            mean = statistics.mean
            slot = (r["wall"] - r["startup"]) / n
            d_epochs = mean(r["epoch_sums"]) - mean(b["epoch_sums"])
            d_rest = (mean(r["per_trial"]) - mean(r["epoch_sums"])) - (mean(b["per_trial"]) - mean(b["epoch_sums"]))
            print(f"  per-trial breakdown (Ray minus in process, s): epochs {d_epochs:+.2f}, rest of train_trial "
                  f"{d_rest:+.2f}, trainable outside train_trial {mean(r['tune_s']) - mean(r['per_trial']):+.2f}, "
                  f"outside the trainable (actor start, Tune, W&B) {slot - mean(r['tune_s']):+.2f}")
            rep, ck = mean(x[0] for x in r["reporting"]), mean(x[1] for x in r["reporting"])
            print(f"  of the rest of train_trial: per-epoch tune.report (no checkpoint) {rep:.2f} s, reports with a "
                  f"checkpoint {ck:.2f} s (incl. the Ray metrics updates)")
            print(f"  overhead: {row['pct']:.1f} % incl. start-up, {row['pct_excl']:.1f} % excl., "
                  f"{row['per_trial']:.2f} s per trial; load {_load()}", flush=True)

        med = {k: statistics.median(row[k] for row in rows) for k in rows[0]}
        mean_trial = med["baseline_wall"] / args.trials
        print(f"summary{' (median of %d repeats)' % len(rows) if len(rows) > 1 else ''}: baseline "
              f"{med['baseline_wall']:.2f} s ({mean_trial:.2f} s per trial), Ray + W&B {med['ray_wall']:.2f} s, "
              f"Ray start-up {med['startup']:.2f} s, per-trial overhead {med['per_trial']:.2f} s")
        verdict = "met" if med["pct_excl"] <= 10 else "NOT met"
        short = "" if mean_trial >= 30 else f" (note: trials are {mean_trial:.1f} s, shorter than the 30 s it is for)"
        print(f"target <= 10 % for trials >= 30 s: {verdict} excluding start-up ({med['pct_excl']:.1f} %), "
              f"{'met' if med['pct'] <= 10 else 'NOT met'} including it ({med['pct']:.1f} %){short}")
        print(f"load average at end: {_load()}; total benchmark time {time.perf_counter() - t_start:.0f} s")
        print(f"RATIO ray_wandb_overhead_pct={med['pct']:.2f}")
        print(f"RATIO ray_wandb_overhead_pct_excl_startup={med['pct_excl']:.2f}")
        print(f"RATIO per_trial_overhead_s={med['per_trial']:.3f}", flush=True)
    finally:
        try:
            import ray

            ray.shutdown()
        except Exception:
            pass
        if args.keep:
            print(f"kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def resolve_str(spec: Any) -> str:
    from tlsearch.search.space import resolve

    v = resolve(spec, PARAMS)
    return ", ".join(f"{k}={v[k]}" for k in ("ft_lr", "batch_size", "alignn_layers", "gcn_layers",
                                               "hidden_features", "embedding_features"))


if __name__ == "__main__":
    main()
