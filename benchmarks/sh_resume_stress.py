"""SIGKILL a successive-halving study's driver at varied points and resume it, many times (no pytest).

Each run: the smoke study with scheduler sh (7 trials, rungs at epochs 1 and 3, 2 repeats), killed once k
trials (random 1..6) reached rung 1, plus a random 0-3 s; the killed directory is copied to at_kill/ (replay it
with `tlsearch resume`), then `tlsearch resume` must end within 300 s (a hang is dumped with py-spy when it is
installed) with the brackets an uninterrupted study ends with: one bracket of 7, 1 done, 6 stopped.
Usage: python benchmarks/sh_resume_stress.py RUNS [SEED]   (runs under /tmp/sh_resume_stress; results: benchmarks/results/sh_resume_stress.txt)
"""
import json, os, shutil, signal, subprocess, sys, time, random
from pathlib import Path
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from tests.search.test_run import _env, _ray_stop
from tests.search.test_faults import _spec_data, _start_driver, _rows

def check(exp):
    st = json.loads((exp / "sh_state.json").read_text())
    out = []
    for g, bs in st.items():
        for b in bs:
            out.append((len(b["members"]), b["alive"], len(b["done"]), b["stopped"], b["k"], b.get("orphans")))
    return "OK" if out == [(7, [], 1, 6, 2, [])] else f"BRACKETS {out}"

def one(k, extra, out):
    tmp = Path(out); shutil.rmtree(tmp, ignore_errors=True); tmp.mkdir(parents=True)
    env = _env(tmp); env["TUNE_GLOBAL_CHECKPOINT_S"] = "1"; env["PYTHONPATH"] = str(REPO)
    data = _spec_data(trials=7, max_epochs=4, pt_epochs=2)
    data["budget"]["repeats"] = 2
    data["scheduler"] = {"type": "sh", "grace_period": 1, "reduction_factor": 3}
    data["resources"]["checkpoint_interval_s"] = 30
    driver, exp, log = _start_driver(tmp, data, env)
    try:
        deadline, at = time.time() + 400, 0
        while time.time() < deadline and at < k and driver.poll() is None:
            at = sum(1 for p in exp.glob("tune/*/result.json") if any(r.get("epoch") == 1 for r in _rows(p)))
            time.sleep(0.2)
        time.sleep(extra)
        os.killpg(driver.pid, signal.SIGKILL); driver.wait(timeout=60)
    finally:
        _ray_stop(env)
    shutil.copytree(exp, tmp / "at_kill", symlinks=True)
    rlog = tmp / "resume.log"
    t0 = time.time()
    p = subprocess.Popen([sys.executable, "-m", "tlsearch.cli.main", "resume", str(exp)], env=env,
                         stdout=rlog.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
    try:
        rc = p.wait(timeout=300)
    except subprocess.TimeoutExpired:
        if shutil.which("py-spy"):
            subprocess.run(["py-spy", "dump", "--pid", str(p.pid)], stdout=(tmp / "pyspy.txt").open("w"),
                           stderr=subprocess.STDOUT)
        os.killpg(p.pid, signal.SIGKILL); rc = "HANG"
    finally:
        _ray_stop(env)
    ok = "" if rc != 0 else check(tmp / "exp" / "smoke")
    print(f"k={k} extra={extra:.1f} at_kill={at} rc={rc} resume_s={time.time()-t0:.0f} dir={tmp} {ok}", flush=True)
    return rc

WORK = "/tmp/sh_resume_stress"

if __name__ == "__main__":
    random.seed(int(sys.argv[2]) if len(sys.argv) > 2 else 0)
    for i in range(int(sys.argv[1])):
        k = random.choice([1, 2, 3, 4, 5, 6]); extra = random.choice([0, 0, 0.5, 1.0, 2.0, 3.0])
        rc = one(k, extra, f"{WORK}/run{i}")
        if rc != 0:
            print("STOP: non-zero", flush=True)
