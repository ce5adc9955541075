"""The model a study selects at each FT size, where its weights are, and the commands that use it.

The selection is the report's: at each FT size, the finished trial with the lowest validation MAE (``best`` of
:func:`tlsearch.analysis._analyse.by_size`). ``tlsearch predict`` and ``tlsearch export`` choose through here, so
they use the model the report and summary.json name. Files only: no torch, no Ray.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import polars as pl

from tlsearch.analysis import _analyse as A
from tlsearch.analysis._load import load_trials
from tlsearch.errors import UserInputError
from tlsearch.search.experiment import Experiment

_METRICS = ("val_mae", "val_mae_std", "test_mae", "test_mae_std", "test_rmse", "test_r2", "val_mae_per_repeat",
            "test_mae_per_repeat", "cv_folds", "val_mae_per_fold", "test_mae_per_fold", "n_train", "n_val", "n_test",
            "repeats", "raced_repeats", "epochs_run")


def commands(root: Path | str, size: str, target: str | None = None) -> dict[str, str]:
    """The commands that predict with, and export, the model selected at FT size ``size`` (of FT target ``target``,
    a ``--target`` value: :func:`target_option`, in a study with several targets)."""
    q = shlex.quote(str(root))
    t = f" --target {shlex.quote(target)}" if target is not None else ""
    return {"predict": f"tlsearch predict {q} STRUCTURES{t} --ft-size {size} --out predictions.csv",
            "export": f"tlsearch export {q} OUT_DIR{t} --ft-size {size}"}


def _answers(value: str, t: Any, names: dict[str, str]) -> tuple[bool, bool]:
    """Whether FT target ``t`` answers to ``--target value`` by the rule of :func:`choose` (predict, export with
    ``--ft-size``) and by that of ``tlsearch export`` without ``--ft-size``."""
    return (value in (t.label, t.name, t.property),
            value in (t.label, A.short(t.label, names)) or t.label.rsplit("/", 1)[-1] == value)


def target_option(targets: list[Any], label: str, names: dict[str, str] | None = None) -> str:
    """The ``--target`` value that selects FT target ``label`` (``dataset/property``) among ``targets`` (the spec's
    ``data.ft_targets``) in ``tlsearch predict`` and ``tlsearch export``: its property when that names this target
    and no other (``K_VRH``), else the full ``dataset/property``."""
    names = names or {}
    me = next(x for x in targets if x.label == label)
    for rule in (0, 1):
        if [x.label for x in targets if _answers(me.property, x, names)[rule]] != [label]:
            return label
    return me.property


def _pt(r: dict[str, Any]) -> dict[str, Any] | None:
    if r["strategy"] == "scratch":
        return None
    sources = [r["pt_source"]] if r["strategy"] == "finetune" else (r["mpt_properties"] or "").split(" + ")
    return {"key": r["pt_key"], "sources": sources, "epochs": r["pt_epochs"], "lr": r["pt_lr"],
            "freeze": r["freeze"], "reinit_head": r["reinit_head"], "body_lr_factor": r["body_lr_factor"]}


def selected(exp: Experiment, trials: pl.DataFrame, sizes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per FT size of ``sizes`` (what :func:`by_size` returned for ``trials``): the selected trial, its
    model directory, metrics, PT lineage and the commands to use it."""
    spec = exp.spec()
    names = spec.data.names()
    targets = spec.data.ft_targets
    out = []
    for z in sizes:
        r = trials.filter(pl.col("trial") == z["best"]["trial"]).row(0, named=True)
        target = z.get("target", targets[0].label)
        option = target_option(targets, target, names) if len(targets) > 1 else None
        out.append({
            "ft_size": z["ft_size"], "trial": r["trial"], "ray_trial_id": r["ray_trial_id"], "family": r["family"],
            "strategy": r["strategy"], "configuration": A.describe(r, names), "model_dir": r["model_dir"],
            # where the report names it: the URI of an experiment on an object store, model_dir its local mirror
            "model_location": exp.location(r["model_dir"]) if r["model_dir"] else None,
            **{k: r[k] for k in _METRICS}, "pt": _pt(r), "experiment": spec.name, "directory": exp.where,
            "target": target,
            # several targets: each exported model's folder names its property (export_dir_name), and the
            # commands name the target (`--target`, the value in "target_option")
            **({"target_property": r["target"].rsplit("/", 1)[-1].replace("/", "_"), "target_option": option}
               if option is not None else {}),
            "target_name": A.short(target, names),
            "selection": f"lowest validation MAE of the {z['finished_trials']} finished trial(s) at FT size "
                         f"{z['ft_size']}", "commands": commands(exp.where, z["ft_size"], option),
        })
    return out


def selected_models(exp: Experiment | str | Path) -> list[dict[str, Any]]:
    """:func:`selected` of an experiment directory, read now (the study may still run)."""
    exp = exp if isinstance(exp, Experiment) else Experiment.open(exp)
    trials, _ = load_trials(exp)
    spec = exp.spec()
    return selected(exp, trials, A.by_targets(trials, [t.label for t in spec.data.ft_targets], spec.data.names()))


def choose(exp: Experiment, ft_size: str | None, target: str | None = None) -> dict[str, Any]:
    """The selected model at ``ft_size`` (default: the largest FT size with a finished trial) of ``target`` (a
    study with several targets needs it: a ``dataset/property`` or its label); a size the study does not have,
    or one without a finished trial (or without kept weights), is a UserInputError."""
    models = selected_models(exp)
    spec = exp.spec()
    targets = spec.data.ft_targets
    if len(targets) > 1:
        names = [f"{t.label}" + (f" ({t.name})" if t.name else "") for t in targets]
        match = [t.label for t in targets if target is not None and target in (t.label, t.name, t.property)]
        if len(match) != 1:
            got = "no --target was given" if target is None else f"--target {target} is not one of them"
            raise UserInputError(f"{exp.where}: the study has {len(targets)} FT targets and {got}; fix: --target with "
                                 f"one of: {', '.join(names)}")
        models = [m for m in models if m["target"] == match[0]]
    listed = [str(s) for s in spec.search.ft_size]
    done = [m["ft_size"] for m in models]
    if not models:
        raise UserInputError(f"{exp.where}: no trial has finished yet, so there is no model to use; fix: wait for the "
                             f"study (`tlsearch status {exp.where}`) or continue it with `tlsearch resume {exp.where}`")
    if ft_size is None:
        m = models[-1]  # by_size sorts the sizes ascending, 'all' last
    elif ft_size not in done:
        why = ("no trial finished at this size" if ft_size in listed else
               f"the study does not search this size (its FT sizes: {', '.join(listed)})")
        raise UserInputError(f"{exp.where}: --ft-size {ft_size}: {why}; fix: choose one of the sizes with a finished "
                             f"trial: {', '.join(done)}")
    else:
        m = models[done.index(ft_size)]
    if not m["model_dir"]:
        raise UserInputError(f"{exp.where}: trial {m['trial']} (selected at FT size {m['ft_size']}) kept no model "
                             "files; fix: run the study with this tlsearch version (older ones did not keep them)")
    return m
