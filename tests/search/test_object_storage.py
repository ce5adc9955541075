"""A study on object storage (issue 16.3): ``--storage s3://...`` and ``cluster.pt_store: s3://...`` against a
real S3-compatible server (moto's server mode on 127.0.0.1). The driver is SIGKILLed mid-trial on "machine A"
(a cache and working directory of its own) and `tlsearch resume s3://...` finishes the study on "machine B"
(another cache, another working directory: nothing of A's disk), as after losing a KubeRay head pod.

Checked on the store itself: every planned trial finished once, each epoch once in the history, W&B offline
runs hold every reported iteration once (A's runs came up at A's Tune snapshots), the report and the PT models
are there and no PT claim is left; `tlsearch status` from a third fresh machine reads it. Real Ray, real training
on the EMT smoke data; `make test-cluster`, which CI runs.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest
import yaml

from tests.search.test_faults import _check_wandb, _rows, _spec_data
from tests.search.test_run import _cli, _env, _ray_stop
from tlsearch import remote

pytestmark = pytest.mark.slow


def _machine(tmp_path: Path, name: str, s3_env: dict) -> tuple[dict, Path]:
    """The environment and working directory of one machine: its own cache (mirrors), HOME and Ray."""
    root = tmp_path / name
    root.mkdir()
    env = {**_env(root), **s3_env}
    return env, root


@pytest.mark.timeout(900)
def test_study_on_s3_driver_killed_resumed_from_another_machine(s3, s3_server, tmp_path, monkeypatch):
    env_a, dir_a = _machine(tmp_path, "a", s3_server)
    env_a["TUNE_GLOBAL_CHECKPOINT_S"] = "1"  # Tune snapshots (and so uploads) every second
    trials, epochs = 4, 30
    data = _spec_data(trials=trials, max_epochs=epochs, pt_epochs=2)
    data["cluster"]["pt_store"] = remote.join(s3, "pretrained")
    data["cluster"]["graph_store"] = remote.join(s3, "graphs")
    data["resources"]["checkpoint_interval_s"] = 0.5
    spec = dir_a / "space.yaml"
    spec.write_text(yaml.safe_dump(data))
    uri = remote.join(s3, "exps", "smoke")
    log = dir_a / "driver.log"
    driver = subprocess.Popen([sys.executable, "-m", "tlsearch.cli.main", "run", str(spec), "--storage",
                               remote.join(s3, "exps")], env=env_a, cwd=dir_a, stdout=log.open("w"),
                              stderr=subprocess.STDOUT, start_new_session=True)
    try:  # kill once a trial's result.json on the store shows it mid-run, at iteration 3 or later
        deadline, caught = time.time() + 400, None
        while time.time() < deadline and caught is None and driver.poll() is None:
            for key in _objects(uri, "tune/"):
                if key.endswith("/result.json"):
                    rows = [json.loads(x) for x in (remote.read_bytes(remote.join(uri, key)) or b"").splitlines()
                            if x.strip()]
                    if rows and not rows[-1].get("final") and 3 <= rows[-1]["training_iteration"] < epochs - 2:
                        caught = rows[-1]
            time.sleep(0.3)
        assert caught is not None, f"no trial caught mid-run (driver exit {driver.poll()}): {log.read_text()[-3000:]}"
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait(timeout=60)
    finally:
        _ray_stop(env_a)
    assert remote.exists(remote.join(uri, "optuna.journal"))  # the driver's journal went up at a snapshot
    # machine B: nothing of A's disk; the experiment is only its URI
    env_b, dir_b = _machine(tmp_path, "b", s3_server)
    try:
        proc = _cli("resume", uri, env=env_b, cwd=dir_b, timeout=600)
    finally:
        _ray_stop(env_b)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert f"uploaded to {uri}" in proc.stdout and "Traceback" not in proc.stdout + proc.stderr
    # read back from the store by a third machine
    env_c, dir_c = _machine(tmp_path, "c", s3_server)
    status = _cli("status", uri, env=env_c, cwd=dir_c, timeout=300)
    assert status.returncode == 0 and "best so far" in status.stdout, status.stdout[-2000:] + status.stderr[-2000:]
    from tlsearch.search.experiment import CUT_SHORT, ORPHANED

    monkeypatch.setenv("TLSEARCH_CACHE", env_c["TLSEARCH_CACHE"])
    from tlsearch.search.experiment import Experiment

    exp = Experiment.open(uri)
    assert exp.root.is_relative_to(tmp_path / "c")
    table = pl.read_parquet(exp.root / "trials.parquet")
    finished = table.filter(pl.col("state") == "finished")
    assert finished.height == trials, table.select("trial", "state", "error")
    assert table.filter(pl.col("state") != "finished")["error"].is_in([ORPHANED, CUT_SHORT]).all()
    assert caught["trial_id"] in finished["ray_trial_id"].to_list()  # the caught trial was restored and finished
    history = pl.read_parquet(exp.root / "history.parquet")
    assert not history.select("trial", "epoch").is_duplicated().any()
    assert history.filter(pl.col("trial").is_in(finished["trial"].to_list())).height == trials * epochs
    # the caught trial's result.json kept A's epochs: B's Tune appended to it instead of starting it again
    rows = _rows(exp.tune_dir / ("t" + caught["trial_id"][-5:]) / "result.json")
    assert rows[0]["training_iteration"] == 1 and rows[-1].get("final")
    iterations = {rid: sorted({r["training_iteration"] for r in _rows(exp.tune_dir / ("t" + rid[-5:]) / "result.json")})
                  for rid in finished["ray_trial_id"].to_list()}
    _check_wandb(exp.root, iterations)
    s = json.loads((exp.root / "summary.json").read_text())
    assert s["trials"]["finished"] == trials and (exp.root / "report.html").exists()
    # the report names the selected models, and the experiment, by their URIs (the mirror is machine C's copy)
    assert s["directory"] == uri and s["selected_models"], s["selected_models"]
    for m in s["selected_models"]:
        assert m["model_location"].startswith(uri + "/tune/") and m["directory"] == uri, m
        assert m["model_location"] in (exp.root / "report.md").read_text()
    assert remote.exists(remote.join(uri, "report.html"))
    pt = _objects(remote.join(s3, "pretrained"), "")
    assert pt and all(k.endswith(".pt") for k in pt), pt  # the PT models, and no claim left behind
    # B's trials found on the store the PT models A's trials had trained: none trained twice among the finished
    users = finished.filter(pl.col("pt_key").is_not_null())
    assert users.height and (users.group_by("pt_key").agg((~pl.col("pt_store_hit")).sum().alias("n"))["n"]
                             <= 1).all(), users.select("trial", "pt_key", "pt_store_hit")
    assert set(users["pt_key"]) == {k.removesuffix(".pt") for k in pt}
    # the graph packs went through the store too: none in a machine's own graph cache, every one in B's mirror
    # the same bytes as on the store, and no claim left behind
    packs = _objects(remote.join(s3, "graphs"), "")
    assert packs and all(k.endswith(".tlg") for k in packs), packs
    assert not (dir_a / "cache" / "graphs").exists() and not (dir_b / "cache" / "graphs").exists()
    mirror_b = dir_b / "cache" / "remote" / "s3" / s3.removeprefix("s3://") / "graphs"
    mine = {str(f.relative_to(mirror_b)) for f in mirror_b.rglob("*.tlg")}
    assert mine, "machine B's trials took no graph pack from the store"
    for k in mine:
        assert k in packs and (mirror_b / k).read_bytes() == remote.read_bytes(remote.join(s3, "graphs", k)), k
    # every finished trial's model came down from the store (the checkpoints Tune's workers uploaded)
    from tlsearch.analysis import load_trials

    mine, _ = load_trials(exp)
    for d in mine.filter(pl.col("state") == "finished")["model_dir"].to_list():
        # repeat 0's model: model.pt, or fold 0's of a cross-validated trial (the smoke size is cross-validated)
        assert d.startswith(exp.tune_dir.as_posix()) and any((Path(d) / n).is_file()
                                                             for n in ("model.pt", "model_fold0.pt")), d
    # and the selected model predicts from the URI alone
    pred = _cli("predict", uri, "emt:alloys?n=6&seed=5", env=env_c, cwd=dir_c, timeout=300)
    assert pred.returncode == 0 and "model: study smoke" in pred.stderr, pred.stdout[-2000:] + pred.stderr[-2000:]


def _objects(uri: str, prefix: str) -> list[str]:
    import pyarrow.fs as pafs

    fs, path = remote.filesystem(uri)
    return [i.path[len(path) + 1:] for i in fs.get_file_info(pafs.FileSelector(path, allow_not_found=True,
                                                                                recursive=True))
            if i.type == pafs.FileType.File and i.path[len(path) + 1:].startswith(prefix)]
