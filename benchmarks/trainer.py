"""Training epoch time: tlsearch's Trainer vs alignn's own trainer (``alignn.train_alignn.train_for_folder``).

Same real structures, same model configuration, same batch size, side by side in one run:

- data: the first ``--n`` records of the ``matminer2018:dielectric_constant`` pool (held-out test set left
  out), property ``n`` (refractive index); the first 90 % train, the last 10 % validation, on both sides.
  alignn reads them as POSCAR files + ``id_prop.csv`` (its folder format, the ``train_alignn.py`` path);
  tlsearch uses ``tlsearch.prepared.prepare`` (cached graph pack).
- alignn: ``train_for_folder`` with model ``alignn_atomwise_pure`` (pure-torch graphs, no DGL model),
  ``neighbor_strategy="pure_torch"``, LMDB dataset, ``num_workers=0``, ``keep_data_order`` so the split is
  ours, the test set set to a copy of the validation set (see "val MAE" below).
- tlsearch: ``tlsearch.training.engine.Trainer`` on ``PropertyModel(ModelSpec(...))`` (the same
  ``ALIGNNAtomWisePure`` body + a Linear head, i.e. alignn's ``fc``).
- both: 8 A cutoff, 12 neighbours, every bond pair as a triplet (three_body_cutoff = cutoff = 8 A; alignn's
  default would be 3.5 A), cgcnn atom features (92), edge 80 / triplet 40 RBF bins, angle cosines read from
  the line graph (``lg_on_fly=False``), no gradient/penalty/ZBL/energy-times-atoms terms, L1 loss (alignn
  hard-codes ``nn.L1Loss`` for ``alignn_*`` models; tlsearch ``loss='l1'``), AdamW lr 1e-3 wd 1e-5,
  OneCycle pct_start 0.3 stepped per batch, batch size 32, float32, ``torch.set_num_threads(2)``.
  ``--size small``: 2 ALIGNN + 2 GCN layers, hidden 64, embedding 32 (tlsearch's ModelSpec defaults);
  ``--size default``: 4 + 4 layers, hidden 256, embedding 64 (alignn's and the paper's defaults).
  Differences that are each trainer's own design and stay: alignn drops the last partial batch of train
  and validation (``drop_last=True``), runs validation with autograd on, trains on raw targets and keeps
  biases/norms out of weight decay; tlsearch uses every structure, runs validation under ``no_grad``
  in eval mode and trains on targets min-max scaled to [-1, 1].

Timing. Each trainer runs in its own subprocess (``--repeats 2``: alignn, tlsearch, alignn, tlsearch) so
threads, caches and peak memory are its own. An epoch is one training pass + one validation pass:
  alignn   - its own ``train_ep_time + val_ep_time`` (taken from its ``print_train_val_loss`` call, hooked);
             it excludes the checkpoint/JSON writes it does after each epoch (reported separately as the
             wall time between epochs) and the LMDB graph build before training (reported as data prep);
  tlsearch - ``EpochMetrics.seconds`` (train + validation pass), split into the two passes by wrapping
             ``Trainer.run``.
With ``--epochs >= 3`` epoch 1 is a warm-up and left out; the median (and best) over the remaining epochs
of all repeats is reported. ``epoch_speedup_vs_alignn`` = alignn epoch s / tlsearch epoch s. Because
alignn drops partial batches it processes fewer structures per epoch; ``train_throughput_speedup_vs_alignn``
compares training structures per second instead.

val MAE after the same number of epochs, physical units (refractive index), final-epoch weights, every
validation structure: tlsearch's ``EpochMetrics.val_mae`` of the last epoch; for alignn the MAE of its
``Test_results.json``, whose "test" set is a copy of the validation set (batch size 1, no ``drop_last``;
alignn does not scale targets, and its model has LayerNorm and no dropout, so train/eval mode agree).
alignn's own per-epoch validation loss (L1 on raw targets, full batches only) is shown for reference.

Peak memory: ``ru_maxrss`` of each child (whole process: data loading, graph/LMDB build, training), and
the peak RSS during training only (``VmHWM`` after resetting it through ``/proc/self/clear_refs``).

Usage: python benchmarks/trainer.py [--n 600] [--epochs 5] [--size small|default] [--repeats 1]
       python benchmarks/trainer.py --profile [--size default] [--n 600]   (torch.profiler, one tlsearch epoch)
Last lines: RATIO <name>=<value>.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("DGLBACKEND", "pytorch")
REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

DATASET, PROP = "matminer2018:dielectric_constant", "n"
RESULT_TAG = "TRAINER_BENCH_RESULT "
SIZES = {
    "small": {"alignn_layers": 2, "gcn_layers": 2, "hidden_features": 64, "embedding_features": 32},
    "default": {"alignn_layers": 4, "gcn_layers": 4, "hidden_features": 256, "embedding_features": 64},
}
GRAPH = {"cutoff": 8.0, "max_neighbors": 12, "three_body_cutoff": 8.0}
BATCH, LR, WD, THREADS = 32, 1e-3, 1e-5, 2


# ---- memory helpers ------------------------------------------------------------------------------
def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def _status_mb(field: str) -> float:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return float("nan")


def _reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); ``ru_maxrss`` follows it, so read that first."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class _Mem:
    """Whole-process peak (ru_maxrss) and the peak from :meth:`start_phase` on."""

    def __init__(self) -> None:
        self.before_phase = 0.0
        self.rss_at_phase = float("nan")
        self.resettable = False

    def start_phase(self) -> None:
        self.before_phase = _maxrss_mb()
        self.rss_at_phase = _status_mb("VmRSS")
        self.resettable = _reset_peak()

    def report(self) -> dict[str, float]:
        end = _maxrss_mb()
        return {"peak_rss_mb": max(self.before_phase, end), "rss_at_train_start_mb": self.rss_at_phase,
                "train_peak_rss_mb": _status_mb("VmHWM") if self.resettable else float("nan")}


def _set_threads() -> None:
    import torch

    torch.set_num_threads(THREADS)


# ---- data (parent) -------------------------------------------------------------------------------
def _select(n: int):
    from tlsearch.prepared import prepare

    prep = prepare(DATASET, prop=PROP)
    pool = [int(i) for i in prep.split.pool[:n]]
    n_train = round(0.9 * len(pool))
    return prep, pool[:n_train], pool[n_train:]


def write_alignn_folder(prep, train_idx: list[int], val_idx: list[int], root: Path) -> dict:
    """POSCARs + id_prop.csv (no header): train, then validation, then the validation set again as alignn's
    test set (keep_data_order: ids[:n_train] train, ids[-(n_val+n_test):-n_test] val, ids[-n_test:] test)."""
    from jarvis.io.vasp.inputs import Poscar

    root.mkdir(parents=True, exist_ok=True)
    values = prep.values(PROP)
    names = {}
    for i in train_idx + val_idx:
        rec = prep.dataset.records[i]
        name = f"{i:05d}_{rec.id}.vasp".replace("/", "_")
        Poscar(rec.atoms).write_file(str(root / name))
        names[i] = name
    with open(root / "id_prop.csv", "w") as f:
        for i in train_idx + val_idx + val_idx:
            f.write(f"{names[i]},{float(values[i])!r}\n")
    return names


def graph_parity(prep, idx: list[int], root: Path, names: dict) -> tuple[int, int]:
    """Structures whose alignn-side graph (pure_torch builder on the re-read POSCAR, as alignn's LMDB build
    does) has the same bond count, triplet count and sorted bond lengths as tlsearch's cached graph."""
    import numpy as np
    import torch
    from alignn.torch_graph_builder import build_pure_torch_graph
    from jarvis.core.atoms import Atoms

    pack = prep.graphs.pack
    same = 0
    for i in idx:
        a = Atoms.from_poscar(str(root / names[i]))
        with torch.no_grad():
            g, lg = build_pure_torch_graph(a, two_body_cutoff=GRAPH["cutoff"],
                                           three_body_cutoff=GRAPH["three_body_cutoff"],
                                           max_neighbors=GRAPH["max_neighbors"], atom_features="cgcnn")
        mine = pack.graph(int(prep.rows[i]))
        ok = (len(g.src) == len(mine["src"]) and len(lg.src) == len(mine["lg_src"]) and np.allclose(
            np.sort(g.edata["r"].norm(dim=1).numpy()), np.sort(np.linalg.norm(mine["r"], axis=1)), atol=1e-4))
        same += bool(ok)
    return same, len(idx)


def alignn_config(spec: dict, out_dir: Path) -> dict:
    size = SIZES[spec["size"]]
    n_train, n_val = len(spec["train_idx"]), len(spec["val_idx"])
    return {
        "dataset": "user_data", "target": "target", "id_tag": "jid", "atom_features": "cgcnn",
        "neighbor_strategy": "pure_torch", "use_canonize": True, "compute_line_graph": True,
        "cutoff": GRAPH["cutoff"], "cutoff_extra": 3.0, "max_neighbors": GRAPH["max_neighbors"],
        "three_body_cutoff": GRAPH["three_body_cutoff"],
        "random_seed": 123, "n_train": n_train, "n_val": n_val, "n_test": n_val, "keep_data_order": True,
        "epochs": spec["epochs"], "batch_size": BATCH, "learning_rate": LR, "weight_decay": WD,
        "criterion": "l1", "optimizer": "adamw", "scheduler": "onecycle",
        "num_workers": 0, "pin_memory": False, "save_dataloader": False, "use_lmdb": True,
        "read_existing": False, "write_checkpoint": True, "write_predictions": False, "store_outputs": False,
        "progress": False, "log_tensorboard": False, "dtype": "float32", "output_dir": str(out_dir),
        "model": {
            "name": "alignn_atomwise_pure", "atom_input_features": 92, "edge_input_features": 80,
            "triplet_input_features": 40, **size, "output_features": 1,
            "calculate_gradient": False, "gradwise_weight": 0.0, "stresswise_weight": 0.0,
            "atomwise_weight": 0.0, "atomwise_output_features": 0, "additional_output_features": 0,
            "energy_mult_natoms": False, "use_penalty": False, "use_zbl": False, "lg_on_fly": False,
            "three_body_cutoff": GRAPH["three_body_cutoff"],
        },
    }


# ---- children ------------------------------------------------------------------------------------
def child_alignn(work: Path) -> dict:
    """Runs with cwd = ``work/alignn_run``: alignn writes its LMDB caches into the working directory."""
    spec = json.loads((work / "spec.json").read_text())
    mem = _Mem()
    _set_threads()
    t_import = time.perf_counter()
    import alignn.train as atrain
    import alignn.train_alignn as ta
    import numpy as np

    epochs: list[dict] = []
    marks: dict[str, float] = {}
    loaders: dict[str, int] = {}
    orig_print, orig_loaders = atrain.print_train_val_loss, ta.get_train_val_loaders

    def hooked_print(*args, **kwargs):
        now = time.perf_counter()
        epochs.append({"epoch": int(args[0]) + 1, "train_loss": float(args[1]), "val_loss": float(args[7]),
                       "train_s": float(args[13]), "val_s": float(args[14]), "t_end": now})
        return orig_print(*args, **kwargs)

    def hooked_loaders(*args, **kwargs):
        t = time.perf_counter()
        out = orig_loaders(*args, **kwargs)
        marks["data_s"] = time.perf_counter() - t
        tr, va = out[0], out[1]
        loaders.update(train_batches=len(tr), val_batches=len(va), n_train=len(tr.dataset), n_val=len(va.dataset))
        mem.start_phase()
        marks["train_start"] = time.perf_counter()
        return out

    atrain.print_train_val_loss = hooked_print
    ta.get_train_val_loaders = hooked_loaders
    out_dir = work / "alignn_out"
    cfg_path = work / "alignn_config.json"
    t0 = time.perf_counter()
    ta.train_for_folder(root_dir=str(work / "alignn_data"), config_name=str(cfg_path), output_dir=str(out_dir),
                        epochs=spec["epochs"], batch_size=BATCH, file_format="poscar")
    t_done = time.perf_counter()
    total = t_done - t0
    m = mem.report()
    prev = marks["train_start"]
    post = t_done - epochs[-1]["t_end"]
    for e in epochs:
        e["wall_s"], prev = e["t_end"] - prev, e["t_end"]
        e["seconds"] = e["train_s"] + e["val_s"]
        del e["t_end"]
    # val MAE: alignn's test set is the validation set again (batch 1, no drop_last), final-epoch weights
    res = json.loads((out_dir / "Test_results.json").read_text())
    pred = np.array([np.ravel(r["pred_out"])[0] for r in res], dtype=float)
    targ = np.array([np.ravel(r["target_out"])[0] for r in res], dtype=float)
    ids = [r["id"] for r in res]
    want = [spec["names"][str(i)] for i in spec["val_idx"]]
    assert ids == want, "alignn's test set is not the validation set"
    return {"side": "alignn", "epochs": epochs, "val_mae": float(np.abs(pred - targ).mean()), "n_val_eval": len(res),
            "total_s": total, "data_s": marks["data_s"], "import_s": t0 - t_import,
            "post_train_s": post,
            **loaders, **m}


def _tlsearch_trainer(spec: dict):
    import numpy as np
    import torch

    from tlsearch.prepared import prepare
    from tlsearch.training.config import ModelSpec, OptimSpec
    from tlsearch.training.engine import Trainer
    from tlsearch.training.model import PropertyModel
    from tlsearch.training.tasks import Scaler, single_task

    prep = prepare(DATASET, prop=PROP)
    tr, va = np.asarray(spec["train_idx"]), np.asarray(spec["val_idx"])
    assert [prep.dataset.ids[i] for i in spec["val_idx"]] == spec["val_ids"], "data differs from the parent's"
    task = single_task(prep, PROP)
    scaler = Scaler.fit(task.y[tr], spec.get("scaling", "standard"))
    torch.manual_seed(0)
    model = PropertyModel(ModelSpec(backend="pure", edge_input_features=80, triplet_input_features=40,
                                    **SIZES[spec["size"]]))
    optim = OptimSpec(epochs=spec["epochs"], lr=LR, batch_size=BATCH, weight_decay=WD, loss="l1")
    amp = spec.get("precision", "fp32") == "bf16"  # tlsearch's default is fp32; bf16 autocast where the CPU has it
    return Trainer(model, task, scaler, optim, tr, va, torch.device("cpu"), amp=amp, seed=0), prep


def child_tlsearch(work: Path) -> dict:
    spec = json.loads((work / "spec.json").read_text())
    mem = _Mem()
    _set_threads()
    t0 = time.perf_counter()
    trainer, prep = _tlsearch_trainer(spec)
    data_s = time.perf_counter() - t0
    passes: list[tuple[bool, float]] = []
    orig_run = trainer.run

    def timed_run(idx, train):
        t = time.perf_counter()
        out = orig_run(idx, train)
        passes.append((bool(train), time.perf_counter() - t))
        return out

    trainer.run = timed_run  # instance attribute: Trainer.fit calls self.run
    epochs: list[dict] = []

    def cb(m, _trainer):
        tr_s = sum(s for t, s in passes if t)
        va_s = sum(s for t, s in passes if not t)
        passes.clear()
        epochs.append({"epoch": m.epoch, "train_loss": m.train_loss, "val_loss": m.val_loss, "val_mae": m.val_mae,
                       "train_s": tr_s, "val_s": va_s, "seconds": m.seconds})

    mem.start_phase()
    t1 = time.perf_counter()
    trainer.fit(cb)
    train_total = time.perf_counter() - t1
    return {"side": "tlsearch", "epochs": epochs, "val_mae": epochs[-1]["val_mae"], "n_val_eval": len(spec["val_idx"]),
            "total_s": time.perf_counter() - t0, "data_s": data_s, "train_total_s": train_total,
            "train_batches": -(-len(spec["train_idx"]) // BATCH), "val_batches": -(-len(spec["val_idx"]) // BATCH),
            "n_train": len(spec["train_idx"]), "n_val": len(spec["val_idx"]),
            "graph_stats": prep.graph_stats(), **mem.report()}


def run_child(side: str, work: Path, log: Path) -> dict:
    cwd = work / f"{side}_run"
    if cwd.exists():
        shutil.rmtree(cwd)
    cwd.mkdir()
    if side == "alignn":  # a fresh output folder per run
        shutil.rmtree(work / "alignn_out", ignore_errors=True)
    env = dict(os.environ, OMP_NUM_THREADS=str(THREADS), MKL_NUM_THREADS=str(THREADS), DGLBACKEND="pytorch",
               PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    t = time.perf_counter()
    p = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", side, "--work", str(work)],
                       cwd=cwd, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t
    with open(log, "a") as f:
        f.write(f"==== {side} rc={p.returncode} ({wall:.1f} s)\n---- stdout\n{p.stdout}\n---- stderr\n{p.stderr}\n")
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith(RESULT_TAG)]
    if p.returncode != 0 or not lines:
        tail = "\n".join((p.stdout + "\n" + p.stderr).splitlines()[-40:])
        raise SystemExit(f"{side} child failed (rc {p.returncode}); full log in {log}\n{tail}")
    res = json.loads(lines[-1][len(RESULT_TAG):])
    res["child_wall_s"] = wall
    return res


# ---- profile -------------------------------------------------------------------------------------
def profile(args: argparse.Namespace) -> None:
    """torch.profiler over one tlsearch training pass (after a warm-up pass); prints where the time goes."""
    import numpy as np
    import torch
    from torch.profiler import ProfilerActivity, record_function
    from torch.profiler import profile as tprofile

    _set_threads()
    prep, train_idx, val_idx = _select(args.n)
    spec = {"train_idx": train_idx, "val_idx": val_idx, "val_ids": [prep.dataset.ids[i] for i in val_idx],
            "size": args.size, "epochs": 2}
    trainer, _ = _tlsearch_trainer(spec)
    task, model = trainer.task, trainer.model
    orig_batch, orig_fwd = task.batch, model.forward

    def batch(idx):
        with record_function("tl::batch_assembly"):
            return orig_batch(idx)

    def fwd(*a, **k):
        with record_function("tl::forward"):
            return orig_fwd(*a, **k)

    task.batch, model.forward = batch, fwd
    groups = {"atom_embedding": "embeddings", "edge_embedding": "embeddings", "angle_embedding": "embeddings"}
    for i in range(SIZES[args.size]["alignn_layers"]):
        groups[f"alignn_layers.{i}.node_update"] = "alignn node_update (crystal graph)"
        groups[f"alignn_layers.{i}.edge_update"] = "alignn edge_update (line graph)"
    for i in range(SIZES[args.size]["gcn_layers"]):
        groups[f"gcn_layers.{i}"] = "gcn layers (crystal graph)"
    open_ranges: list = []

    def pre(label):
        def hook(_m, _inp):
            r = record_function("fwd::" + label)
            r.__enter__()
            open_ranges.append(r)
        return hook

    def post(_m, _inp, _out):
        open_ranges.pop().__exit__(None, None, None)

    def ranged(label, fn):
        def wrapped(*a, **k):
            with record_function("fwd::" + label):
                return fn(*a, **k)
        return wrapped

    for name, label in groups.items():
        mod = model.body.get_submodule(name)
        if name.startswith("alignn_layers."):  # ALIGNNConvPure calls these through forward_tensors
            mod.forward_tensors = ranged(label, mod.forward_tensors)
        else:
            mod.register_forward_pre_hook(pre(label))
            mod.register_forward_hook(post)
    order = np.asarray(train_idx)
    t = time.perf_counter()
    trainer.run(order, train=True)
    warm = time.perf_counter() - t
    with tprofile(activities=[ProfilerActivity.CPU], record_shapes=False) as prof:
        t = time.perf_counter()
        with record_function("tl::train_pass"):
            trainer.run(order, train=True)
        secs = time.perf_counter() - t
    print(f"profile: tlsearch, size {args.size}, {len(order)} train structures, batch {BATCH}, torch threads "
          f"{torch.get_num_threads()}: warm-up pass {warm:.2f} s, profiled pass {secs:.2f} s (profiler overhead incl.)")
    ka = prof.key_averages()
    tot = {e.key: e.cpu_time_total for e in ka}
    train_us = tot.get("tl::train_pass", secs * 1e6)
    for key in ("tl::batch_assembly", "tl::forward", "Optimizer.step#AdamW.step",
                "Optimizer.zero_grad#AdamW.zero_grad"):
        if key in tot:
            print(f"  {key:40s} {tot[key] / 1e6:8.2f} s  {100 * tot[key] / train_us:5.1f} %")
    bwd = sum(e.self_cpu_time_total for e in ka if e.key.startswith("autograd::engine::evaluate_function"))
    bwd_total = sum(e.cpu_time_total for e in ka if e.key.startswith("autograd::engine::evaluate_function"))
    print(f"  {'backward (evaluate_function, total)':40s} {bwd_total / 1e6:8.2f} s  {100 * bwd_total / train_us:5.1f} %"
          f"   (self {bwd / 1e6:.2f} s)")
    fwd_total = tot.get("tl::forward", 0.0)
    print("  forward by block (each row's CPU total; its backward is not attributed):")
    for label in dict.fromkeys(groups.values()):
        us = tot.get("fwd::" + label, 0.0)
        print(f"    {label:38s} {us / 1e6:8.2f} s  {100 * us / max(fwd_total, 1):5.1f} % of forward")
    print(ka.table(sort_by="self_cpu_time_total", row_limit=30, max_name_column_width=60))


# ---- parent --------------------------------------------------------------------------------------
def _summ(runs: list[dict], key: str, skip_first: bool) -> list[float]:
    return [e[key] for r in runs for e in r["epochs"] if not (skip_first and e["epoch"] == 1)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=600, help="structures (first N of the pool), 90/10 train/val")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--size", choices=sorted(SIZES), default="default")
    ap.add_argument("--repeats", type=int, default=1, help="runs per side, interleaved alignn, tlsearch, ...")
    ap.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                    help="tlsearch side: fp32 (its default) or bf16 autocast (where the CPU has AVX512-BF16/AMX)")
    ap.add_argument("--scaling", choices=["standard", "minmax"], default="standard",
                    help="tlsearch side target scaling (default: tlsearch's default, standard)")
    ap.add_argument("--profile", action="store_true", help="profile one tlsearch training epoch instead")
    ap.add_argument("--keep", metavar="DIR", help="work in DIR and keep it (logs, alignn outputs)")
    ap.add_argument("--child", choices=["alignn", "tlsearch"], help=argparse.SUPPRESS)
    ap.add_argument("--work", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.child:
        res = (child_alignn if args.child == "alignn" else child_tlsearch)(Path(args.work))
        print(RESULT_TAG + json.dumps(res), flush=True)
        return
    if args.profile:
        profile(args)
        return

    t_all = time.perf_counter()
    work = Path(args.keep).resolve() if args.keep else Path(tempfile.mkdtemp(prefix="tlsearch-trainer-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    log = work / "children.log"
    log.write_text("")
    prep, train_idx, val_idx = _select(args.n)
    if len(val_idx) < 1 or len(train_idx) < BATCH:
        raise SystemExit(f"--n {args.n} is too small: {len(train_idx)} train / {len(val_idx)} val")
    names = write_alignn_folder(prep, train_idx, val_idx, work / "alignn_data")
    same, total = graph_parity(prep, train_idx + val_idx, work / "alignn_data", names)
    spec = {"size": args.size, "epochs": args.epochs, "precision": args.precision, "scaling": args.scaling,
            "train_idx": train_idx, "val_idx": val_idx,
            "val_ids": [prep.dataset.ids[i] for i in val_idx], "names": {str(k): v for k, v in names.items()}}
    (work / "spec.json").write_text(json.dumps(spec))
    (work / "alignn_config.json").write_text(json.dumps(alignn_config(spec, work / "alignn_out"), indent=1))
    stats = prep.graph_stats()
    del prep

    size = SIZES[args.size]
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch threads {THREADS}, "
          f"python {platform.python_version()}, load average {os.getloadavg()[0]:.2f} "
          "(other processes share the cores)")
    print(f"data: {DATASET} property {PROP}, first {len(train_idx) + len(val_idx)} of the pool: "
          f"{len(train_idx)} train / {len(val_idx)} val; graphs: 8 A cutoff, 12 neighbours, all triplets "
          f"(mean per structure in the dataset: {stats['n_nodes']:.1f} atoms, {stats['n_edges']:.0f} bonds, "
          f"{stats['n_triplets']:.0f} triplets)")
    print(f"graph parity (alignn builder on the written POSCARs vs tlsearch cache): {same}/{total} identical")
    print(f"model: size {args.size} = {size['alignn_layers']} ALIGNN + {size['gcn_layers']} GCN layers, hidden "
          f"{size['hidden_features']}, embedding {size['embedding_features']}; batch {BATCH}, L1, AdamW lr {LR} "
          f"wd {WD}, OneCycle; {args.epochs} epochs; repeats {args.repeats}; work dir {work}")

    runs: dict[str, list[dict]] = {"alignn": [], "tlsearch": []}
    for r in range(args.repeats):
        for side in ("alignn", "tlsearch"):
            res = run_child(side, work, log)
            runs[side].append(res)
            ep = ", ".join(f"{e['seconds']:.2f}" for e in res["epochs"])
            print(f"  run {r + 1} {side:8s}: epochs [s] {ep}; val MAE {res['val_mae']:.4f}; peak RSS "
                  f"{res['peak_rss_mb']:.0f} MB; child wall {res['child_wall_s']:.1f} s; load average after "
                  f"{os.getloadavg()[0]:.2f}", flush=True)

    skip = args.epochs >= 3
    note = "epoch 1 left out as warm-up" if skip else "all epochs"
    print(f"\nper-epoch seconds ({note}; train + val pass):")
    summary = {}
    for side in ("alignn", "tlsearch"):
        rs = runs[side]
        ep, tr, va = (_summ(rs, k, skip) for k in ("seconds", "train_s", "val_s"))
        r0 = rs[0]
        summary[side] = {"median": statistics.median(ep), "best": min(ep), "train": statistics.median(tr),
                         "val": statistics.median(va), "rss": max(x["peak_rss_mb"] for x in rs),
                         "train_rss": max(x["train_peak_rss_mb"] for x in rs),
                         "mae": statistics.median(x["val_mae"] for x in rs),
                         "n_train_seen": r0["train_batches"] * BATCH if side == "alignn" else r0["n_train"]}
        s = summary[side]
        print(f"  {side:8s}: median {s['median']:.2f} s, best {s['best']:.2f} s (train pass {s['train']:.2f} s, "
              f"val pass {s['val']:.2f} s); {r0['train_batches']} train / {r0['val_batches']} val batches per epoch")
        for r_i, x in enumerate(rs):
            rows = "; ".join(f"e{e['epoch']} {e['train_s']:.2f}+{e['val_s']:.2f}" for e in x["epochs"])
            extra = ""
            if side == "alignn":
                walls = ", ".join(f"{e['wall_s']:.2f}" for e in x["epochs"])
                extra = (f"\n             wall between epochs incl. its checkpoint writes [s]: {walls}; "
                         f"LMDB graph build {x['data_s']:.1f} s; after training (test pass, saves) "
                         f"{x['post_train_s']:.1f} s")
            else:
                extra = f"\n             prepare() (cached graphs) + model/trainer set-up {x['data_s']:.1f} s"
            print(f"    run {r_i + 1} train+val [s]: {rows}{extra}")
    print("\nval MAE after the same epochs (refractive index n, final weights, all "
          f"{len(val_idx)} val structures):")
    for side in ("alignn", "tlsearch"):
        x = runs[side][0]
        hist = ", ".join(f"{e['val_loss']:.4f}" for e in x["epochs"])
        what = "alignn's own val loss per epoch (L1, raw units, full batches only)" if side == "alignn" else \
            "val loss per epoch (L1, scaled units)"
        print(f"  {side:8s}: {summary[side]['mae']:.4f}   [{what}: {hist}]")
    print("\npeak RSS (whole child process / during training only):")
    for side in ("alignn", "tlsearch"):
        x = runs[side][0]
        print(f"  {side:8s}: {summary[side]['rss']:.0f} MB / {summary[side]['train_rss']:.0f} MB "
              f"(RSS when training started {x['rss_at_train_start_mb']:.0f} MB)")
    a, t = summary["alignn"], summary["tlsearch"]
    thr_a = a["n_train_seen"] / a["train"]
    thr_t = t["n_train_seen"] / t["train"]
    print(f"\ntraining throughput: alignn {thr_a:.1f}, tlsearch {thr_t:.1f} structures/s "
          f"(alignn drops the last partial batch: {a['n_train_seen']} vs {t['n_train_seen']} per epoch)")
    if args.keep:
        print(f"whole run: {time.perf_counter() - t_all:.1f} s; children's logs and alignn's outputs in {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
        print(f"whole run: {time.perf_counter() - t_all:.1f} s")
    print(f"RATIO epoch_speedup_vs_alignn={a['median'] / t['median']:.3f}")
    print(f"RATIO epoch_speedup_best_vs_alignn={a['best'] / t['best']:.3f}")
    print(f"RATIO train_throughput_speedup_vs_alignn={thr_t / thr_a:.3f}")
    print(f"RATIO val_mae_ratio={t['mae'] / a['mae']:.3f}")
    print(f"RATIO peak_rss_ratio={t['rss'] / a['rss']:.3f}")
    print(f"RATIO train_peak_rss_ratio={t['train_rss'] / a['train_rss']:.3f}")
    print(f"RATIO peak_rss_mb_alignn={a['rss']:.0f}")
    print(f"RATIO peak_rss_mb_tlsearch={t['rss']:.0f}")


if __name__ == "__main__":
    main()
