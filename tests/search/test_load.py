"""Load: 200 very short trials, two at a time, through `tlsearch run` (benchmarks/load.py runs the same study and
prints the numbers). Slow (15 minutes on 2 shared cores): excluded from `make test`, run by `make test-all`."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

from benchmarks.load import report, run_load
from tlsearch.search.tracking import wandb_history


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_200_short_trials_complete_with_bounded_memory_and_a_wandb_run_each():
    # a short directory: Ray's unix sockets live under RAY_TMPDIR, and pytest's tmp_path is too long for them
    tmp = Path(tempfile.mkdtemp(prefix="tlsload-"))
    try:
        # run_load raises unless: the driver exits 0, 200 Optuna trials all COMPLETE, 200 Ray trials, one each,
        # and exactly one W&B offline run per Ray trial with every step, the final summary and the exit record
        r = run_load(200, tmp)
        print(report(r))
        assert r["wandb_runs"] == r["wandb_runs_complete"] == 200
        # bounded memory: no growth from the first to the last quarter of the study beyond noise
        assert r["driver_peak_q4_mib"] <= 1.25 * r["driver_peak_q1_mib"] + 64, r
        assert r["tree_pss_peak_q4_mib"] <= 1.25 * r["tree_pss_peak_q1_mib"] + 256, r
        assert r["driver_peak_mib"] < 2048 and r["tree_pss_peak_mib"] < 8192, r
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def test_wandb_reader_matches_wandb(tmp_path):
    """tlsearch's reader of W&B's .wandb transaction log (used above and by the resumed W&B runs) reads what
    wandb's own reader (`wandb leet inspect`) reads, on a run with enough records to span several blocks."""
    import json
    import os
    import subprocess
    import sys

    script = ("import sys, wandb\n"
              "run = wandb.init(project='p', id='reader1', mode='offline', dir=sys.argv[1])\n"
              "for i in range(1, 400):\n"
              "    run.log({'x': i / 3, 'name': 'a' * (i % 50), 'nested': {'y': i}, 'flag': i % 2 == 0}, step=i)\n"
              "run.finish()\n")
    env = dict(os.environ, WANDB_MODE="offline", WANDB_SILENT="true", HOME=str(tmp_path))
    env.pop("WANDB_API_KEY", None)
    subprocess.run([sys.executable, "-c", script, str(tmp_path)], env=env, check=True, timeout=120)
    (f,) = tmp_path.glob("wandb/offline-run-*/run-reader1.wandb")
    assert f.stat().st_size > 3 * 32 * 1024  # several LevelDB blocks: records split across blocks are read too
    out = subprocess.run([str(Path(sys.executable).with_name("wandb")), "leet", "inspect", "--json", str(f)],
                         capture_output=True, text=True, timeout=120, env=env).stdout
    theirs = [json.loads(ln)["history"]["item"] for ln in out.splitlines() if '"type":"history"' in ln]
    ours = wandb_history(f)
    assert len(ours) == 399 and ours == theirs
