"""The fixed schemas of the analysis tables (``trials.parquet`` and ``history.parquet``).

One row of ``trials.parquet`` per Optuna trial of the study (finished, stopped early, failed or still
running). Values that do not apply to a trial (a PT source for a scratch trial, test metrics of a trial
ASHA stopped early) are null. The columns, in order, with their meaning, are documented here and in
``docs/report.md``; :func:`tlsearch.analysis.load_trials` always returns exactly these columns.
"""

from __future__ import annotations

import polars as pl

from tlsearch.search import dimensions as dims

FAMILY_DOC = "scratch, PT->FT(<PT source>) or MPT(<property set>): what the report compares"


def _dimension_columns() -> dict[str, tuple[pl.DataType, str]]:
    """The searched dimensions' columns, from their table (search/dimensions.py), the family after the strategy."""
    out: dict[str, tuple[pl.DataType, str]] = {}
    for dim in dims.DIMENSIONS:
        out.update({name: (getattr(pl, dtype), doc) for name, (dtype, doc) in dim.columns().items()})
        if dim is dims.STRATEGY:
            out["family"] = (pl.String, FAMILY_DOC)
    return out


# column -> (dtype, meaning)
TRIALS: dict[str, tuple[pl.DataType, str]] = {
    "trial": (pl.Int64, "Optuna trial number (0, 1, ...), in the order the searcher proposed them"),
    "ray_trial_id": (pl.String, "Ray Tune trial id (the trial directory is tune/t<last 5 characters>)"),
    "state": (pl.String, "finished | stopped_early (by the scheduler: ASHA, successive halving or the median rule) | stopped_budget (the study's time budget ran out) | failed | running | pending"),
    "error": (pl.String, "last line of the failure reason (failed trials)"),
    "imported_from": (pl.String, "warm start: '<experiment dir>#<trial>' this finished trial was imported from (its recorded results; not retrained), else null"),
    **_dimension_columns(),
    "repeats": (pl.Int64, "FT draws finished (different FT samples and seeds; repeat i uses seed + i in every trial)"),
    "raced_repeats": (pl.Int64, "of those, the repeats racing added after the search (budget.race_repeats; their "
                                "models are not in model_dir), else 0"),
    "val_mae": (pl.Float64, "the objective: validation MAE (mean over repeats; last epoch's for a trial stopped early)"),
    "val_mae_std": (pl.Float64, "std of validation MAE over repeats"),
    "test_mae": (pl.Float64, "held-out test MAE, mean over repeats (recorded, never used for selection)"),
    "test_mae_std": (pl.Float64, "std of test MAE over repeats (0 with one repeat)"),
    "test_rmse": (pl.Float64, "held-out test RMSE, mean over repeats"),
    "test_r2": (pl.Float64, "held-out test R^2, mean over repeats"),
    "val_mae_per_repeat": (pl.List(pl.Float64), "validation MAE of each repeat"),
    "test_mae_per_repeat": (pl.List(pl.Float64), "test MAE of each repeat"),
    "cv_folds": (pl.Int64, "folds each repeat's FT sample was cross-validated with (budget.cv_folds; 1: one "
                           "train/validation split); val_mae is then the out-of-fold MAE, test_mae the fold ensemble's"),
    "val_mae_per_fold": (pl.List(pl.Float64), "validation MAE of every (repeat, fold), repeat-major: the paired cells "
                                              "selection's bootstrap resamples"),
    "test_mae_per_fold": (pl.List(pl.Float64), "test MAE of every (repeat, fold) model alone, repeat-major"),
    "eval_mae": (pl.String, "JSON {eval set label: MAE, mean over repeats}: out-of-domain sets, when configured"),
    "n_train": (pl.Int64, "FT training structures (after the validation split)"),
    "n_val": (pl.Int64, "validation structures"),
    "n_test": (pl.Int64, "held-out test structures"),
    "epochs_reported": (pl.Int64, "epochs of the first repeat that reached the scheduler"),
    "epochs_run": (pl.Int64, "FT epochs trained over all repeats (the trial's compute)"),
    "max_epochs": (pl.Int64, "FT epochs a trial may train per repeat (the budget)"),
    "pt_key": (pl.String, "content key of the PT model in the store (transfer strategies)"),
    "pt_epochs": (pl.Int64, "epochs of that PT model"),
    "pt_seconds": (pl.Float64, "seconds its PT took (once per key, however many trials use it)"),
    "pt_train_seconds": (pl.Float64, "seconds of its PT epochs alone (pt_seconds also counts building its data)"),
    "pt_compute_seconds": (pl.Float64, "compute of its PT epochs: CPU seconds on a CPU, wall seconds on a GPU"),
    "pt_store_hit": (pl.Boolean, "the PT model came from the store (trained by an earlier trial or study)"),
    "seconds": (pl.Float64, "wall seconds of the trial in Ray (time_total_s)"),
    "ft_seconds": (pl.Float64, "FT training seconds, every epoch of every repeat (finished trials)"),
    "ft_compute_seconds": (pl.Float64, "compute of those epochs: CPU seconds on a CPU, wall seconds on a GPU"),
    "cost": (pl.Float64, "the cost objective (finished trials): ft_compute_seconds + pt_compute_seconds / the "
                         "trials of this study that used that PT model (wall seconds for results recorded before "
                         "compute was kept); an imported trial keeps its earlier study's"),
    "node_id": (pl.String, "Ray node that ran the trial"),
    "predictions": (pl.String, "path of the first repeat's val/test predictions (parquet), when kept"),
    "model_dir": (pl.String, "directory of the trained model of every repeat (finished trials): "
                             "`tlsearch predict MODEL_DIR STRUCTURES` predicts with it"),
    "params": (pl.String, "JSON of the parameters the searcher sampled"),
}

HISTORY: dict[str, tuple[pl.DataType, str]] = {
    "trial": (pl.Int64, "Optuna trial number"),
    "epoch": (pl.Int64, "FT epoch (1-based) of the first repeat"),
    "train_loss": (pl.Float64, "training loss (scaled target units)"),
    "val_loss": (pl.Float64, "validation loss (scaled target units)"),
    "val_mae": (pl.Float64, "validation MAE (physical units)"),
    "lr": (pl.Float64, "learning rate at the end of the epoch"),
    "seconds": (pl.Float64, "seconds of the epoch"),
    "structures_per_s": (pl.Float64, "training throughput"),
}


def polars_schema(table: dict[str, tuple[pl.DataType, str]]) -> dict[str, pl.DataType]:
    return {k: v[0] for k, v in table.items()}


def markdown_table(table: dict[str, tuple[pl.DataType, str]]) -> str:
    rows = ["| column | type | meaning |", "|---|---|---|"]
    rows += [f"| `{k}` | {dt} | {doc} |" for k, (dt, doc) in table.items()]
    return "\n".join(rows)
