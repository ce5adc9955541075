"""Faults in real studies: a Ray worker node dies mid-trial; the driver is SIGKILLed mid-trial and resumed.

Real Ray, real training on the smoke data, W&B offline. What must hold: every planned trial completes exactly
once in Optuna, an interrupted trial resumes from its last checkpoint (its epochs continue, they do not start
again at 1), and each trial's W&B history has every step once.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml
from rich.console import Console

from tests.search.test_run import SMOKE, _env, _ray_stop, _resume, _study

# timing-dependent (a trial must be caught mid-run): in `make test-all`, not in the default suite yet
pytestmark = pytest.mark.slow


def _rows(result_json: Path) -> list[dict]:
    rows = []
    for line in result_json.read_text().splitlines() if result_json.exists() else []:
        try:
            rows.append(json.loads(line))
        except ValueError:  # a line being written
            pass
    return rows


def _wandb_history(run_dir: Path) -> list[dict]:
    """History rows of one offline W&B run, read by wandb's own reader of the .wandb transaction log."""
    wandb = Path(sys.executable).with_name("wandb")
    out = subprocess.run([str(wandb), "leet", "inspect", "--json", str(run_dir)], capture_output=True, text=True,
                         timeout=120)
    records = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    return [r["history"]["item"] for r in records if r.get("type") == "history"]


def _wandb_runs(exp: Path) -> dict[str, list[Path]]:
    """W&B run id (= Ray trial id) -> its offline run directories, oldest first."""
    runs: dict[str, list[Path]] = {}
    for d in sorted(exp.glob("wandb/offline-run-*")):  # offline-run-<YYYYmmdd_HHMMSS>-<id>: sorted = by start
        runs.setdefault(d.name.rsplit("-", 1)[1], []).append(d)
    return runs


def _restarts(rows: list[dict]) -> list[dict]:
    """The first result of each restored attempt: Tune restarts ``iterations_since_restore`` at 1 there."""
    return [r for r in rows if r.get("iterations_since_restore") == 1 and r.get("training_iteration", 1) > 1]


def _check_wandb(exp: Path, iterations: dict[str, list[int]]) -> dict[str, int]:
    """Each of these Ray trials (id -> the iterations it reported) is one W&B run id whose history, over all its
    offline files, has each of those iterations as a step exactly once. Returns run id -> offline files."""
    runs = _wandb_runs(exp)
    assert set(iterations) <= set(runs), f"W&B run ids {sorted(runs)} vs Ray trials {sorted(iterations)}"
    for rid, want in iterations.items():
        hist = [h for d in runs[rid] for h in _wandb_history(d)]
        steps = [h["_step"] for h in hist]
        assert len(steps) == len(set(steps)), f"{rid}: a step logged twice over {len(runs[rid])} W&B runs: {steps}"
        assert sorted(steps) == want, f"{rid}: steps {steps}, iterations reported {want}"
        assert all(h["epoch"] == h["training_iteration"] == h["_step"] for h in hist if not h.get("final")), hist
    return {rid: len(runs[rid]) for rid in iterations}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spec_data(**budget) -> dict:
    data = yaml.safe_load(SMOKE.read_text())
    data["budget"].update(budget)
    data["scheduler"] = {"type": "none"}
    data["resources"]["max_failures"] = 2
    data["resources"]["checkpoint_interval_s"] = 0  # every epoch: a trial killed at any point has a checkpoint
    # a free dashboard port: another Ray on the machine may hold the default 8265
    data["cluster"] = {"dashboard_host": "127.0.0.1", "dashboard_port": _free_port()}
    return data


# a restored trial reports again the iterations after its checkpoint; Optuna keeps the first value of each step
@pytest.mark.filterwarnings("ignore:The reported value is ignored")
def test_worker_node_killed_mid_trial(tmp_path, monkeypatch):
    """Two 1-CPU worker nodes run two trials at a time; one node is killed (no graceful shutdown) while its trial
    is mid-run and a replacement node joins. The study completes with every planned trial once, and the killed
    trial resumes on another node from its last checkpoint."""
    import ray
    from ray.cluster_utils import Cluster

    from tlsearch.analysis import load_trials
    from tlsearch.search.experiment import Experiment
    from tlsearch.search.runner import run_study
    from tlsearch.search.spec import spec_from_dict

    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    trials, epochs = 4, 30  # smoke epochs take ~0.15 s: 30 leave the killer a few seconds to catch one
    spec = spec_from_dict(_spec_data(trials=trials, max_epochs=epochs, pt_epochs=2))
    exp = Experiment.create(spec, tmp_path / "exp")
    # the head runs the driver, which also writes the W&B runs (0 CPUs: no trial lands there); a dead node is declared
    # dead after about 1 s of missed health checks instead of 30 s; no dashboard (another Ray may hold its port)
    health = {"health_check_initial_delay_ms": 0, "health_check_period_ms": 500, "health_check_failure_threshold": 2}
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False,
                                                            "_system_config": health})
    killed: dict = {}
    stop = threading.Event()

    def kill_a_worker_mid_trial() -> None:
        try:
            while not stop.is_set():
                workers = {n.node_id: n for n in list(cluster.worker_nodes)}
                for path in exp.tune_dir.glob("*/result.json"):
                    rows = _rows(path)
                    last = rows[-1] if rows else {}
                    if 2 <= last.get("training_iteration", 0) <= epochs - 4 and last.get("node_id") in workers:
                        cluster.remove_node(workers[last["node_id"]], allow_graceful=False)
                        killed.update(trial=last["trial_id"], node=last["node_id"], at=last["training_iteration"])
                        cluster.add_node(num_cpus=1)
                        return
                time.sleep(0.2)
        except Exception as exc:  # noqa: BLE001 - reported by the assertions below
            killed["error"] = repr(exc)

    try:
        for _ in range(2):
            cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        killer = threading.Thread(target=kill_a_worker_mid_trial, daemon=True)
        killer.start()
        results = run_study(spec, exp, Console(file=open(os.devnull, "w")), address=cluster.address)
        stop.set()
        killer.join(timeout=30)
        assert "trial" in killed, f"no trial was caught mid-run on a worker node: {killed}"
        assert len(results) == trials and not results.errors, [str(e) for e in results.errors]
    finally:
        stop.set()
        ray.shutdown()
        cluster.shutdown()

    # Optuna: the planned trials, each COMPLETE once, each run by its own Ray trial
    _, study = _study(exp.root)
    assert len(study.trials) == trials and all(t.state.name == "COMPLETE" for t in study.trials), \
        [(t.number, t.state.name) for t in study.trials]
    ray_ids = [t.user_attrs["ray_trial_id"] for t in study.trials]
    dirs = {p.parent for p in exp.tune_dir.glob("*/result.json")}
    assert len(set(ray_ids)) == trials and len(dirs) == trials
    # the killed trial: one failure, then a restart on another node from its last checkpoint
    rows = _rows(next(d for d in dirs if d.name == "t" + killed["trial"][-5:]) / "result.json")
    restarts = _restarts(rows)
    assert len(restarts) == 1, f"the killed trial should restart exactly once: {restarts}"
    first = restarts[0]
    before = rows[:rows.index(first)]
    checkpoints = sorted(r["training_iteration"] for r in before if r.get("checkpoint_dir_name"))
    # from its last checkpoint, or the one before when the node died while the last one was being persisted
    # (result.json already names it, Tune had not registered it yet)
    assert first["epoch"] == first["training_iteration"] and first["training_iteration"] - 1 in checkpoints[-2:], \
        (killed, first, checkpoints)
    assert before[-1]["training_iteration"] >= killed["at"] and first["node_id"] != killed["node"]
    epochs_seen = [r["epoch"] for r in rows if not r.get("final")]
    assert sorted(set(epochs_seen)) == list(range(1, epochs + 1)), epochs_seen
    assert rows[-1].get("final") and rows[-1]["epochs_run"] == epochs
    # no other trial restarted
    others = [d for d in dirs if d.name != "t" + killed["trial"][-5:]]
    assert not any(_restarts(_rows(d / "result.json")) for d in others)
    # the analysis and `tlsearch status` see every trial finished (the retry's error.txt is no failure), with
    # one history row per epoch
    from tlsearch.search.status import failures

    assert (exp.tune_dir / ("t" + killed["trial"][-5:]) / "error.txt").exists() and failures(exp) == []
    table, history = load_trials(exp.root)
    assert table["state"].to_list() == ["finished"] * trials
    assert table["epochs_run"].to_list() == [epochs] * trials
    assert history.height == trials * epochs and not history.select("trial", "epoch").is_duplicated().any()
    # W&B: one run per trial (the driver lived, so the killed trial's run continued), each step once
    files = _check_wandb(exp.root, {rid: list(range(1, epochs + 2)) for rid in ray_ids})
    assert set(files.values()) == {1} and set(_wandb_runs(exp.root)) == set(ray_ids), files


def _start_driver(tmp_path: Path, data: dict, env: dict) -> tuple[subprocess.Popen, Path, Path]:
    """`tlsearch run` of this spec in its own session (so the test can SIGKILL it whole): the driver, the
    experiment directory and the driver's log."""
    spec = tmp_path / "space.yaml"
    spec.write_text(yaml.safe_dump(data))
    log = tmp_path / "driver.log"
    driver = subprocess.Popen([sys.executable, "-m", "tlsearch.cli.main", "run", str(spec), "--storage",
                               str(tmp_path / "exp")], env=env, stdout=log.open("w"), stderr=subprocess.STDOUT,
                              start_new_session=True)
    return driver, tmp_path / "exp" / "smoke", log


def _in_snapshot(exp: Path, trial_id: str) -> int:
    """The last training_iteration Tune's newest experiment snapshot holds for this trial (0: not in it)."""
    snaps = sorted(exp.glob("tune/experiment_state-*.json"), key=lambda p: p.stat().st_mtime)
    try:
        trials = json.loads(snaps[-1].read_text())["trial_data"] if snaps else []
    except ValueError:  # being written
        return 0
    for state, meta in trials:
        if json.loads(state).get("trial_id") == trial_id:
            return int((json.loads(meta).get("last_result") or {}).get("training_iteration", 0))
    return 0


@pytest.mark.filterwarnings("ignore:The reported value is ignored")
def test_driver_sigkill_mid_trial_resume_continues_wandb_runs(tmp_path):
    """SIGKILL the driver while a trial is mid-run, then `tlsearch resume`: the planned trials complete once each,
    the interrupted trial restarts from its checkpoint (epochs continue, they do not start again at 1) and
    reports again the iterations after it, and each trial's W&B history has every step exactly once: the
    interrupted trial gets a second offline run with the same id (offline W&B cannot reopen a run file), marked
    resumed, holding the steps the first one lacks."""
    env = _env(tmp_path)
    env["TUNE_GLOBAL_CHECKPOINT_S"] = "1"  # Tune snapshots the experiment every 1 s instead of >= 10 s: a trial
    # is in a snapshot early in its run, so the test catches one mid-run quickly
    trials, epochs = 4, 40  # smoke epochs take ~0.15 s
    data = _spec_data(trials=trials, max_epochs=epochs, pt_epochs=2)
    data["resources"]["checkpoint_interval_s"] = 0.5  # checkpoints lag the reports: a restart replays some
    driver, exp, log = _start_driver(tmp_path, data, env)
    try:
        # kill once a trial is mid-run and in Tune's snapshot at iteration >= 3 (so the resumed Tune restores it;
        # the checkpoint that snapshot knows is older than the trial's last epoch, so it reports some iterations
        # again after the restore)
        deadline, caught = time.time() + 400, None
        while time.time() < deadline and caught is None and driver.poll() is None:
            for path in exp.glob("tune/*/result.json"):
                rows = _rows(path)
                last = rows[-1] if rows else {"final": True}
                if last.get("final") or not last["training_iteration"] < epochs - 1:
                    continue
                snap = _in_snapshot(exp, last["trial_id"])
                if snap >= 3:
                    caught = dict(last, snapshot_iteration=snap)
                    break
            time.sleep(0.2)
        assert caught is not None, f"no trial caught mid-run (driver exit {driver.poll()}): {log.read_text()[-3000:]}"
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait(timeout=60)
    finally:
        _ray_stop(env)
    names, study = _resume(exp, env)
    assert names == ["smoke"]
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    others = [t for t in study.trials if t.state.name != "COMPLETE"]
    assert len(complete) == trials and all(t.state.name == "FAIL" for t in others), \
        [(t.number, t.state.name) for t in study.trials]
    ray_ids = {t.user_attrs["ray_trial_id"] for t in complete}
    assert len(ray_ids) == trials and caught["trial_id"] in ray_ids
    # the caught trial restarted once, from a checkpoint it had written (not from scratch), and finished
    rows = _rows(exp / "tune" / ("t" + caught["trial_id"][-5:]) / "result.json")
    restarts = _restarts(rows)
    assert len(restarts) == 1 and rows[-1].get("final"), (caught, restarts)
    first = restarts[0]
    before = rows[:rows.index(first)]
    checkpoints = {r["training_iteration"] for r in before if r.get("checkpoint_dir_name")}
    assert first["epoch"] == first["training_iteration"] and first["training_iteration"] - 1 in checkpoints
    # with checkpoints every ~0.5 s the restart point is usually older than the last iteration the killed
    # driver recorded, so the restored trial reports some iterations again; W&B must then hold them once
    replayed = first["training_iteration"] <= max(r["training_iteration"] for r in before)
    # the analysis: one history row per epoch, every trial finished
    from tlsearch.analysis import load_trials

    table, history = load_trials(exp)
    assert sorted(table.filter(table["state"] == "finished")["ray_trial_id"].to_list()) == sorted(ray_ids)
    assert not history.select("trial", "epoch").is_duplicated().any()
    assert history.filter(history["trial"].is_in([t.number for t in complete])).height == trials * epochs
    # W&B: each completed trial's history holds every iteration it reported exactly once over its offline runs
    iterations = {rid: sorted({r["training_iteration"] for r in _rows(exp / "tune" / ("t" + rid[-5:]) / "result.json")})
                  for rid in ray_ids}
    files = _check_wandb(exp, iterations)
    assert files[caught["trial_id"]] == 2, (files, f"replayed iterations: {replayed}")
    from tlsearch.search.tracking import wandb_records

    second = _wandb_runs(exp)[caught["trial_id"]][1]
    (run,) = [r.run for r in wandb_records(next(second.glob("run-*.wandb"))) if r.WhichOneof("record_type") == "run"]
    assert run.resume, "the second W&B run of the resumed trial is marked resumed (wandb sync appends it)"


def test_driver_sigkill_mid_bracket_resume_keeps_successive_halving(tmp_path):
    """scheduler sh: SIGKILL the driver while the first rung's bracket is filling (some trials wait there,
    paused), then `tlsearch resume`: Tune restores no scheduler state, the brackets come back from
    sh_state.json (a trial started after Tune's last snapshot is planned again with its configuration), and the
    study ends as an uninterrupted one would: each of the 7 strategy combinations once, 4 stopped at rung 1, 2
    at rung 3, 1 running every epoch and repeat; no history row twice; W&B steps once each."""
    env = _env(tmp_path)
    env["TUNE_GLOBAL_CHECKPOINT_S"] = "1"
    data = _spec_data(trials=7, max_epochs=4, pt_epochs=2)
    data["budget"]["repeats"] = 2
    data["scheduler"] = {"type": "sh", "grace_period": 1, "reduction_factor": 3}
    data["resources"]["checkpoint_interval_s"] = 30  # the default: only the rung epochs are checkpointed
    driver, exp, log = _start_driver(tmp_path, data, env)
    try:
        deadline, at_rung = time.time() + 400, 0
        while time.time() < deadline and at_rung < 3 and driver.poll() is None:
            at_rung = sum(1 for p in exp.glob("tune/*/result.json") if any(r.get("epoch") == 1 for r in _rows(p)))
            time.sleep(0.2)
        assert at_rung >= 3, f"no 3 trials at rung 1 (driver exit {driver.poll()}): {log.read_text()[-3000:]}"
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait(timeout=60)
    finally:
        _ray_stop(env)
    state = json.loads((exp / "sh_state.json").read_text())
    assert sum(len(b["members"]) for bs in state.values() for b in bs) >= 3  # the brackets as the driver left them
    _, study = _resume(exp, env)
    ran = [t for t in study.trials if t.state.name != "FAIL"]
    combos = sorted((t.params["strategy"], t.params.get("freeze", "")) for t in ran)
    assert combos == sorted([("scratch", "")] + [(s, f) for s in ("finetune", "mpt")
                                                 for f in ("all_unfrozen", "2b", "last_layer")]), combos
    from tlsearch.analysis import load_trials

    table, history = load_trials(exp)
    assert not history.select("trial", "epoch").is_duplicated().any()
    import polars as pl

    ran_history = history.filter(pl.col("trial").is_in([t.number for t in ran]))
    last = ran_history.group_by("trial").agg(pl.col("epoch").max())["epoch"].to_list()
    # the brackets' decisions: 7 -> 3 at rung 1 -> 1 at rung 3, which ran to the end
    (bracket,) = json.loads((exp / "sh_state.json").read_text())["40"]
    assert (len(bracket["members"]), bracket["alive"], len(bracket["done"]), bracket["stopped"], bracket["k"]) \
        == (7, [], 1, 6, 2), bracket
    assert table.filter(table["state"] == "finished").height == 1 and 4 in last
    # each trial's last epoch in its history is where its bracket left it (rung 1, rung 3, or the end), or one
    # later: Tune starts every restored unfinished trial, one waiting at a rung too, which then runs an epoch
    # before it pauses again; a trial stopped at the resume may miss the rows its killed driver had not copied
    # to the experiment directory yet (Tune syncs every 1 s)
    epochs = {n: sorted(ran_history.filter(pl.col("trial") == n)["epoch"].to_list()) for n in ran_history["trial"]}
    assert all(e in (1, 2, 3, 4) for e in last) and sum(e <= 2 for e in last) <= 4, (epochs, bracket)
    iterations = {}
    for d in exp.glob("tune/t*/"):
        rows = _rows(d / "result.json")
        if rows and rows[0]["trial_id"] in {t.user_attrs["ray_trial_id"] for t in ran}:
            iterations[rows[0]["trial_id"]] = sorted({r["training_iteration"] for r in rows})
    assert len(iterations) >= 3  # (see above: a trial stopped at the resume may have no row in the directory)
    _check_wandb(exp, iterations)


def _lose_wandb_tail(exp: Path, run_id: str, keep: list[dict], env: dict) -> None:
    """The state a SIGKILL leaves when it hits a trial's W&B run in the window between Tune writing result.json
    and the W&B writer writing the run: the trial's offline runs are replaced by one holding only ``keep``
    (an empty list: a run with no history), written by wandb itself."""
    import shutil

    for d in _wandb_runs(exp).get(run_id, []):
        shutil.rmtree(d)
    code = ("import json, sys, wandb\n"
            "run = wandb.init(project='tlsearch-smoke', group='smoke', id=sys.argv[1], dir=sys.argv[2], "
            "mode='offline', settings=wandb.Settings(console='off', silent=True, disable_git=True))\n"
            "for row in json.loads(sys.argv[3]):\n"
            "    run.log({'epoch': row['epoch'], 'training_iteration': row['training_iteration'],"
            " 'val_mae': row['val_mae']}, step=row['training_iteration'])\n"
            "run.finish()\n")
    proc = subprocess.run([sys.executable, "-c", code, run_id, str(exp), json.dumps(keep)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_resume_backfills_wandb_of_trials_that_never_report_again(tmp_path):
    """Deterministic form of the SIGKILL window of the bracket test: trials whose result.json holds epochs
    that their W&B runs lost, and that the resumed driver never runs again (they ended under the killed
    driver). After `tlsearch resume`, each trial's W&B history holds every iteration of its result.json
    exactly once: one trial lost its whole run, one has a run with no history (the failure seen under load:
    `steps [], iterations reported [1]`), one kept only its first epoch, one lost nothing."""
    env = _env(tmp_path)
    data = _spec_data(trials=4, max_epochs=3, pt_epochs=2)
    data["scheduler"] = {"type": "none"}
    spec = tmp_path / "space.yaml"
    spec.write_text(yaml.safe_dump(data))
    exp = tmp_path / "exp" / "smoke"
    try:
        proc = subprocess.run([sys.executable, "-m", "tlsearch.cli.main", "run", str(spec), "--storage",
                               str(tmp_path / "exp")], env=env, capture_output=True, text=True, timeout=600)
    finally:
        _ray_stop(env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = {}
    for d in exp.glob("tune/t*/"):
        rows = [r for r in _rows(d / "result.json") if not r.get("final")]
        results[rows[0]["trial_id"]] = rows
    assert len(results) == 4 and all(len(rows) == 3 for rows in results.values()), results
    lost_run, empty_run, first_only, intact = sorted(results)
    for d in _wandb_runs(exp)[lost_run]:
        import shutil

        shutil.rmtree(d)
    _lose_wandb_tail(exp, empty_run, [], env)
    _lose_wandb_tail(exp, first_only, results[first_only][:1], env)
    # a trial the dead driver started after Tune's last snapshot (the resumed Tune never knows it): its first
    # epoch reached result.json, its W&B run holds nothing (seen through Ray Jobs: `ray job stop`, then resume)
    orphan = "0rphan01"
    src = next(d for d in exp.glob("tune/t*/") if _rows(d / "result.json")[0]["trial_id"] == intact)
    odir = exp / "tune" / ("t" + orphan[-5:])
    odir.mkdir()
    (odir / "params.json").write_text((src / "params.json").read_text())
    (odir / "result.json").write_text(json.dumps({**results[intact][0], "trial_id": orphan}) + "\n")
    _lose_wandb_tail(exp, orphan, [], env)
    assert [h["_step"] for h in _wandb_history(_wandb_runs(exp)[first_only][0])] == [1]
    assert _wandb_history(_wandb_runs(exp)[empty_run][0]) == []
    _resume(exp, env)
    iterations = {rid: sorted({r["training_iteration"] for r in _rows(exp / "tune" / ("t" + rid[-5:]) /
                                                                         "result.json")}) for rid in [*results, orphan]}
    assert iterations[orphan] == [1]
    files = _check_wandb(exp, iterations)
    # the intact trial got no second run; each damaged one got one more (resumed where W&B held a run)
    assert files == {lost_run: 1, empty_run: 2, first_only: 2, intact: 1, orphan: 2}, files
