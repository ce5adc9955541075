"""A real study on a local multi-node Ray cluster, and tlsearch metrics on Ray's metrics endpoint."""

from __future__ import annotations

import os
import socket
import time
import urllib.request

import yaml
from rich.console import Console

from tests.search.test_run import SMOKE


def _spec(**budget):
    from tlsearch.search.spec import spec_from_dict

    data = yaml.safe_load(SMOKE.read_text())
    data["budget"].update(budget)
    data["scheduler"] = {"type": "none"}
    data["tracking"] = {"mode": "disabled"}
    return spec_from_dict(data)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_study_on_two_node_cluster(tmp_path, monkeypatch):
    import ray
    from ray.cluster_utils import Cluster

    from tlsearch.search.experiment import Experiment
    from tlsearch.search.runner import run_study

    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    spec = _spec(trials=4, max_epochs=3, pt_epochs=2)
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    try:
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        exp = Experiment.create(spec, tmp_path / "exp")
        results = run_study(spec, exp, Console(file=open(os.devnull, "w")), address=cluster.address)
        nodes = {r.metrics.get("node_id") for r in results if r.metrics}
        assert len(results) == 4 and not results.errors
        assert len(nodes - {None}) >= 2, f"trials ran on {nodes}"
    finally:
        ray.shutdown()
        cluster.shutdown()


def test_metrics_reach_ray_endpoint_and_dashboard_answers(tmp_path, monkeypatch):
    import ray

    from tlsearch.search.experiment import Experiment
    from tlsearch.search.runner import run_study

    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("RAY_AUTH_TOKEN_PATH", raising=False)
    spec = _spec(trials=2, max_epochs=3, pt_epochs=2)
    port = _free_port()
    try:
        exp = Experiment.create(spec, tmp_path / "exp")
        run_study(spec, exp, Console(file=open(os.devnull, "w")), metrics_port=port)
        text, deadline = "", time.time() + 90
        while time.time() < deadline:
            text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
            if "ray_tlsearch_epochs_total" in text and "ray_tlsearch_val_mae" in text:
                break
            time.sleep(3)
        assert "ray_tlsearch_epochs_total" in text and "ray_tlsearch_val_mae" in text
        assert "ray_tlsearch_epoch_seconds" in text
        # the dashboard is up on 127.0.0.1 and answers an authenticated REST call
        url = "http://127.0.0.1:8265/api/version"
        req = urllib.request.Request(url)
        token_file = home / ".ray" / "auth_token"
        if token_file.exists():
            req.add_header("Authorization", f"Bearer {token_file.read_text().strip()}")
        info = urllib.request.urlopen(req, timeout=10).read().decode()
        assert "ray_version" in info
    finally:
        ray.shutdown()


_FRACTIONAL = """
import json, os, sys, yaml
import ray
from rich.console import Console
from tlsearch.search.experiment import Experiment
from tlsearch.search.runner import run_study
from tlsearch.search.spec import spec_from_dict
data = yaml.safe_load(open(sys.argv[1]).read())
data.update(scheduler={"type": "none"}, tracking={"mode": "disabled"},
            resources={"cpus_per_trial": 0.5, "gpus_per_trial": 0.5, "max_concurrent": 2})
data["budget"].update(trials=2, max_epochs=3, pt_epochs=2)
data["search"]["strategy"] = ["scratch"]
spec = spec_from_dict(data)
ray.init(num_cpus=1, num_gpus=1, include_dashboard=False)
results = run_study(spec, Experiment.create(spec, sys.argv[2]), Console(file=open(os.devnull, "w")))
spans = []
for r in results:
    df = r.metrics_dataframe
    spans.append([float(df["timestamp"].min() - df["time_this_iter_s"].iloc[0]), float(df["timestamp"].max())])
print("SPANS", json.dumps({"spans": spans, "errors": len(results.errors)}))
"""


def test_fractional_gpus_pack_two_trials_on_one_gpu(tmp_path):
    """gpus_per_trial 0.5 on a node that declares one GPU: two trials run at the same time (own process)."""
    import json
    import subprocess
    import sys

    env = dict(os.environ, RAY_AUTH_MODE="disabled", TLSEARCH_CACHE=str(tmp_path / "cache"))
    proc = subprocess.run([sys.executable, "-c", _FRACTIONAL, str(SMOKE), str(tmp_path / "exp")], env=env,
                          capture_output=True, text=True, timeout=600)
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("SPANS ")]
    assert proc.returncode == 0 and line, proc.stdout[-2000:] + proc.stderr[-2000:]
    got = json.loads(line[0][6:])
    (a0, a1), (b0, b1) = got["spans"]
    assert got["errors"] == 0 and a0 < b1 and b0 < a1, f"trials did not overlap: {got}"
