"""The cluster path as deploy/README.md tells users to run it (issue 16.1): a head and a worker started as
separate `ray start` processes on 127.0.0.1 (each with its own temp dir and ports, as two machines would
have), token authentication, the study submitted with `ray job submit --working-dir` (the checkout uploaded,
`tlsearch run ... --address auto` as the entrypoint), followed with `ray job logs`, stopped mid-study with
`ray job stop` and finished by a second job running `tlsearch resume`. Checked: trials ran on both nodes,
every planned trial finished once, W&B offline runs hold every epoch of every trial once, the report exists.

Real Ray, real training on the EMT smoke data; `make test-cluster`, which CI runs. A run whose stop lands while the
driver has just started a trial (after Tune's last snapshot) ends with that Optuna trial an orphan, marked failed
and re-planned; the test accepts exactly that and checks it.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import polars as pl
import pytest
import yaml

from benchmarks.load import stop_ray
from tlsearch.search.experiment import CUT_SHORT, ORPHANED
from tests.search.test_faults import _check_wandb, _rows
from tests.search.test_run import ROOT, SMOKE

pytestmark = pytest.mark.slow
RAY = str(Path(sys.executable).with_name("ray"))


def _ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _node_ports(ports: list[int]) -> list[str]:
    """The ports a Ray node listens on besides the head's GCS and dashboard: two nodes on one machine must not
    share them (the second node's dashboard agent failed to bind, and no job could be submitted)."""
    names = ("--dashboard-agent-listen-port", "--dashboard-agent-grpc-port", "--metrics-export-port",
             "--runtime-env-agent-port", "--node-manager-port", "--object-manager-port")
    return [a for name, port in zip(names, ports) for a in (name, str(port))]


def _ray(*args: str, env: dict, timeout: int = 180) -> subprocess.CompletedProcess:
    return subprocess.run([RAY, *args], env=env, capture_output=True, text=True, timeout=timeout)


def _submit(entrypoint: list[str], dashboard: str, env: dict) -> str:
    proc = _ray("job", "submit", "--address", dashboard, "--working-dir", str(ROOT), "--no-wait", "--",
                *entrypoint, env=env)
    found = re.search(r"raysubmit_\w+", proc.stdout + proc.stderr)
    assert proc.returncode == 0 and found, proc.stdout[-3000:] + proc.stderr[-3000:]
    return found.group(0)


def _logs_tail(temp_dir: str, chars: int = 1500) -> str:
    """The end of a node's Ray logs that tell why a job could not be submitted or run (for a failure message)."""
    out = []
    for name in ("dashboard_agent.log", "dashboard.log", "runtime_env_agent.log", "raylet.out", "gcs_server.out"):
        for f in Path(temp_dir).glob(f"session_latest/logs/{name}"):
            out.append(f"--- {f}\n{f.read_text(errors='replace')[-chars:]}")
    return "\n".join(out)


def _finished(exp: Path) -> int:
    return sum(1 for p in exp.glob("tune/t*/result.json") if any(r.get("final") for r in _rows(p)))


@pytest.mark.timeout(900)
def test_study_as_ray_jobs_on_two_nodes_stopped_and_resumed(tmp_path):
    head_tmp, worker_tmp = tempfile.mkdtemp(prefix="tlrh", dir="/tmp"), tempfile.mkdtemp(prefix="tlrw", dir="/tmp")
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items()
           if k not in ("RAY_AUTH_TOKEN_PATH", "WANDB_API_KEY", "RAY_ADDRESS", "RAY_TMPDIR")}
    # the Ray CLI and the entrypoint's `tlsearch` come from this environment's bin directory, as on a node
    env.update(HOME=str(home), RAY_AUTH_MODE="token", TLSEARCH_CACHE=str(tmp_path / "cache"), WANDB_MODE="offline",
               PYTHONUNBUFFERED="1", PATH=f"{Path(sys.executable).parent}:{env.get('PATH', '')}")
    gcs, dash, *ports = _ports(14)
    dashboard = f"http://127.0.0.1:{dash}"
    data = yaml.safe_load(SMOKE.read_text())
    data["name"] = "jobs"
    data["budget"].update(trials=6, max_epochs=10, repeats=1)  # long enough that the stop comes mid-study
    data["scheduler"] = {"type": "none"}
    data["resources"]["checkpoint_interval_s"] = 0
    spec = tmp_path / "jobs.yaml"
    spec.write_text(yaml.safe_dump(data))
    storage, exp = tmp_path / "exp", tmp_path / "exp" / "jobs"
    try:
        assert _ray("get-auth-token", "--generate", env=env).returncode == 0
        head = _ray("start", "--head", "--port", str(gcs), "--dashboard-port", str(dash), "--dashboard-host",
                    "127.0.0.1", "--num-cpus", "1", "--temp-dir", head_tmp, "--disable-usage-stats",
                    "--include-dashboard", "true", *_node_ports(ports[:6]), env={**env, "RAY_TMPDIR": head_tmp})
        assert head.returncode == 0, head.stderr[-3000:]
        worker = _ray("start", "--address", f"127.0.0.1:{gcs}", "--num-cpus", "1", "--temp-dir", worker_tmp,
                      "--disable-usage-stats", *_node_ports(ports[6:12]), env={**env, "RAY_TMPDIR": worker_tmp})
        assert worker.returncode == 0, worker.stderr[-3000:]
        first, waited = None, time.time()
        while first is None and time.time() - waited < 120:  # the head's job agent registers after `ray start`
            try:
                first = _submit(["tlsearch", "run", str(spec), "--address", "auto", "--storage", str(storage)],
                                dashboard, env)
            except AssertionError as exc:
                if "No available agent" not in str(exc):
                    raise
                time.sleep(2)
        assert first, f"no job agent on the head after 120 s\n{_logs_tail(head_tmp)}"
        deadline = time.time() + 400
        while _finished(exp) < 1 and time.time() < deadline:
            time.sleep(0.5)
        assert _finished(exp) >= 1, _ray("job", "logs", "--address", dashboard, first, env=env).stdout[-3000:]
        stop = _ray("job", "stop", "--address", dashboard, first, env=env)
        assert stop.returncode == 0 and "stopped" in stop.stdout + stop.stderr, stop.stdout + stop.stderr
        done_at_stop = _finished(exp)
        second = _submit(["tlsearch", "resume", str(exp), "--address", "auto"], dashboard, env)
        logs = _ray("job", "logs", "--address", dashboard, "--follow", second, env=env, timeout=600)
        status = _ray("job", "status", "--address", dashboard, second, env=env)
        for name, job in (("first", first), ("second", second)):  # kept for a failure's post-mortem
            (tmp_path / f"{name}_job.log").write_text(_ray("job", "logs", "--address", dashboard, job, env=env).stdout)
        assert f"Job {second!r} succeeded" in status.stdout + status.stderr, logs.stdout[-4000:]
        assert "report:" in logs.stdout and "Traceback" not in logs.stdout, logs.stdout[-4000:]
    finally:
        stop_ray(head_tmp)
        stop_ray(worker_tmp)
    trials = pl.read_parquet(exp / "trials.parquet")
    finished = trials.filter(pl.col("state") == "finished")
    assert finished.height == 6, trials.select("trial", "state", "error")
    # an Optuna trial the stopped driver had started after Tune's last snapshot is an orphan (issue 18's window):
    # marked failed with the reason, and its configuration planned again, so it finished once under another number
    # (a stop that lands while Optuna samples a trial leaves one never run: failed, CUT_SHORT, nothing planned again)
    orphans = trials.filter((pl.col("state") != "finished") & (pl.col("error") != CUT_SHORT))
    assert (orphans["error"] == ORPHANED).all(), orphans.select("trial", "state", "error")
    assert set(orphans["params"]) <= set(finished["params"]), orphans.select("trial", "params")
    assert done_at_stop < 6  # the first job was stopped mid-study; the second finished it
    assert finished["node_id"].n_unique() == 2  # trials ran on the head and on the worker
    # the PT store both nodes share: each PT model trained once, by whichever trial asked first; the others
    # (on either node) used it
    pt = finished.filter(pl.col("pt_key").is_not_null())
    assert pt.height and (pt.group_by("pt_key").agg((~pl.col("pt_store_hit")).sum().alias("trained"))["trained"]
                          <= 1).all(), pt.select("trial", "node_id", "pt_key", "pt_store_hit")
    history = pl.read_parquet(exp / "history.parquet").filter(pl.col("trial").is_in(finished["trial"].to_list()))
    assert history.group_by("trial").agg(pl.col("epoch").sort())["epoch"].to_list() == [list(range(1, 11))] * 6
    # every trial directory, also one the stopped driver started after Tune's last snapshot (Tune re-plans its
    # configuration as a new trial): each iteration in result.json is a step of its W&B run, once
    iterations = {}
    for d in exp.glob("tune/t*/"):
        rows = _rows(d / "result.json")
        if not rows:  # a directory the stopped driver made for a trial that never reported (the orphan above)
            continue
        iterations[rows[0]["trial_id"]] = sorted({r["training_iteration"] for r in rows})
    assert len(iterations) >= 6 and all(v == list(range(1, len(v) + 1)) for v in iterations.values()), iterations
    _check_wandb(exp, iterations)
    s = json.loads((exp / "summary.json").read_text())
    assert s["trials"]["finished"] == 6 and (exp / "report.html").exists()
