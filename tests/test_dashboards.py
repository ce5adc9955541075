"""dashboards/: the Grafana dashboard covers exactly the metrics trials export to Ray, and optuna-dashboard
serves an experiment's Optuna journal with the command dashboards/README.md documents."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GRAFANA = ROOT / "dashboards" / "grafana" / "tlsearch.json"
TRAINABLE = ROOT / "tlsearch" / "search" / "trainable.py"
GRAFANA_BUILTINS = {"__rate_interval", "__range", "__interval"}


def defined_metrics() -> dict[str, set[str]]:
    """{metric name as defined in trainable._ray_metrics: the series names Ray's Prometheus endpoint shows}.
    Ray prefixes ``ray_``; a counter gets ``_total`` unless its name has it; a histogram is exposed as
    ``_bucket``, ``_sum`` and ``_count`` series (as a live Ray 2.60 endpoint shows them; tests/search/test_cluster.py
    checks the prefix live)."""
    out = {}
    pattern = r'\b(Gauge|Counter|Histogram)\(\s*"([A-Za-z_:][A-Za-z0-9_:]*)"'
    for kind, name in re.findall(pattern, TRAINABLE.read_text()):
        base = f"ray_{name}"
        if kind == "Counter":
            out[name] = {base if base.endswith("_total") else f"{base}_total"}
        elif kind == "Histogram":
            out[name] = {f"{base}_bucket", f"{base}_sum", f"{base}_count"}
        else:
            out[name] = {base}
    return out


def _dashboard() -> dict:
    return json.loads(GRAFANA.read_text())


def _exprs(panel: dict) -> list[str]:
    return [t["expr"] for t in panel.get("targets", [])]


def test_trainable_defines_the_metrics_parsed_here():
    """Guards the parser below: if trainable.py changes how it defines metrics, this fails before the others
    pass vacuously."""
    assert set(defined_metrics()) == {"tlsearch_val_mae", "tlsearch_epoch_seconds", "tlsearch_structures_per_second",
                                      "tlsearch_epochs_total", "tlsearch_pt_store_hits_total",
                                      "tlsearch_pt_store_trained_total"}


def test_grafana_dashboard_is_well_formed():
    d = _dashboard()
    assert d["uid"] and len(d["uid"]) <= 40 and d["title"] and isinstance(d["schemaVersion"], int)
    variables = {v["name"]: v for v in d["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids)) and d["panels"]
    for p in d["panels"]:
        assert p["type"] in {"timeseries", "stat", "bargauge", "heatmap"} and p["title"]
        assert p["datasource"]["uid"] == "${datasource}"
        g = p["gridPos"]
        assert g["x"] + g["w"] <= 24 and g["w"] > 0 and g["h"] > 0
        refs = [t["refId"] for t in p["targets"]]
        assert refs and len(refs) == len(set(refs))
        for t in p["targets"]:
            assert t["datasource"]["uid"] == "${datasource}"
    for v in variables.values():  # variable queries reference only the datasource and defined variables
        used = set(re.findall(r"\$\{?(\w+)", json.dumps(v.get("query", "")) + json.dumps(v.get("datasource", ""))))
        assert used <= set(variables), (v["name"], used)


def test_every_panel_queries_defined_metrics_and_every_metric_has_a_panel():
    series = defined_metrics()
    allowed = set().union(*series.values())
    variables = {v["name"] for v in _dashboard()["templating"]["list"]}
    covered = set()
    for p in _dashboard()["panels"]:
        names = {n for e in _exprs(p) for n in re.findall(r"\bray_[A-Za-z0-9_:]+", e)}
        assert names, f"panel {p['title']!r} queries no tlsearch metric"
        assert names <= allowed, f"panel {p['title']!r} queries undefined series {sorted(names - allowed)}"
        for e in _exprs(p):
            assert set(re.findall(r"\$(\w+)", e)) <= variables | GRAFANA_BUILTINS, e
        covered |= {m for m, s in series.items() if s & names}
    assert covered == set(series), f"metrics without a panel: {sorted(set(series) - covered)}"


def test_panel_queries_are_valid_promql():
    parser = pytest.importorskip("promql_parser")
    subst = {"$__rate_interval": "1m", "$__range": "1h", "$__interval": "15s", "$SessionName": ".+", "$trial": ".+"}
    for p in _dashboard()["panels"]:
        for e in _exprs(p):
            for k, v in subst.items():
                e = e.replace(k, v)
            parser.parse(e)  # raises ValueError on a syntax error


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.timeout(120)
def test_optuna_dashboard_serves_the_experiment_journal(tmp_path):
    """The documented command, run for real on a journal written the way tlsearch writes it."""
    pytest.importorskip("optuna_dashboard")
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    journal = tmp_path / "optuna.journal"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name="quickstart", direction="minimize",
                                storage=JournalStorage(JournalFileBackend(str(journal))))
    study.optimize(lambda t: t.suggest_float("ft_lr", 1e-4, 1e-2, log=True)
                   + (t.suggest_categorical("strategy", ["scratch", "finetune"]) == "scratch"), n_trials=4)

    port = _free_port()
    cli = Path(sys.executable).with_name("optuna-dashboard")
    proc = subprocess.Popen([str(cli), str(journal), "--host", "127.0.0.1", "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        base, studies, deadline = f"http://127.0.0.1:{port}", None, time.monotonic() + 60
        while studies is None and time.monotonic() < deadline:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            try:
                studies = json.load(urllib.request.urlopen(f"{base}/api/studies", timeout=5))
            except OSError:
                time.sleep(0.5)
        assert studies is not None, "optuna-dashboard did not answer within 60 s"
        (summary,) = studies["study_summaries"]
        assert summary["study_name"] == "quickstart" and summary["directions"] == ["minimize"]
        detail = json.load(urllib.request.urlopen(f"{base}/api/studies/{summary['study_id']}", timeout=10))
        assert len(detail["trials"]) == 4 and all(t["state"] == "Complete" for t in detail["trials"])
        assert urllib.request.urlopen(f"{base}/dashboard/", timeout=10).status == 200
    finally:
        proc.terminate()
        proc.wait(timeout=10)
