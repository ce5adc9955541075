"""GPU check of tlsearch's training code: real CUDA trials, and two trials sharing one GPU.

Each trial in its own subprocess (CUDA memory peaks are per process). 1. data: ``emt:alloys`` target
(bulk_modulus) and PT source (formation_energy_per_atom), offline, cached in a temporary ``TLSEARCH_CACHE``.
2. ``train_trial`` on device ``cuda`` (4 ALIGNN + 4 GCN layers, hidden 256, batch 64, bf16 autocast on):
   a scratch trial (with ``output_dir``: the checkpoint is reloaded, re-scored on the test set on the GPU
   and must give the same test MAE) and a PT->FT (``finetune``) trial. Asserted: finite metrics, the
   model's parameters on CUDA, ``max_memory_allocated() > 0``, ``Trainer.amp`` and bf16 Linear outputs.
   The same scratch trial then runs a few epochs on ``cpu`` (all cores) for a GPU/CPU epoch-time ratio.
3. fractional GPU (what Ray's ``num_gpus: 0.5`` does): two identical scratch trials as two OS processes
   on the same GPU, started together behind a file barrier; epoch time alone vs together, aggregate
   throughput (2 x alone / together), peak GPU memory per process, finite metrics in both.
Epoch time = median ``EpochMetrics.seconds`` over epochs 2.. (epoch 1 is warm-up). Last lines: RATIO k=v;
exit status 1 if a check failed. Run: python benchmarks/gpu_check.py (tiny CPU smoke test: GPU_CHECK_TINY=1).
``--ray``: trials through Ray Tune with fractional GPUs instead (benchmarks/_gpu_ray.py).
"""

from __future__ import annotations

import json, math, os, shutil, statistics, subprocess, sys, tempfile, time  # noqa: E401
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
nan = float("nan")
TINY = os.environ.get("GPU_CHECK_TINY") == "1"
DEVICE = os.environ.get("GPU_CHECK_DEVICE", "cpu" if TINY else "cuda")
NCPU = os.cpu_count() or 1
if TINY:
    N, SAMPLE, EPOCHS, PT_EPOCHS, CPU_EPOCHS, BATCH, GPU_THREADS = 40, 30, 3, 2, 2, 8, 1
    MODEL = {"alignn_layers": 1, "gcn_layers": 1, "hidden_features": 16, "embedding_features": 8}
else:
    N, SAMPLE, EPOCHS, PT_EPOCHS, CPU_EPOCHS, BATCH, GPU_THREADS = 560, 448, 20, 10, 3, 64, max(1, NCPU // 2)
    MODEL = {"alignn_layers": 4, "gcn_layers": 4, "hidden_features": 256, "embedding_features": 64}
TARGET = {"dataset": f"emt:alloys?n={N}&seed=0", "property": "bulk_modulus"}
SOURCE = {"dataset": f"emt:alloys?n={N}&seed=1", "property": "formation_energy_per_atom"}


def config(mode: str, device: str, epochs: int, threads: int, cache: str, output_dir: str | None = None) -> dict:
    pt = {"pretrain": {"sources": [SOURCE], "optim": {"epochs": PT_EPOCHS, "batch_size": BATCH}}}
    pt = pt if mode == "finetune" else {}
    return {"name": f"{mode}-{device}", "mode": mode, "target": TARGET, "model": MODEL, "device": device, "amp": True,
            "threads": threads, "cache_dir": cache, "output_dir": output_dir, **pt,
            "train": {"sample_size": SAMPLE, "optim": {"epochs": epochs, "batch_size": BATCH}}}


def epoch_s(hist: list[float]) -> float:
    return statistics.median(hist[1:] if len(hist) > 1 else hist)


# ---- worker (one subprocess) ---------------------------------------------------------------------
def worker(job: dict) -> dict:
    import torch
    from tlsearch.training import config_from_dict, train_trial
    from tlsearch.training.trial import _prep, regression_metrics

    cfg = config_from_dict(job["cfg"])
    if job.get("prep"):  # only build the caches
        t = time.perf_counter()
        d, p = job["prep"]
        return print(f"[prep] {d}/{p}: {len(_prep(cfg, d, p))} structures in {time.perf_counter() - t:.1f} s") or {}
    cuda = cfg.device == "cuda"
    if job.get("barrier"):  # data loaded and CUDA context up before the start signal
        _prep(cfg, cfg.target.dataset, cfg.target.property)
        torch.zeros(1, device="cuda") if cuda else None
        Path(job["barrier"], str(os.getpid())).touch()
        for _ in range(6000):  # at most a minute
            if len(os.listdir(job["barrier"])) >= job["n_barrier"]:
                break
            time.sleep(0.01)
    seen: dict = {"epoch_end": []}

    def cb(m, trainer) -> None:
        seen["epoch_end"].append(time.time())
        if "device" not in seen:
            seen["device"], seen["amp"] = str(next(trainer.model.parameters()).device), trainer.amp
            lin = next(x for x in trainer.model.modules() if isinstance(x, torch.nn.Linear))
            lin.register_forward_hook(lambda mod, i, o: seen.__setitem__("linear_dtype", str(o.dtype)))

    t0 = time.time()
    r = train_trial(cfg, callback=cb)
    out = {"name": job["name"], "t0": t0, **seen, "seconds": r.seconds, "epochs": [m.seconds for m in r.history],
           "val": r.val, "test": r.test, "n_train": r.n_train, "n_params": r.n_params}
    if r.pretrain is not None:
        from tlsearch.training.store import PretrainStore
        entry = PretrainStore(str(Path(cfg.cache_dir) / "pretrained")).load(r.pretrain.key)
        out["pt"] = {"seconds": r.pretrain.pt_seconds, "epochs": [h["seconds"] for h in entry.meta["history"]],
                     "n_train": r.pretrain.n_train, "best_val": entry.meta["best_val"]}
    if cfg.output_dir:  # reload the checkpoint and re-score the test set on the same device
        from tlsearch.training.checkpoint import load_checkpoint
        from tlsearch.training.engine import Stepper, pick_device
        from tlsearch.training.tasks import single_task
        model, scaler, c2 = load_checkpoint(Path(cfg.output_dir) / "model.pt")
        prep = _prep(c2, c2.target.dataset, c2.target.property)
        task, test = single_task(prep, c2.target.property), prep.split.test
        pred = Stepper(model, task, scaler, c2.train.optim.loss, c2.train.optim.batch_size, pick_device(c2.device),
                       c2.amp).predict(test)
        out["ckpt"] = {"same_config": c2 == cfg, "test_mae": regression_metrics(task.y[test, 0], pred[:, 0])["mae"],
                       "predictions_file": bool(r.predictions and r.predictions.exists()),
                       "reloaded_on": str(next(model.parameters()).device)}
    if cuda:
        torch.cuda.synchronize()
        out.update(gpu=torch.cuda.get_device_name(), max_alloc_mb=torch.cuda.max_memory_allocated() / 2**20,
                   max_reserved_mb=torch.cuda.max_memory_reserved() / 2**20)
    out["finite"] = all(math.isfinite(v) for v in [r.val["mae"], r.val["rmse"], r.test["mae"], r.test["rmse"],
                                                   *out["epochs"], *(out.get("pt", {}).get("epochs", []))])
    return out


# ---- parent --------------------------------------------------------------------------------------
def launch(job: dict, tmp: Path) -> tuple[subprocess.Popen, Path]:
    res = tmp / f"{job['name']}.json"
    return subprocess.Popen([sys.executable, __file__, "--worker", json.dumps({**job, "result": str(res)})]), res


def collect(p: subprocess.Popen, res: Path, timeout: float) -> dict | None:
    try:
        rc: int | str = p.wait(timeout)
    except subprocess.TimeoutExpired:
        rc = p.kill() or "timeout"
    if rc != 0 or not res.exists():
        print(f"!! worker {res.stem} failed (exit {rc})")
        return None
    return json.loads(res.read_text())


def main() -> int:
    tmp = Path(tempfile.mkdtemp(prefix="gpu_check_"))
    cache = os.environ["TLSEARCH_CACHE"] = str(tmp / "cache")
    print(f"tiny={TINY} device={DEVICE} cpus={NCPU} N={N} sample={SAMPLE} epochs={EPOCHS} pt_epochs={PT_EPOCHS} "
          f"batch={BATCH} model={MODEL} gpu_threads={GPU_THREADS}")
    T = time.perf_counter()
    scratch = config("scratch", DEVICE, EPOCHS, GPU_THREADS, cache)
    preps = [launch({"name": f"prep{i}", "cfg": scratch, "prep": [s["dataset"], s["property"]]}, tmp)
             for i, s in enumerate((TARGET, SOURCE))]
    if any(p.wait(200) != 0 for p, _ in preps):
        return print("!! data preparation failed") or 1
    print(f"data ready in {time.perf_counter() - T:.1f} s")
    runs: dict[str, dict | None] = {}
    for name, cfg, to in (("alone", config("scratch", DEVICE, EPOCHS, GPU_THREADS, cache, str(tmp / "out")), 120),
                          ("finetune", config("finetune", DEVICE, EPOCHS, GPU_THREADS, cache), 150),
                          ("cpu", config("scratch", "cpu", CPU_EPOCHS, 1 if TINY else NCPU, cache), 120)):
        t = time.perf_counter()
        runs[name] = collect(*launch({"name": name, "cfg": cfg}, tmp), to)
        print(f"== {name}: {time.perf_counter() - t:.1f} s wall\n{json.dumps(runs[name])}")
    (barrier := tmp / "barrier").mkdir()  # fractional GPU: two trials, two processes, one GPU
    pair = [launch({"name": f"pair{i}", "cfg": scratch, "barrier": str(barrier), "n_barrier": 2}, tmp) for i in (0, 1)]
    if DEVICE == "cuda" and shutil.which("nvidia-smi"):
        t_end = time.time() + 90
        while len(os.listdir(barrier)) < 2 and time.time() < t_end:
            time.sleep(0.2)
        time.sleep(3)  # both training now: nvidia-smi should list two processes on the one GPU
        subprocess.run(["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv"])
        subprocess.run(["nvidia-smi", "--query-gpu=name,utilization.gpu,memory.used,memory.total", "--format=csv"])
    for i, (p, res) in enumerate(pair):
        runs[f"pair{i}"] = collect(p, res, 150)
        print(f"== pair{i}\n{json.dumps(runs[f'pair{i}'])}")

    fails = [k for k, v in runs.items() if v is None]
    for k, v in ((k, v) for k, v in runs.items() if v is not None):
        want = "cpu" if k == "cpu" or DEVICE == "cpu" else "cuda:0"
        checks = {"finite": v["finite"], "device": v.get("device") == want}
        if want == "cuda:0":  # really on the GPU, bf16 autocast on
            checks.update(mem=v.get("max_alloc_mb", 0) > 0, amp=v.get("amp") is True,
                          bf16=v.get("linear_dtype") == "torch.bfloat16")
        if "ckpt" in v:
            c = v["ckpt"]
            checks.update(ckpt_config=c["same_config"], ckpt_file=c["predictions_file"],
                          ckpt_mae=abs(c["test_mae"] - v["test"]["mae"]) <= 0.02 * abs(v["test"]["mae"]) + 1e-9)
        fails += (bad := [f"{k}:{c}" for c, good in checks.items() if not good])
        print(f"check {k}: {'FAILED ' + ','.join(bad) if bad else 'ok'} {checks}")
    e = {k: epoch_s(v["epochs"]) if v else nan for k, v in runs.items()}
    together = statistics.mean([e["pair0"], e["pair1"]])
    if (a := runs["pair0"]) and (b := runs["pair1"]):
        both = min(a["epoch_end"][-1], b["epoch_end"][-1]) - max(a["t0"], b["t0"])
        print(f"pair: started {abs(a['t0'] - b['t0']):.2f} s apart, both training for {both:.1f} s of "
              f"{a['epoch_end'][-1] - a['t0']:.1f} / {b['epoch_end'][-1] - b['t0']:.1f} s")
    print(f"total {time.perf_counter() - T:.1f} s; failures: {fails or 'none'}")

    def get(k: str, f: str, sub: str | None = None) -> float:
        v = (runs.get(k) or {}).get(f, nan)
        return v.get(sub, nan) if sub and isinstance(v, dict) else v
    pt = (runs["finetune"] or {}).get("pt")
    ratios = {"gpu_scratch_epoch_s": e["alone"], "gpu_ft_epoch_s": e["finetune"], "cpu_scratch_epoch_s": e["cpu"],
              "gpu_pt_epoch_s": epoch_s(pt["epochs"]) if pt else nan,
              "gpu_vs_cpu_epoch_speedup": e["cpu"] / e["alone"], "two_concurrent_epoch_s": together,
              "concurrent_slowdown": together / e["alone"],
              "concurrent_aggregate_throughput_ratio": 2 * e["alone"] / together,
              **{f"peak_gpu_{m}_mb_{k}": get(k, f"max_{m}_mb") for k in ("alone", "finetune", "pair0", "pair1")
                 for m in ("alloc", "reserved")},
              "scratch_test_mae": get("alone", "test", "mae"), "finetune_test_mae": get("finetune", "test", "mae"),
              "checks_failed": len(fails)}
    for k, v in ratios.items():
        print(f"RATIO {k}={v:.4g}" if isinstance(v, float) else f"RATIO {k}={v}")
    return 1 if fails else 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        sys.exit(Path((job := json.loads(sys.argv[2]))["result"]).write_text(json.dumps(worker(job))) and 0)
    if sys.argv[1:] == ["--ray"]:
        from benchmarks._gpu_ray import run

        sys.exit(run(TINY))
    sys.exit(main())
