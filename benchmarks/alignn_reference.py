"""The reference arm of benchmarks/transfer.py: ALIGNN trained the plain way, with no tlsearch code.

alignn's own graph builder (``build_pure_torch_graph``), alignn's own model (``ALIGNNAtomWisePure``) and a plain
PyTorch loop that does what alignn's ``train_for_folder`` does for a single property: raw targets (no scaling),
L1 loss, AdamW, OneCycleLR stepped per batch (pct_start 0.3), a shuffled pass per epoch, validation every epoch
in eval mode without gradients, the best validation epoch's weights kept (alignn's ``best_model.pt``) and scored
on the test set. Fine-tuning loads every pre-trained weight, the output layer included, and trains all layers
(the paper's ALL-UF).

Input: a JSON file written by transfer.py (structures as jarvis Atoms dicts, targets, and which ids form each
train/val/test split); output: a JSON file of test MAEs. Run as
``python benchmarks/alignn_reference.py SELECTION.json OUT.json --threads 1``.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from typing import Any

import numpy as np
import torch
from alignn.models.alignn_atomwise_pure import ALIGNNAtomWisePure, ALIGNNAtomWisePureConfig
from alignn.torch_graph_builder import batch_torch_graph_pairs, build_pure_torch_graph
from jarvis.core.atoms import Atoms


def build_graphs(atoms: dict[str, dict], cutoff: float, max_neighbors: int, three_body: float) -> dict[str, Any]:
    out = {}
    with torch.no_grad():
        for key, a in atoms.items():
            out[key] = build_pure_torch_graph(Atoms.from_dict(a), two_body_cutoff=cutoff, three_body_cutoff=three_body,
                                              max_neighbors=max_neighbors, atom_features="cgcnn")
    return out


def make_model(arch: dict[str, int], three_body: float) -> ALIGNNAtomWisePure:
    cfg = ALIGNNAtomWisePureConfig(
        name="alignn_atomwise_pure", atom_input_features=92, output_features=1, calculate_gradient=False,
        energy_mult_natoms=False, use_penalty=False, use_zbl=False, lg_on_fly=False, gradwise_weight=0.0,
        three_body_cutoff=three_body, **arch)
    return ALIGNNAtomWisePure(cfg)


def _forward(model: torch.nn.Module, graphs: dict[str, Any], keys: list[str]) -> torch.Tensor:
    g, lg = batch_torch_graph_pairs([graphs[k] for k in keys])
    return model((g, lg, None))["out"].reshape(-1)


def _mae(model: torch.nn.Module, graphs: dict[str, Any], keys: list[str], y: dict[str, float], bs: int) -> float:
    model.eval()
    err = []
    with torch.no_grad():
        for i in range(0, len(keys), bs):
            chunk = keys[i:i + bs]
            pred = _forward(model, graphs, chunk).numpy()
            err.extend(np.abs(pred - np.array([y[k] for k in chunk])))
    return float(np.mean(err))


def fit(model: torch.nn.Module, graphs: dict[str, Any], y: dict[str, float], train: list[str], val: list[str],
        epochs: int, lr: float, bs: int, wd: float, seed: int) -> tuple[float, int]:
    """Train in place; leaves the best validation epoch's weights in ``model``. Returns (best val MAE, epoch)."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=wd)
    steps = math.ceil(len(train) / bs)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, epochs=epochs, steps_per_epoch=steps, pct_start=0.3)
    rng = np.random.default_rng(seed)
    best, best_epoch, best_state = math.inf, 0, None
    for epoch in range(1, epochs + 1):
        model.train()
        order = [train[i] for i in rng.permutation(len(train))]
        for i in range(0, len(order), bs):
            chunk = order[i:i + bs]
            loss = torch.nn.functional.l1_loss(_forward(model, graphs, chunk),
                                               torch.tensor([y[k] for k in chunk], dtype=torch.float32))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        v = _mae(model, graphs, val, y, bs)
        if v < best:
            best, best_epoch = v, epoch
            best_state = {k: t.detach().clone() for k, t in model.state_dict().items()}
    assert best_state is not None
    model.load_state_dict(best_state)
    return best, best_epoch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("selection")
    ap.add_argument("out")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--pt-state", help="diagnostic: fine-tune from these weights (an alignn state dict saved with "
                    "torch.save) instead of pre-training here, e.g. tlsearch's PT model mapped by transfer.py")
    ap.add_argument("--sizes", type=int, nargs="*", help="only these FT sizes")
    ap.add_argument("--modes", nargs="*", default=["scratch", "finetune"])
    ap.add_argument("--pt-seed", type=int, help="diagnostic: pre-train with this seed instead of the selection's "
                    "seeds (settings pt_seeds)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    sel = json.load(open(args.selection))
    s = sel["settings"]
    seeds = [args.pt_seed] if args.pt_seed is not None else s.get("pt_seeds", [s["pt_seed"]])
    t0 = time.perf_counter()
    graphs = build_graphs(sel["atoms"], s["cutoff"], s["max_neighbors"], s["three_body_cutoff"])
    print(f"reference: {len(graphs)} graphs built with alignn's builder in {time.perf_counter() - t0:.0f}s", flush=True)
    y_pt = {k: float(v) for k, v in sel["pt"]["y"].items()}
    y = {k: float(v) for k, v in sel["target"]["y"].items()}
    results, pt_vals = [], []
    for n_seed, pt_seed in enumerate(seeds):  # one PT model per seed; scratch runs once per draw
        torch.manual_seed(pt_seed)
        pt_model = make_model(s["arch"], s["three_body_cutoff"])
        t0 = time.perf_counter()
        if args.pt_state:
            pt_model.load_state_dict(torch.load(args.pt_state, map_location="cpu", weights_only=True))
            pt_vals.append(_mae(pt_model, graphs, sel["pt"]["val"], y_pt, 64))  # in the given model's output units
            print(f"reference PT: weights from {args.pt_state}", flush=True)
        elif "finetune" in args.modes:
            pt_val, pt_epoch = fit(pt_model, graphs, y_pt, sel["pt"]["train"], sel["pt"]["val"], s["pt_epochs"],
                                   s["pt_lr"], s["pt_batch_size"], s["weight_decay"], pt_seed)
            pt_vals.append(pt_val)
            print(f"reference PT seed {pt_seed}: val MAE {pt_val:.4f} (best epoch {pt_epoch}) in "
                  f"{time.perf_counter() - t0:.0f}s", flush=True)
        pt_state = {k: t.clone() for k, t in pt_model.state_dict().items()}
        for draw in [d for d in sel["draws"] if not args.sizes or d["size"] in args.sizes]:
            for mode in [m for m in args.modes if m == "finetune" or n_seed == 0]:
                t0 = time.perf_counter()
                torch.manual_seed(draw["seed"])
                model = make_model(s["arch"], s["three_body_cutoff"])
                if mode == "finetune":
                    model.load_state_dict(pt_state)
                val, epoch = fit(model, graphs, y, draw["train"], draw["val"], s["ft_epochs"], s["ft_lr"],
                                 s["ft_batch_size"], s["weight_decay"], draw["seed"])
                test = _mae(model, graphs, sel["target"]["test"], y, 64)
                row = {"mode": mode, "size": draw["size"], "draw": draw["draw"], "test_mae": test, "val_mae": val,
                       "best_epoch": epoch, "seconds": time.perf_counter() - t0}
                if mode == "finetune":
                    row["pt_seed"] = pt_seed
                results.append(row)
                print(f"reference {mode:9s} size {draw['size']:4d} draw {draw['draw']}"
                      f"{f' PT seed {pt_seed}' if mode == 'finetune' else ''}: test MAE {test:.4f} "
                      f"(val {val:.4f}, best epoch {epoch}, {row['seconds']:.0f}s)", flush=True)
                json.dump({"pt_val_mae": pt_vals[0] if pt_vals else None, "pt_val_maes": pt_vals,
                           "results": results}, open(args.out, "w"))


if __name__ == "__main__":
    main()
