"""Real studies on the smoke space: Ray Tune + OptunaSearch + ASHA + W&B offline + the dashboard.

These run real Ray and real training on tiny EMT data; each takes about a minute on 2 cores.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from benchmarks.load import stop_ray
from tlsearch.search.experiment import REUSED_ATTR

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "search_spaces" / "smoke.yaml"


def _env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    # Ray's session under a short directory of its own (socket paths are limited to ~107 characters), so
    # that _ray_stop stops this test's Ray and nobody else's
    ray_tmp = tempfile.mkdtemp(prefix="tlsr", dir="/tmp")
    env.update(TLSEARCH_CACHE=str(tmp_path / "cache"), WANDB_MODE="offline", PYTHONUNBUFFERED="1",
               HOME=str(tmp_path / "home"), RAY_TMPDIR=ray_tmp)
    env.pop("RAY_AUTH_TOKEN_PATH", None)
    env.pop("WANDB_API_KEY", None)
    (tmp_path / "home").mkdir(exist_ok=True)
    return env


def _spec(tmp_path: Path, **changes) -> Path:
    data = yaml.safe_load(SMOKE.read_text())
    for key, value in changes.items():
        section, _, field = key.partition("__")
        if field:
            data[section][field] = value
        else:
            data[section] = value
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _cli(*args, env, timeout=600, **kw):
    return subprocess.run([sys.executable, "-m", "tlsearch.cli.main", *args], env=env, capture_output=True,
                          text=True, timeout=timeout, **kw)


def _run_data(tmp_path: Path, env, data: dict, *args: str) -> str:
    """`tlsearch run` on the spec ``data`` (written to ``<name>.yaml``) with storage ``tmp_path/exp``; it must exit
    0 (its output is in the failure message). Returns its stdout."""
    spec = tmp_path / f"{data['name']}.yaml"
    spec.write_text(yaml.safe_dump(data))
    try:
        proc = _cli("run", str(spec), "--storage", str(tmp_path / "exp"), *args, env=env, timeout=900)
    finally:
        _ray_stop(env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def _ray_stop(env):
    """Stop the Ray processes started under this test's RAY_TMPDIR; never `ray stop --force`, which kills
    every Ray on the machine, other test sessions' included."""
    stop_ray(env["RAY_TMPDIR"])


def _resume(exp: Path, env, timeout: int = 420) -> tuple:
    """`tlsearch resume EXP` (Ray stopped afterwards, whatever happens); it must succeed within ``timeout`` s
    (a smoke study resumes in about a minute; a hang fails with its output and the brackets, if any, instead of
    pytest's timeout). Returns _study(exp)."""
    try:
        proc = _cli("resume", str(exp), env=env, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        sh = exp / "sh_state.json"
        pytest.fail(f"tlsearch resume still running after {timeout} s; its output ends: {out[-3000:]}\n"
                    f"sh_state.json: {sh.read_text() if sh.exists() else '-'}")
    finally:
        _ray_stop(env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return _study(exp)


def _study(exp: Path, name: str = "smoke"):
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    storage = JournalStorage(JournalFileBackend(str(exp / "optuna.journal")))
    return [s.study_name for s in optuna.get_all_study_summaries(storage)], optuna.load_study(
        study_name=name, storage=storage)


def _wandb_summary(run_dir: Path) -> dict:
    wandb = Path(sys.executable).with_name("wandb")
    out = subprocess.run([str(wandb), "leet", "inspect", "--summary", "--json", str(run_dir)], capture_output=True,
                         text=True, timeout=120)
    return json.loads(out.stdout)


EVAL_SET = {"dataset": "emt:alloys?n=30&seed=7", "property": "bulk_modulus", "label": "EMT alloys, seed 7"}


def test_smoke_study_end_to_end(tmp_path):
    """The smoke study with an out-of-domain evaluation set (issue 14.4): every finished trial is scored on it,
    and trials.parquet, the report, summary.json, W&B and `tlsearch status` show it."""
    env = _env(tmp_path)
    data = yaml.safe_load(SMOKE.read_text())["data"]
    try:
        proc = _cli("run", str(_spec(tmp_path, data={**data, "eval_sets": [EVAL_SET]})), "--storage",
                    str(tmp_path / "exp"), env=env)
    finally:
        _ray_stop(env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert "Ray dashboard: http://127.0.0.1:" in out
    assert "W&B: offline" in out and "wandb sync" in out
    # one line per dataset before the trials (issue 14.5)
    assert "data (target): emt:alloys?n=80&seed=0/bulk_modulus: 80 used, 0 skipped" in out
    assert "data (eval_sets.0): EMT alloys, seed 7: 30 used, 0 skipped" in out
    exp = tmp_path / "exp" / "smoke"
    names, study = _study(exp)
    assert names == ["smoke"] and len(study.trials) == 5
    assert all(t.state.name in ("COMPLETE", "PRUNED") for t in study.trials)
    # every trial is a W&B run whose offline log holds its metrics
    runs = sorted(exp.rglob("offline-run-*"))
    assert len(runs) == 5
    summaries = [_wandb_summary(r) for r in runs]
    assert all(s["project"] == "tlsearch-smoke" and "val_mae" in s["summary"] for s in summaries)
    finished = [s for s in summaries if s["summary"].get("final")]
    assert finished and all("test_mae" in s["summary"] for s in finished)
    # status works from the directory alone
    st = _cli("status", str(exp), env=env, timeout=120)
    assert st.returncode == 0 and "best so far" in st.stdout and "5 of 5 trials" in st.stdout
    # the evaluation set: scored for every finished trial, in W&B, trials.parquet, the report and status
    ref = f"{EVAL_SET['dataset']}/{EVAL_SET['property']}"
    assert all(s["summary"][f"eval/{ref}/mae"] > 0 for s in finished)
    import polars as pl

    trials = pl.read_parquet(exp / "trials.parquet").filter(pl.col("state") == "finished")
    assert trials.height == len(finished) and all(json.loads(e)[ref] > 0 for e in trials["eval_mae"])
    summary = json.loads((exp / "summary.json").read_text())
    fams = [f for z in summary["by_ft_size"] for f in z["families"]]
    assert summary["eval_sets"] == [ref] and fams and all(f["eval_mae"][ref] > 0 for f in fams)
    roles = [(q["role"], q["used"]) for q in summary["data"]]
    assert len(roles) == 6 and roles[0] == ("data.target", 80) and roles[-1] == ("data.eval_sets.0", 30), roles
    report = (exp / "report.md").read_text()
    assert "Out-of-domain evaluation sets" in report and "EMT alloys, seed 7" in report.split("Out-of-domain")[1]
    wide = _cli("status", str(exp), env={**env, "COLUMNS": "400"}, timeout=120).stdout  # no folded cells
    assert "eval MAE" in wide and "EMT alloys, seed 7=" in wide


def test_resume_after_driver_sigkill(tmp_path):
    """SIGKILL the driver mid-study; `tlsearch resume` finishes the planned trials in the same Optuna study."""
    env = _env(tmp_path)
    spec = _spec(tmp_path, budget={"trials": 6, "max_epochs": 4, "pt_epochs": 2, "repeats": 1},
                 scheduler={"type": "none"})
    exp = tmp_path / "exp" / "smoke"
    driver = subprocess.Popen([sys.executable, "-m", "tlsearch.cli.main", "run", str(spec), "--storage",
                               str(tmp_path / "exp")], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    try:
        deadline = time.time() + 400
        while time.time() < deadline:
            if (exp / "optuna.journal").exists():
                _, study = _study(exp)
                if sum(t.state.name == "COMPLETE" for t in study.trials) >= 2:
                    break
            time.sleep(2)
        else:
            pytest.fail("no two trials completed in time")
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait(timeout=60)
    finally:
        _ray_stop(env)
    _, before = _study(exp)
    done_before = {t.number for t in before.trials if t.state.name == "COMPLETE"}
    names, after = _resume(exp, env)
    assert names == ["smoke"], "resume must continue the same Optuna study, not start a new one"
    # repeated suggestions answered from an earlier trial ran nothing (no Ray trial): not among the planned 6
    reused = [t for t in after.trials if REUSED_ATTR in t.user_attrs]
    ran = [t for t in after.trials if REUSED_ATTR not in t.user_attrs]
    complete = [t for t in ran if t.state.name == "COMPLETE"]
    others = [t for t in ran if t.state.name != "COMPLETE"]
    by_number = {t.number: t for t in after.trials}
    assert all(t.params == by_number[t.user_attrs[REUSED_ATTR]].params for t in reused)
    # exactly the planned 6 complete: a searcher that lost its state would plan 6 more on top; the only
    # extras are trials the killed driver had started after Tune's last snapshot, closed as FAIL
    assert len(complete) == 6 and done_before - {t.number for t in reused} <= {t.number for t in complete}, \
        [(t.number, t.state.name, t.user_attrs, t.params) for t in after.trials]
    assert len(others) <= 2 and all(t.state.name == "FAIL" for t in others)
    numbers = [t.number for t in after.trials]
    assert len(numbers) == len(set(numbers))


def test_successive_halving_study_screens_the_strategy_grid(tmp_path):
    """scheduler sh with a budget that holds the smoke space's strategy grid (scratch + 3 freezes x PT->FT and
    MPT = 7): each combination is tried once; at rung 1 the best 3 go on, at rung 3 the best 1, which runs to
    the end; paused trials resume from their rung checkpoint (each epoch reported and logged to W&B once)."""
    from tests.search.test_faults import _check_wandb, _rows

    env = _env(tmp_path)
    spec = _spec(tmp_path, budget={"trials": 7, "max_epochs": 4, "pt_epochs": 2, "repeats": 2},
                 scheduler={"type": "sh", "grace_period": 1, "reduction_factor": 3})
    try:
        proc = _cli("run", str(spec), "--storage", str(tmp_path / "exp"), env=env)
    finally:
        _ray_stop(env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    exp = tmp_path / "exp" / "smoke"
    _, study = _study(exp)
    combos = sorted((t.params["strategy"], t.params.get("freeze", "")) for t in study.trials)
    assert combos == sorted([("scratch", "")] + [(s, f) for s in ("finetune", "mpt")
                                                 for f in ("all_unfrozen", "2b", "last_layer")]), combos
    epochs, iterations = {}, {}
    for d in (exp / "tune").glob("t*/"):
        rows = [r for r in _rows(d / "result.json") if not r.get("final")]
        es = [r["epoch"] for r in rows]
        assert es == sorted(set(es)), (d.name, es)  # resumed from the rung checkpoint: no epoch twice
        epochs[d.name] = max(es)
        iterations[rows[0]["trial_id"]] = sorted(r["training_iteration"] for r in _rows(d / "result.json"))
    assert sorted(epochs.values()) == [1, 1, 1, 1, 3, 3, 4], epochs  # 7 -> 3 at rung 1 -> 1 at rung 3
    finals = [t for t in study.trials if t.user_attrs.get("finished")]
    assert len(finals) == 1  # one survivor ran every epoch and both repeats
    _check_wandb(exp, iterations)
    from tlsearch.analysis.report import build_report

    rep = build_report(exp)
    c = rep.summary["compute"]
    assert c["stopped_early"] == 6 and c["ft_trial_epochs"] == 4 * 1 + 2 * 3 + 4 * 2, c  # the survivor: 2 repeats


def test_time_budget_stops_trials_as_a_budget_not_a_crash(tmp_path):
    """budget.time_budget_s reached while trials run: they are 'stopped: time budget' with their epochs and last
    validation MAE, not orphans of a crashed driver marked failed (issue 17.1)."""
    import polars as pl

    env = _env(tmp_path)
    budget = {"trials": 2, "max_epochs": 100000, "pt_epochs": 1, "repeats": 1, "time_budget_s": 90}
    spec = _spec(tmp_path, budget=budget,
                 search={**yaml.safe_load(SMOKE.read_text())["search"], "strategy": ["scratch"]},
                 scheduler={"type": "none"})  # only the budget stops them (ASHA would stop one at a rung)
    try:
        proc = _cli("run", str(spec), "--storage", str(tmp_path / "exp"), env=env)
    finally:
        _ray_stop(env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "orphaned" not in proc.stdout and "stopped by the study's time budget (90 s)" in proc.stdout, proc.stdout[-3000:]
    exp = tmp_path / "exp" / "smoke"
    _, study = _study(exp)
    assert [t.state.name for t in study.trials] == ["PRUNED", "PRUNED"]
    trials = pl.read_parquet(exp / "trials.parquet")
    assert trials["state"].to_list() == ["stopped_budget"] * 2 and trials["error"].is_null().all()
    assert (trials["epochs_run"] > 0).all() and trials["val_mae"].is_not_null().all()
    st = _cli("status", str(exp), env=env, timeout=120)
    # the state column wraps "stopped: time budget" over lines
    assert st.stdout.count("stopped:") == 2 and "budget" in st.stdout and "fail" not in st.stdout, st.stdout
    summary = json.loads((exp / "summary.json").read_text())
    assert "no trial finished (2 stopped by the time budget); best partial validation MAE so far" in summary[
        "conclusions"][0]
    # a resume of the ended study says nothing again about trials an earlier driver closed by the budget
    try:
        again = _cli("resume", str(exp), env=env)
    finally:
        _ray_stop(env)
    assert again.returncode == 0 and "time budget (90 s)" not in again.stdout, again.stdout[-3000:]


def _median_replay(trials: list[tuple[str, list[float], bool]], grace: int, min_samples: int,
                   until: int) -> list[int | None]:
    """Ray's median stopping rule, one per FT size, replayed on trials that ran one at a time: (size, epoch
    values, finished) in run order -> the epoch each one stops at (None: it ran to the end). As in Tune, a
    stopped trial's last result reaches the rule twice (the result, then its completion), a finished one's
    summary counts as a result one past the last epoch, and no result after ``until`` is passed on."""
    import statistics

    seen: list[tuple[str, list[tuple[int, float]]]] = []  # (size, (epoch, value) results the rule holds)
    out: list[int | None] = []
    for size, values, finished in trials:
        stop = None
        for epoch in range(grace, min(len(values), until) + 1):
            means = [statistics.mean(v for e, v in rs if grace <= e <= epoch)
                     for s, rs in seen if s == size and rs[-1][0] >= epoch]
            if len(means) >= min_samples and statistics.median(means) < min(values[:epoch]):
                stop = epoch
                break
        held = list(enumerate(values[:stop or until], start=1))
        held += held[-1:] if stop else [(len(values) + 1, math.inf)]  # inf: the summary is past every epoch
        seen.append((size, held))
        out.append(stop)
    return out


def test_median_study_stops_trials_per_ft_size(tmp_path):
    """scheduler median on the smoke space, scratch only, two FT sizes, one trial at a time (so the rule's
    inputs are known): the study finishes, some trials stop early, each where Ray's median rule applied within
    its own FT size says it must (a replay on the trials' reported epochs), and never on the last epoch."""
    import polars as pl

    from tests.search.test_faults import _rows

    env = _env(tmp_path)
    search = {**yaml.safe_load(SMOKE.read_text())["search"], "strategy": ["scratch"], "ft_size": [20, 40],
              "ft_lr": {"low": 1e-8, "high": 0.02, "log": True}}  # from no learning at all to fast learning
    spec = _spec(tmp_path, search=search, budget={"trials": 10, "max_epochs": 6, "pt_epochs": 1, "repeats": 1},
                 scheduler={"type": "median", "grace_period": 1, "min_samples_required": 1},
                 resources={"cpus_per_trial": 1, "max_concurrent": 1})
    try:
        proc = _cli("run", str(spec), "--storage", str(tmp_path / "exp"), env=env)
    finally:
        _ray_stop(env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    exp = tmp_path / "exp" / "smoke"
    _, study = _study(exp)
    assert len(study.trials) == 10 and all(t.state.name in ("COMPLETE", "PRUNED") for t in study.trials)
    trials = pl.read_parquet(exp / "trials.parquet").sort("trial")
    values = {}
    for d in (exp / "tune").glob("t*/"):
        rows = _rows(d / "result.json")
        values[rows[0]["trial_id"]] = [r["val_mae"] for r in rows if not r.get("final")]
    runs = [(r["ft_size"], values[r["ray_trial_id"]], r["state"] == "finished") for r in trials.iter_rows(named=True)]
    stops = _median_replay(runs, grace=1, min_samples=1, until=5)
    states = trials["state"].to_list()
    assert states == ["finished" if s is None else "stopped_early" for s in stops], (states, stops, runs)
    assert [len(v) for _, v, _ in runs] == [6 if s is None else s for s in stops], (stops, runs)
    assert states.count("stopped_early") >= 1, runs
    # one median over both sizes would have stopped other trials: a flat trial's error is ~3x larger at size 20
    assert _median_replay([("", v, f) for _, v, f in runs], grace=1, min_samples=1, until=5) != stops
    for size in ("20", "40"):  # the first trial of a size has no other of its size to be compared with
        first = next(i for i, (s, _, _) in enumerate(runs) if s == size)
        assert states[first] == "finished", (size, states)
