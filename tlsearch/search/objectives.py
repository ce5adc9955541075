"""What a study optimises, declared once: ``objectives: [val_mae]`` (the default) or ``[val_mae, cost]``.

``val_mae`` is the validation MAE (mean over repeats), as always. ``cost`` is the compute a strategy's answer
cost, in seconds: the trial's FT training compute (every epoch of every repeat, as the trainer measured it) plus
its share of the PT model's training compute (its epochs), which is divided among the trials of the study that
used that PT model (a PT->FT or MPT trial pays ``pt_compute_seconds / users``; scratch pays none). Building
graphs is not counted on either side: the graph cache shares it across trials and studies. Seconds, not
epochs: freezing layers, a smaller model or a larger batch make an epoch cheaper, and that is what a user pays
for. On a CPU they are the trial process's CPU seconds, which other processes' load on a shared node does not
inflate as it does wall seconds (benchmarks/cost_noise.py); on a GPU, wall seconds (the GPU's time; the CPU time
of the launching process would miss it). Results recorded before compute seconds were kept count wall seconds.

The share's divisor grows while a study runs: the searcher tells Optuna the share known when a trial ends
(the trials that had used the model by then, itself included); the report computes every trial's cost again
with the study's final count. A trial the scheduler stopped early has neither a final validation MAE nor a
final cost: in a two-objective study it is PRUNED (Optuna's multi-objective samplers learn from finished
trials), and it is never on a Pareto front. No Ray, no torch: the runner, the searcher and the analysis use it.
"""

from __future__ import annotations

from typing import Any, Iterable, Literal

OBJECTIVES: dict[str, str] = {  # name -> meaning: the spec's choices come from here
    "val_mae": "validation MAE, mean over repeats (the selection metric; always the first objective)",
    "cost": "compute seconds (CPU seconds on a CPU, wall on a GPU): FT epochs over all repeats + the PT model's "
            "epochs / the trials that used it",
}
Objective = Literal[tuple(OBJECTIVES)]  # type: ignore[valid-type]
PT_KEY_ATTR = "pt_key"  # Optuna user attribute (two-objective studies): the PT model a trial used


def check(objectives: list[str]) -> list[str]:
    """The spec's ``objectives``, checked: ``val_mae`` first, each once."""
    if not objectives or objectives[0] != "val_mae":
        raise ValueError(f"the first objective must be val_mae (the metric trials are selected by), got {objectives}")
    if len(set(objectives)) != len(objectives):
        raise ValueError(f"an objective is listed twice: {objectives}")
    return objectives


def directions(objectives: list[str]) -> list[str]:
    """Ray Tune's modes, one per objective: every objective is minimised."""
    return ["min"] * len(objectives)


def cost(ft_seconds: float | None, pt_seconds: float | None, pt_users: int) -> float | None:
    """A trial's cost: its FT seconds plus its share of its PT model's seconds (``pt_users`` trials used it)."""
    if ft_seconds is None:
        return None
    share = (pt_seconds or 0.0) / pt_users if pt_users else 0.0
    return float(ft_seconds) + share


_SECONDS = {"ft": ("ft_compute_seconds", "ft_seconds"), "pt": ("pt_compute_seconds", "pt_train_seconds")}


def seconds_of(row: dict[str, Any], part: Literal["ft", "pt"]) -> float | None:
    """A trial's FT or PT seconds as the cost counts them, from its final result or trials-table row: its compute
    seconds (CPU seconds on a CPU, wall seconds on a GPU), else its wall seconds (recorded before compute was)."""
    return next((row[k] for k in _SECONDS[part] if row.get(k) is not None), None)


def cost_of(row: dict[str, Any], pt_users: int) -> float | None:
    """:func:`cost` of a trial's final result or trials-table row (:func:`seconds_of` both parts)."""
    return cost(seconds_of(row, "ft"), seconds_of(row, "pt"), pt_users)


def users(pt_keys: Iterable[str | None]) -> dict[str, int]:
    """How many trials used each PT model (``pt_keys``: one per trial, None for scratch)."""
    out: dict[str, int] = {}
    for k in pt_keys:
        if k:
            out[k] = out.get(k, 0) + 1
    return out


def val_of(trial: Any) -> float | None:
    """An Optuna trial's validation MAE, its first objective value, in a study of one objective or two (Optuna's
    ``value`` raises in a multi-objective study); None without a value or for NaN."""
    vals = trial.values
    v = vals[0] if vals else None
    return None if v is None or v != v else float(v)
