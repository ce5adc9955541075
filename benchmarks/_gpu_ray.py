"""``gpu_check.py --ray``: trials through Ray Tune with fractional GPUs, as a cluster runs them.

Two small studies of scratch trials on the EMT data (``tlsearch run``, local Ray): ``gpus_per_trial: 1`` (one trial
per GPU) and ``gpus_per_trial: 0.5`` (two per GPU). From each trial's result.json: its device, its peak GPU memory
(``gpu_peak_mb``, the trainer's ``torch.cuda.max_memory_allocated``), its epoch seconds (median over epochs 2..),
and how many trials ran at once (overlap of their epochs). Without a GPU (``GPU_CHECK_TINY=1``) the same studies
run on the CPU with 0 GPUs per trial: a check of the plumbing, not of GPUs (its trials are too short to count
how many ran at once). Last lines: RATIO k=v.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _spec(name: str, gpus: int, per_trial: float, tiny: bool, trials: int) -> dict:
    data = yaml.safe_load((ROOT / "search_spaces" / "smoke.yaml").read_text())
    data["name"] = name
    data["search"].update(strategy=["scratch"], ft_size=[40 if tiny else 448], batch_size=16 if tiny else 64)
    if not tiny:
        data["data"]["target"]["dataset"] = "emt:alloys?n=560&seed=0"
        data["search"]["architecture"] = {"alignn_layers": 4, "gcn_layers": 4, "hidden_features": 256,
                                          "embedding_features": 64}
    at_once = max(1, int(round(gpus / per_trial))) if gpus and per_trial else 2
    cpus = max(1, (os.cpu_count() or 2) // at_once)
    data["budget"] = {"trials": trials, "max_epochs": 4 if tiny else 15, "pt_epochs": 2, "repeats": 1}
    data["scheduler"] = {"type": "none"}
    data["resources"] = {"cpus_per_trial": cpus, "gpus_per_trial": per_trial if gpus else 0, "max_concurrent": at_once}
    data["tracking"] = {"mode": "disabled"}
    return data


def _trials(exp: Path) -> list[dict]:
    out = []
    for path in sorted(exp.glob("tune/*/result.json")):
        rows = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
        epochs = [r for r in rows if not r.get("final")]
        final = next((r for r in rows if r.get("final")), {})
        if not epochs:
            continue
        secs = [r["seconds"] for r in epochs[1:]] or [epochs[0]["seconds"]]
        out.append({"trial": rows[0]["trial_id"], "device": final.get("device"),
                    "gpu_peak_mb": final.get("gpu_peak_mb"),
                    "epoch_s": statistics.median(secs),
                    # Tune's timestamp has 1 s resolution: the trial's span from its first epoch's, and its run time
                    "start": epochs[0]["timestamp"] - epochs[0]["time_total_s"],
                    "end": epochs[0]["timestamp"] - epochs[0]["time_total_s"] + epochs[-1]["time_total_s"],
                    "finished": bool(final)})
    return out


def _at_once(trials: list[dict], slack: float = 1.0) -> int:
    """The most trials that ran at the same time (spans shortened by ``slack`` s at each end: the timestamps'
    resolution is 1 s)."""
    spans = [(t["start"] + slack, t["end"] - slack) for t in trials if t["end"] - t["start"] > 2 * slack]
    return max((sum(a <= x < b for a, b in spans) for x, _ in spans), default=0)


def run(tiny: bool) -> int:
    import torch

    gpus = torch.cuda.device_count()
    tmp = Path(tempfile.mkdtemp(prefix="gpu_ray_"))
    env = {**os.environ, "TLSEARCH_CACHE": str(tmp / "cache"), "WANDB_MODE": "disabled",
           "RAY_TMPDIR": tempfile.mkdtemp(prefix="gr", dir="/tmp")}
    print(f"--ray: gpus={gpus} tiny={tiny} cpus={os.cpu_count()}")
    found, fails = {}, []
    for name, per in (("one_per_gpu", 1.0), ("two_per_gpu", 0.5)):
        spec = tmp / f"{name}.yaml"
        spec.write_text(yaml.safe_dump(_spec(name, gpus, per, tiny, trials=2 * max(1, gpus) * (1 if per == 1 else 2))))
        proc = subprocess.run([sys.executable, "-m", "tlsearch.cli.main", "run", str(spec), "--storage",
                               str(tmp / "exp")], env=env, capture_output=True, text=True, timeout=1500, cwd=ROOT)
        trials = _trials(tmp / "exp" / name)
        found[name] = trials
        print(f"== {name}: exit {proc.returncode}; {len(trials)} trials")
        for t in trials:
            print(f"   {json.dumps(t)}")
        if proc.returncode != 0 or not trials or not all(t["finished"] for t in trials):
            fails.append(name)
            print(proc.stdout[-2000:] + proc.stderr[-2000:])
        if gpus and any(t["device"] != "cuda" or not t["gpu_peak_mb"] for t in trials):
            fails.append(f"{name}:not on the GPU")
    from benchmarks.load import stop_ray

    stop_ray(env["RAY_TMPDIR"])

    def med(name: str, key: str) -> float:
        vals = [t[key] for t in found.get(name, []) if t.get(key) is not None]
        return statistics.median(vals) if vals else float("nan")

    alone, shared = med("one_per_gpu", "epoch_s"), med("two_per_gpu", "epoch_s")
    ratios = {"ray_trials_at_once_one_per_gpu": _at_once(found.get("one_per_gpu", [])),
              "ray_trials_at_once_two_per_gpu": _at_once(found.get("two_per_gpu", [])),
              "ray_trials_per_gpu_two_per_gpu": (_at_once(found.get("two_per_gpu", [])) / gpus if gpus
                                                 else float("nan")),
              "ray_gpu_peak_mb_per_trial": med("two_per_gpu", "gpu_peak_mb"),
              "ray_epoch_s_one_per_gpu": alone, "ray_epoch_s_two_per_gpu": shared,
              "ray_throughput_two_vs_one_per_gpu": 2 * alone / shared, "ray_checks_failed": len(fails)}
    print(f"failures: {fails or 'none'}")
    for k, v in ratios.items():
        print(f"RATIO {k}={v:.4g}" if isinstance(v, float) else f"RATIO {k}={v}")
    return 1 if fails else 0
