"""Warm start: finished trials of earlier studies enter a new study's Optuna history as completed trials.

A finished trial of an earlier experiment is imported when it lies inside the new space: its parameters, with
the new study's parameter names (a study with several targets names some per target), are what the new space
itself suggests when asked for them (checked by replaying the define-by-run space on them), and the trial
config they give in the new study is the one the earlier trial trained (same target, data, split, seeds, model,
budget and pre-training: the configs are compared field by field, repeat by repeat). Its recorded validation
MAE then means the same thing in both studies, so it is added as a COMPLETE Optuna trial (not retrained) with
``imported_from`` (``<experiment dir>#<trial>``) and its recorded results (``imported_result``: what the
report needs). Every other finished trial is skipped with the first difference as its reason.

Imported trials do not count against ``budget.trials`` and hold no slot of the condition cycle; a suggestion
equal to an imported configuration is answered from it (the searcher's rule for repeated suggestions), so
the new study spends its trials elsewhere. No Ray, no torch: run before the Tuner starts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tlsearch.errors import UserInputError
from tlsearch.search.experiment import (FINAL_ATTR, IMPORTED_ATTR, IMPORTED_RESULT_ATTR, REUSED_ATTR,
                                       Experiment)
from tlsearch.search.dimensions import per_target, target_of
from tlsearch.search.objectives import val_of
from tlsearch.search.space import Space, resolve, train_config
from tlsearch.search.spec import SearchSpec

# what an imported trial carries from the earlier trials.parquet row (the report's columns for a finished trial)
RESULT_COLUMNS = ("repeats", "raced_repeats", "val_mae", "val_mae_std", "test_mae", "test_mae_std", "test_rmse", "test_r2",
                  "val_mae_per_repeat", "test_mae_per_repeat", "cv_folds", "val_mae_per_fold", "test_mae_per_fold",
                  "eval_mae", "n_train", "n_val", "n_test",
                  "epochs_run", "pt_key", "pt_epochs", "pt_seconds", "pt_train_seconds", "pt_compute_seconds", "seconds",
                  "ft_seconds", "ft_compute_seconds", "cost", "predictions", "model_dir")
# not part of what a trial trains: paths, names, resources, and the evaluation sets (scored after training)
_NOT_COMPARED = {"name", "cache_dir", "store_dir", "output_dir", "threads", "device", "eval_sets"}


@dataclass(frozen=True)
class Skipped:
    experiment: str
    trial: int
    reason: str


@dataclass(frozen=True)
class Imported:
    experiment: str
    trial: int
    params: dict[str, Any]
    values: list[float]  # one per objective of the new study: the validation MAE (and its recorded cost)


def _diff(a: Any, b: Any, path: str = "") -> str | None:
    """The first field where two config dicts differ, as 'path: a vs b'."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            d = _diff(a.get(k), b.get(k), f"{path}.{k}" if path else k)
            if d:
                return d
        return None
    return None if a == b else f"{path}: {a!r} (earlier) vs {b!r} (this study)"


def _config(spec: SearchSpec, params: dict[str, Any], repeat: int) -> dict[str, Any]:
    return train_config(spec, params, repeat).model_dump(mode="json", exclude=_NOT_COMPARED)


def _renamed(old: SearchSpec, new: SearchSpec, params: dict[str, Any]) -> dict[str, Any]:
    """The earlier trial's parameters under the new study's names: its target (sampled when the new study has
    several), and the per-target names of the PT source and MPT set parameters."""
    i, label = target_of(old, params)
    labels = [t.label for t in new.data.ft_targets]
    if label not in labels:
        raise ValueError(f"its target {label} is not a target of this study ({', '.join(labels)})")
    out = {k: v for k, v in params.items() if k != "target"}
    if len(labels) > 1:
        out["target"] = label
    j = labels.index(label)
    for k in list(out):
        base = k.removesuffix(f"_t{i}") if len(old.data.ft_targets) > 1 else k
        if base in ("pt_source", "mpt_size") or base.startswith("mpt_combo_"):
            out[per_target(new, base, j)] = out.pop(k)
    # what the earlier study fixed and this one may sample (an lr, a size, a freeze): its value there
    v = resolve(old, params)
    out.update({k: x for k, x in v.items() if k not in out and x is not None
                and k not in ("target", "strategy", "pt_source", "mpt_properties")})
    if v.get("pt_source"):
        out.setdefault(per_target(new, "pt_source", j), v["pt_source"])
    return out


def _inside(spec: SearchSpec, params: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], str | None]:
    """(the parameters this space suggests for them, their distributions, None) when the new space, asked for
    ``params``, suggests every parameter it samples from them (values it fixes are dropped: the trial configs
    are compared next); else a reason."""
    import optuna

    study = optuna.create_study(direction="minimize")
    study.enqueue_trial(params, skip_if_exists=False)
    trial = study.ask()
    Space(spec)(trial)
    diff = [k for k in trial.params if trial.params[k] != params.get(k)]
    if diff:
        k = diff[0]
        why = (f"{k}={params[k]!r} is outside this space's choices" if k in params else
               f"this space samples {k}, which the earlier trial did not have")
        return {}, {}, why
    return dict(trial.params), dict(trial.distributions), None


def candidates(spec: SearchSpec,
               dirs: list[str | Path]) -> tuple[list[tuple[Imported, dict[str, Any], dict]], list[Skipped]]:
    """(imports with their distributions and recorded results, skipped trials with reasons) from ``dirs``."""
    import optuna
    import polars as pl

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    out: list[tuple[Imported, dict[str, Any], dict]] = []
    skipped: list[Skipped] = []
    seen: set[str] = set()
    for d in dirs:
        exp = Experiment.open(d)
        old = exp.spec()
        if old.metric != spec.metric:
            raise UserInputError(f"--warm-start {exp.where}: its metric is {old.metric}, this study's {spec.metric}; "
                                 "fix: warm-start from studies with the same metric")
        try:
            study = optuna.load_study(study_name=old.name, storage=exp.optuna_storage())
        except KeyError:
            raise UserInputError(f"--warm-start {exp.where}: no Optuna study {old.name!r} in its journal (the study "
                                 "never started); fix: give an experiment directory with finished trials") from None
        table = exp.root / "trials.parquet"  # the report's table (every run and resume ends with the report)
        if not table.exists():
            raise UserInputError(f"--warm-start {exp.where}: no trials.parquet (its report was never built); fix: "
                                 f"`tlsearch report {exp.where}`, then run again")
        finished = pl.read_parquet(table).filter(pl.col("state") == "finished")
        rows = {r["trial"]: r for r in finished.iter_rows(named=True)}
        for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
            if REUSED_ATTR in t.user_attrs or not t.user_attrs.get(FINAL_ATTR) or t.number not in rows:
                continue  # an answer from history, a trial stopped early, or one without results
            where = exp.where
            try:
                params, dists, why = _inside(spec, _renamed(old, spec, t.params))
                if why is None:
                    diffs = (_diff(_config(old, t.params, r), _config(spec, params, r))
                             for r in range(spec.budget.repeats))
                    why = next((d for d in diffs if d), None)
            except (ValueError, UserInputError) as exc:
                why = str(exc)
            key = repr(sorted(params.items())) if why is None else ""
            if why is None and key in seen:
                why = "the same configuration was imported from an earlier trial already"
            if why is None and spec.multi_objective and rows[t.number].get("cost") is None:
                why = ("no cost recorded (its study ran before tlsearch measured FT seconds); a two-objective study "
                       "needs one")
            if why is not None:
                skipped.append(Skipped(where, t.number, why))
                continue
            seen.add(key)
            result = {k: rows[t.number].get(k) for k in RESULT_COLUMNS}  # an older table may lack a column
            vals = [val_of(t), *([float(result["cost"])] if spec.multi_objective else [])]
            out.append((Imported(where, t.number, params, vals), dists, result))
    return out, skipped


def import_trials(spec: SearchSpec, exp: Experiment, dirs: list[str | Path]) -> tuple[list[Imported], list[Skipped]]:
    """Add the importable finished trials of ``dirs`` to ``exp``'s (new) Optuna study; return what was imported
    and what was skipped, with why."""
    import optuna

    found, skipped = candidates(spec, dirs)
    if not found:
        return [], skipped
    study = optuna.create_study(study_name=spec.name, storage=exp.optuna_storage(), load_if_exists=True,
                                directions=["minimize"] * len(spec.objectives))
    for imp, dists, result in found:
        study.add_trial(optuna.trial.create_trial(
            params=imp.params, distributions=dists, values=imp.values,
            user_attrs={IMPORTED_ATTR: f"{imp.experiment}#{imp.trial}", FINAL_ATTR: True,
                        IMPORTED_RESULT_ATTR: result}))
    return [imp for imp, _, _ in found], skipped
