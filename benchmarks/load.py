"""Load: a study of many very short trials, two at a time, through ``tlsearch run``; memory and W&B at scale.

What runs: ``tlsearch run`` (a subprocess: the driver) on the smoke space (``search_spaces/smoke.yaml``: scratch,
PT->FT and MPT on tiny EMT data) with ``budget.trials = --trials``, ``max_epochs`` 2, ``pt_epochs`` 2, one repeat,
scheduler ``none``, ``max_concurrent`` 2 x 1 CPU, W&B offline; a fresh local Ray (``RAY_TMPDIR`` in a new
temporary directory, the dashboard on a free port). The run ends with the report, as every ``tlsearch run`` does.

Measured: every second, in a thread of this process, the RSS of the driver and the RSS and PSS summed over the
driver's process tree (Ray's GCS, raylet, dashboard, the trial workers, the W&B logging and queue actors and
their wandb-core processes; PSS counts a page shared by n processes as 1/n in each, RSS counts it n times), the
number of processes, and PSS by kind of process. Reported: wall time (study: driver start to the last trial's
completion in Optuna, split into Ray start-up and the span in which trials run; total: to the driver's exit,
report included), trials per minute over that span, peak RSS of the driver and of the tree (study phase, and
overall), the peak of each in the first and in the last quarter of the span (growth over time), the tree's PSS
by kind of process at its peak, and the number of W&B offline runs.

Checked (raises when not): the driver exits 0; the Optuna study has exactly ``--trials`` trials, all COMPLETE;
each Ray trial is one Optuna trial; each Ray trial has exactly one W&B offline run (same id) whose history has
every epoch and the final summary, and whose log ends with W&B's exit record.

Usage: python benchmarks/load.py [--trials 200] [--keep]
Last lines: RATIO <name>=<value>.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

SMOKE = REPO / "search_spaces" / "smoke.yaml"
EPOCHS = 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spec_data(trials: int, dashboard_port: int) -> dict[str, Any]:
    import yaml

    data = yaml.safe_load(SMOKE.read_text())
    data["name"] = "load"
    data["budget"] = {"trials": trials, "max_epochs": EPOCHS, "pt_epochs": 2, "repeats": 1}
    data["scheduler"] = {"type": "none"}
    data["resources"] = {"cpus_per_trial": 1, "gpus_per_trial": 0, "max_concurrent": 2}
    data["tracking"] = {"project": "tlsearch-load", "mode": "offline"}
    data["cluster"] = {"dashboard_host": "127.0.0.1", "dashboard_port": dashboard_port}
    return data


def _kind(p: Any) -> str:
    """What a process of the tree is: Ray's process title (ray::ImplicitFunc is a trial worker), else its name."""
    try:
        cmd = p.cmdline()
    except Exception:  # noqa: BLE001 - gone, or a zombie
        return "?"
    head = cmd[0] if cmd else p.name()
    if head.startswith("ray::"):
        return head.split()[0].split(".")[0]
    if "default_worker.py" in " ".join(cmd[:3]):
        return "ray worker (idle)"
    return Path(head).name if head.startswith("/") or "/" in head else head


class Sampler(threading.Thread):
    """Every ``period`` s: (time.time(), driver RSS, tree RSS, tree PSS, processes, {kind: (count, PSS)}) of the
    process tree under ``pid`` (PSS counts a page shared by n processes as 1/n in each)."""

    def __init__(self, pid: int, period: float = 1.0) -> None:
        super().__init__(daemon=True)
        self.pid, self.period = pid, period
        self.samples: list[tuple[float, int, int, int, int, dict[str, tuple[int, int]]]] = []
        self._halt = threading.Event()

    def run(self) -> None:
        import psutil

        try:
            driver = psutil.Process(self.pid)
        except psutil.NoSuchProcess:
            return
        while not self._halt.is_set():
            try:
                procs = [driver, *driver.children(recursive=True)]
                d_rss = driver.memory_info().rss
            except psutil.NoSuchProcess:
                break
            rss = pss = 0
            kinds: dict[str, tuple[int, int]] = {}
            for p in procs:
                try:
                    m = p.memory_full_info()
                except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                    continue
                p_pss = getattr(m, "pss", m.rss)
                rss, pss = rss + m.rss, pss + p_pss
                k = "driver" if p is driver else _kind(p)
                n, total = kinds.get(k, (0, 0))
                kinds[k] = (n + 1, total + p_pss)
            self.samples.append((time.time(), d_rss, rss, pss, len(procs), kinds))
            self._halt.wait(self.period)

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=10)


def _env(tmp: Path) -> dict[str, str]:
    env = dict(os.environ)
    # RAY_TMPDIR: Ray's session files go here (short path: Ray's unix sockets live under it), and the driver
    # cannot join a cluster someone else started with `ray start`
    env.update(HOME=str(tmp / "home"), TLSEARCH_CACHE=str(tmp / "cache"), WANDB_MODE="offline",
               WANDB_SILENT="true", PYTHONUNBUFFERED="1", RAY_TMPDIR=str(tmp / "ray"))
    for var in ("RAY_AUTH_TOKEN_PATH", "RAY_ADDRESS", "WANDB_API_KEY"):
        env.pop(var, None)
    (tmp / "home").mkdir(exist_ok=True)
    (tmp / "ray").mkdir(exist_ok=True)
    return env


def stop_ray(ray_tmp: str) -> None:
    """Stop what is left of the Ray started under ``ray_tmp`` (its processes name it on their command line);
    never `ray stop --force`, which stops every Ray on the machine."""
    import psutil

    mine = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            if proc.pid != os.getpid() and any(ray_tmp in part for part in proc.info["cmdline"] or []):
                mine.append(proc)
        except (psutil.Error, TypeError):
            continue
    for proc in mine:
        try:
            proc.terminate()
        except psutil.Error:
            pass
    for proc in psutil.wait_procs(mine, timeout=15)[1]:
        try:
            proc.kill()
        except psutil.Error:
            pass


def check_wandb(exp: Path, ray_ids: set[str]) -> dict[str, int]:
    """One W&B offline run per Ray trial, each with every epoch, the final summary and W&B's exit record."""
    from tlsearch.search.tracking import wandb_history, wandb_records

    runs: dict[str, list[Path]] = {}
    for f in sorted(exp.glob("wandb/offline-run-*/run-*.wandb")):
        runs.setdefault(f.parent.name.rsplit("-", 1)[1], []).append(f)
    if set(runs) != ray_ids or any(len(v) != 1 for v in runs.values()):
        extra, missing = sorted(set(runs) - ray_ids), sorted(ray_ids - set(runs))
        many = sorted(k for k, v in runs.items() if len(v) != 1)
        raise AssertionError(f"W&B runs vs Ray trials: extra {extra}, missing {missing}, several files {many}")
    complete = 0
    for rid, (f,) in runs.items():
        steps = [h.get("_step") for h in wandb_history(f)]
        finals = [h for h in wandb_history(f) if h.get("final")]
        exited = any(r.WhichOneof("record_type") == "exit" for r in wandb_records(f))
        if steps != list(range(1, EPOCHS + 2)) or len(finals) != 1 or not exited:
            raise AssertionError(f"W&B run {rid}: steps {steps}, {len(finals)} final summaries, exit record {exited}")
        complete += 1
    return {"runs": len(runs), "complete": complete}


def run_load(trials: int, tmp: Path, timeout: float = 3600.0) -> dict[str, Any]:
    """Run the study in ``tmp``; check it; return the numbers (see the module docstring)."""
    import optuna
    import yaml

    from tlsearch.search.experiment import Experiment

    env = _env(tmp)
    spec = tmp / "load.yaml"
    spec.write_text(yaml.safe_dump(spec_data(trials, _free_port())))
    log = tmp / "driver.log"
    t0 = time.time()
    with open(log, "w") as fh:
        driver = subprocess.Popen([sys.executable, "-m", "tlsearch.cli.main", "run", str(spec), "--storage",
                                   str(tmp / "exp")], env=env, stdout=fh, stderr=subprocess.STDOUT,
                                  start_new_session=True)
        sampler = Sampler(driver.pid)
        sampler.start()
        try:
            rc = driver.wait(timeout=timeout)
        finally:
            if driver.poll() is None:
                driver.kill()
            sampler.stop()
            stop_ray(env["RAY_TMPDIR"])
    total = time.time() - t0
    if rc != 0:
        raise RuntimeError(f"tlsearch run exited {rc}; last lines:\n" + "\n".join(log.read_text().splitlines()[-40:]))
    exp = Experiment.open(tmp / "exp" / "load")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name="load", storage=exp.optuna_storage())
    states = [t.state.name for t in study.trials]
    if len(states) != trials or set(states) != {"COMPLETE"}:
        raise AssertionError(f"{len(states)} Optuna trials, states {sorted(set(states))}")
    ray_ids = {t.user_attrs["ray_trial_id"] for t in study.trials}
    ray_dirs = {p.parent.name for p in exp.tune_dir.glob("*/result.json")}
    if len(ray_ids) != trials or len(ray_dirs) != trials:
        raise AssertionError(f"{len(ray_ids)} Ray trial ids in Optuna, {len(ray_dirs)} Ray trial directories")
    wandb = check_wandb(exp.root, ray_ids)
    start = min(t.datetime_start.timestamp() for t in study.trials)  # the first trial starts (Ray is up)
    end = max(t.datetime_complete.timestamp() for t in study.trials)  # the last trial completes
    study_s = end - t0
    s = sampler.samples
    in_study = [x for x in s if x[0] <= end] or s
    q = (end - start) / 4  # growth: the quarters of the span in which trials run
    first = [x for x in in_study if start <= x[0] <= start + q] or in_study[:1]
    last = [x for x in in_study if x[0] >= end - q] or in_study[-1:]
    mib = 1024 * 1024

    def peak(rows: list[tuple], i: int) -> float:
        return max(r[i] for r in rows) / mib

    at_peak = max(in_study, key=lambda r: r[3])[5]
    quarters = [[x for x in in_study if start + k * q <= x[0] <= start + (k + 1) * q] or in_study[-1:]
                for k in range(4)]
    return {
        "trials": trials, "total_s": total, "study_s": study_s, "trials_per_min": trials / (end - start) * 60,
        "startup_s": start - t0, "trials_s": end - start,
        "driver_quarters_mib": [peak(x, 1) for x in quarters], "tree_pss_quarters_mib": [peak(x, 3) for x in quarters],
        "breakdown_at_peak": {k: (n, v / mib) for k, (n, v) in sorted(at_peak.items(), key=lambda kv: -kv[1][1])},
        "samples": len(s), "driver_peak_mib": peak(in_study, 1), "tree_rss_peak_mib": peak(in_study, 2),
        "tree_pss_peak_mib": peak(in_study, 3), "driver_peak_all_mib": peak(s, 1), "tree_rss_peak_all_mib": peak(s, 2),
        "procs_peak": max(r[4] for r in in_study),
        "driver_peak_q1_mib": peak(first, 1), "driver_peak_q4_mib": peak(last, 1),
        "tree_rss_peak_q1_mib": peak(first, 2), "tree_rss_peak_q4_mib": peak(last, 2),
        "tree_pss_peak_q1_mib": peak(first, 3), "tree_pss_peak_q4_mib": peak(last, 3),
        "wandb_runs": wandb["runs"], "wandb_runs_complete": wandb["complete"], "log": str(log),
    }


def report(r: dict[str, Any]) -> str:
    at_peak = ", ".join(f"{k} {n} x / {v:.0f} MiB" for k, (n, v) in r["breakdown_at_peak"].items())
    return "\n".join([
        f"{r['trials']} trials x {EPOCHS} epochs, 2 at a time: study {r['study_s']:.0f} s (Ray start-up and the "
        f"first trial's start {r['startup_s']:.0f} s, trials {r['trials_s']:.0f} s: {r['trials_per_min']:.1f} "
        f"trials/min), total with the report {r['total_s']:.0f} s",
        f"peak RSS, study phase: driver {r['driver_peak_mib']:.0f} MiB, process tree {r['tree_rss_peak_mib']:.0f} MiB "
        f"RSS / {r['tree_pss_peak_mib']:.0f} MiB PSS, up to {r['procs_peak']} processes "
        f"({r['samples']} samples, 1 s apart)",
        f"peak RSS incl. the report: driver {r['driver_peak_all_mib']:.0f} MiB, "
        f"tree {r['tree_rss_peak_all_mib']:.0f} MiB",
        f"growth (peak in the first vs the last quarter of the span): driver {r['driver_peak_q1_mib']:.0f} -> "
        f"{r['driver_peak_q4_mib']:.0f} MiB, tree RSS {r['tree_rss_peak_q1_mib']:.0f} -> "
        f"{r['tree_rss_peak_q4_mib']:.0f} MiB, tree PSS {r['tree_pss_peak_q1_mib']:.0f} -> "
        f"{r['tree_pss_peak_q4_mib']:.0f} MiB",
        "peak per quarter of the span: driver RSS " + " / ".join(f"{v:.0f}" for v in r["driver_quarters_mib"])
        + " MiB, tree PSS " + " / ".join(f"{v:.0f}" for v in r["tree_pss_quarters_mib"]) + " MiB",
        f"process tree PSS at its peak, by process: {at_peak}",
        f"W&B offline runs: {r['wandb_runs']} ({r['wandb_runs_complete']} with every step, the final summary and "
        f"the exit record)",
    ])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trials", type=int, default=200)
    ap.add_argument("--timeout", type=float, default=3600.0, help="longest the study may take, s")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="tlsload-"))
    print(f"temporary directory: {tmp}; load average at start {os.getloadavg()[0]:.2f}", flush=True)
    try:
        r = run_load(args.trials, tmp, args.timeout)
        print(report(r))
        print(f"load average at end: {os.getloadavg()[0]:.2f}")
        print(f"RATIO trials_per_min={r['trials_per_min']:.2f}")
        print(f"RATIO driver_rss_growth={r['driver_peak_q4_mib'] / r['driver_peak_q1_mib']:.3f}")
        print(f"RATIO tree_pss_growth={r['tree_pss_peak_q4_mib'] / r['tree_pss_peak_q1_mib']:.3f}", flush=True)
    finally:
        if args.keep:
            print(f"kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
