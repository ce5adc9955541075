"""``tlsearch export``: a study's selected model as a self-contained directory.

    <OUT_DIR>/<experiment>-ft<size>/
        model.pt, model_repeat<i>.pt   the model of every repeat: weights, target scaler, TrainConfig
        model.json                     what it is: target, selection, metrics, graph settings, PT lineage, per-repeat
                                       config and scaler, file checksums
        predictions.parquet            the first repeat's validation and held-out test predictions, when kept
        README.md                      the model card

``load_model(DIR)`` (:mod:`tlsearch.training.predict`) and ``tlsearch predict DIR STRUCTURES`` use it. The
selection (which trial, its metrics, lineage) comes in as a plain dict from the analysis, which reads no weights.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from tlsearch import __version__
from tlsearch._io import file_sha256, write_atomic
from tlsearch.errors import UserInputError
from tlsearch.training.predict import INFO_FILE, Ensemble, load_model, member_label

FORMAT = "tlsearch-export-v1"


def export_dir_name(sel: dict[str, Any]) -> str:
    """``<experiment>-ft<size>``, or ``<experiment>-<target property>-ft<size>`` for a study with several targets."""
    prop = sel.get("target_property")
    return f"{sel['experiment']}-{prop}-ft{sel['ft_size']}" if prop else f"{sel['experiment']}-ft{sel['ft_size']}"


def _repeats(ens: Ensemble) -> list[dict[str, Any]]:
    out = []
    for m in ens.members:
        cfg = m.config.model_copy(update={"output_dir": None, "threads": None})
        out.append({"file": m.path.name, "member": member_label(m.path), "sha256": file_sha256(m.path), "seed": cfg.seed,
                    "sample_seed": cfg.train.sample_seed, "scaler": m.scaler.to_dict(),
                    "config": cfg.model_dump(mode="json")})
    return out


def _lineage(sel: dict[str, Any], ens: Ensemble) -> dict[str, Any] | None:
    if sel.get("pt") is None:
        return None
    from tlsearch.training.trial import store_for

    return {**sel["pt"], "store": str(store_for(ens.config).root)}


def model_info(sel: dict[str, Any], ens: Ensemble) -> dict[str, Any]:
    """``model.json`` of an export: ``sel`` is the analysis' selection entry (tlsearch.analysis.selected)."""
    cfg = ens.config
    metrics = {k: sel.get(k) for k in ("val_mae", "val_mae_std", "test_mae", "test_mae_std", "test_rmse", "test_r2",
                                       "val_mae_per_repeat", "test_mae_per_repeat", "cv_folds", "val_mae_per_fold",
                                       "test_mae_per_fold", "n_train", "n_val", "n_test")}
    return {"format": FORMAT, "tlsearch_version": __version__, "exported": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "property": cfg.target.property, "target": sel["target"], "target_name": sel["target_name"],
            "ft_size": sel["ft_size"], "experiment": sel["experiment"], "experiment_dir": sel["directory"],
            "trial": sel["trial"], "ray_trial_id": sel["ray_trial_id"], "family": sel["family"],
            "strategy": sel["strategy"], "configuration": sel["configuration"], "selection": sel["selection"],
            "source_model_dir": sel.get("model_location") or sel["model_dir"], "metrics": metrics, "pt": _lineage(sel, ens),
            "graph": cfg.graph.model_dump(mode="json"), "model": cfg.model.model_dump(mode="json"),
            "test_fraction": cfg.test_fraction, "split_seed": cfg.split_seed, "repeats_trained": (sel.get("repeats") or 0) - (sel.get("raced_repeats") or 0) or sel.get("repeats"),
            "repeats": _repeats(ens)}


def _mae(m: dict[str, Any], part: str) -> str:
    v, sd = m.get(f"{part}_mae"), m.get(f"{part}_mae_std")
    if v is None:
        return "not recorded"
    return f"{v:.4g} +/- {sd:.2g}" if sd else f"{v:.4g}"


def model_card(info: dict[str, Any], directory: Path) -> str:
    """README.md of an exported model: what it predicts, on which data, expected error, how to use it."""
    m, a, g, pt = info["metrics"], info["model"], info["graph"], info["pt"]
    members = info["repeats"]
    n_rep = len({r.get("sample_seed") for r in members})  # a cross-validated repeat has one file per fold
    folds = int(m.get("cv_folds") or 1)
    d = str(directory)
    what = (f"{n_rep} repeat(s) x {folds} fold models ({len(members)} models; each fold model trained on the other "
            f"folds of its repeat's FT sample)" if folds > 1 else f"{n_rep} repeat(s)")
    lines = [
        f"# {info['target_name']}: ALIGNN model from study `{info['experiment']}` (FT size {info['ft_size']})", "",
        f"Predicts **{info['property']}** (target `{info['target']}`, in that data's units) from a crystal structure "
        f"with an ALIGNN graph neural network ({a['backend']} backend, {a['alignn_layers']} ALIGNN + {a['gcn_layers']} "
        f"GCN layers, hidden {a['hidden_features']}), as an ensemble of {what}: the prediction is their "
        "mean, their standard deviation a spread.", "",
        *([f"Only {n_rep} of the {info['repeats_trained']} repeats kept their weights (an older tlsearch kept the "
           "first only); the metrics below are over all of them.", ""]
          if info.get("repeats_trained") and info["repeats_trained"] != n_rep else []),
        "## How it was chosen and trained", "",
        f"- study `{info['experiment']}` ({info['experiment_dir']}), trial {info['trial']}: {info['configuration']}",
        f"- selection: {info['selection']} (the test set never selects)",
        f"- fine-tuning data: {m['n_train']} training and {m['n_val']} validation structures of `{info['target']}` per "
        f"repeat (each repeat draws its own sample of {info['ft_size']}; seeds "
        f"{', '.join(str(x) for x in dict.fromkeys(r['sample_seed'] for r in info['repeats']))})"
        + (f"; {folds}-fold cross-validation: validation MAE is out-of-fold over the whole sample" if folds > 1 else ""),
        f"- held-out test set: {m['n_test']} structures (test fraction {info['test_fraction']}, split seed "
        f"{info['split_seed']}), never trained on",
    ]
    if pt:
        lines.append(f"- pre-training: {' + '.join(pt['sources'])}, {pt['epochs']} epochs, store key `{pt['key']}` "
                     f"(store {pt['store']}); fine-tuned with freeze {pt['freeze']}")
    else:
        lines.append("- no pre-training (trained from scratch)")
    lines += [
        f"- graphs: cutoff {g['cutoff']} A, at most {g['max_neighbors']} neighbours, {g['atom_features']} atom "
        f"features, {g['builder']} builder", "",
        "## Expected error", "",
        "| set | MAE (mean +/- std over repeats) | per repeat |", "|---|---|---|",
        f"| validation | {_mae(m, 'val')} | {', '.join(f'{x:.4g}' for x in m['val_mae_per_repeat'] or [])} |",
        f"| held-out test | {_mae(m, 'test')} | {', '.join(f'{x:.4g}' for x in m['test_mae_per_repeat'] or [])} |",
        *([f"| held-out test, each fold model alone | | {', '.join(f'{x:.4g}' for x in m['test_mae_per_fold'])} |"]
          if folds > 1 and m.get("test_mae_per_fold") else []),
        "", f"Test RMSE {m['test_rmse']:.4g}, R^2 {m['test_r2']:.3f} (means over repeats). Expect errors like these on "
        f"structures like `{info['target']}`; far from it (other chemistries, other structure types) the error is "
        "unknown, and a large spread over the repeats is a warning sign.", "",
        "## Use it", "", "From the command line (a folder of POSCAR/CIF/XYZ files, with or without an id_prop.csv of "
        "true values, or any dataset reference tlsearch reads; CSV or Parquet by the extension):", "", "```bash",
        f"tlsearch predict {d} my_structures/ --out predictions.csv", "```", "", "In Python:", "", "```python",
        "from tlsearch.training import load_model", "", f"model = load_model({d!r})",
        "pred = model.predict_from(\"my_structures/\")  # or model.predict(list_of_jarvis_atoms, ids)",
        "table = pred.to_frame()  # id, y_pred, y_std, y_true/abs_error (when known), y_pred_repeat<i>, skipped",
        "```", "",
        "## Files", "",
        "- `model.pt`, `model_repeat<i>.pt` (cross-validated: `model_fold<f>.pt`, `model_repeat<i>_fold<f>.pt`): one "
        "per repeat and fold (weights, target scaler and TrainConfig; loaded with "
        "`torch.load(weights_only=True)`, so they cannot run code)",
        "- `model.json`: everything above, with each repeat's TrainConfig, scaler and sha256",
        "- `predictions.parquet`: the first repeat's validation and test predictions (when kept)",
        "", f"Exported by tlsearch {info['tlsearch_version']} on {info['exported']}.", "",
    ]
    return "\n".join(lines)


def export_model(sel: dict[str, Any], out_dir: str | Path) -> Path:
    """Write the selected model ``sel`` into ``out_dir/<experiment>-ft<size>`` (made atomically) and return it."""
    src = Path(sel["model_dir"])
    dest = Path(out_dir).expanduser().resolve() / export_dir_name(sel)
    if dest.exists():
        raise UserInputError(f"{dest}: already exists; fix: remove it, or export into another OUT_DIR")
    ens = load_model(src)  # every file loads: a damaged one stops the export here
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}-", dir=dest.parent))
    try:
        for m in ens.members:
            shutil.copyfile(m.path, tmp / m.path.name)
        if (src / "predictions.parquet").is_file():
            shutil.copyfile(src / "predictions.parquet", tmp / "predictions.parquet")
        info = model_info(sel, ens)
        write_atomic(tmp / INFO_FILE, json.dumps(info, indent=1).encode())
        write_atomic(tmp / "README.md", model_card(info, dest).encode())
        tmp.replace(dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest
