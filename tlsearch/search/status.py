"""Study status from the experiment directory alone (the Optuna journal plus Ray Tune's trial results):
no Ray needed, so it works while the study runs, after it ends, or after it was killed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.markup import escape
from rich.table import Table

from tlsearch.search.experiment import IMPORTED_RESULT_ATTR, NOTE_ATTR, TIME_BUDGET, Experiment
from tlsearch.search.objectives import val_of
from tlsearch.search.results import eval_maes, match_trials, read_ray_trials
from tlsearch.search import dimensions as dims
from tlsearch.search.space import resolve


def _trial_results(exp: Experiment, trials: list[Any]) -> dict[int, dict[str, Any]]:
    """Optuna trial number -> the last result its Ray trial reported (plus the last line of its error, if it
    failed), joined as the analysis joins them (results.match_trials)."""
    out: dict[int, dict[str, Any]] = {}
    for number, r in match_trials(trials, read_ray_trials(exp)).items():
        last = dict(r.last)
        # Tune writes error.txt at every failure and keeps it when a retry from the checkpoint then finishes
        # the trial (e.g. after its node died): a trial with its final summary did not fail
        if r.error is not None and r.final is None:
            last["error"] = r.error[:200]
        out[number] = last
    return out


def study_rows(exp: Experiment) -> list[dict[str, Any]]:
    import optuna

    spec = exp.spec()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.load_study(study_name=spec.name, storage=exp.optuna_storage())
        trials = study.trials
    except KeyError:
        trials = []
    results = _trial_results(exp, trials)

    rows, names = [], spec.data.names()
    for t in trials:
        p = t.params
        v = resolve(spec, p)
        strategy = v["strategy"]
        value = val_of(t)
        r = results.get(t.number, {})
        if IMPORTED_RESULT_ATTR in t.user_attrs:  # warm start: the earlier study's recorded results
            r = {**t.user_attrs[IMPORTED_RESULT_ATTR], "final": True}
        test = r.get("test_mae") if r.get("final") else None
        if test is not None and r.get("repeats", 1) > 1:
            test_s = f"{test:.4g} +/- {r.get('test_mae_std', 0):.2g}"
        else:
            test_s = f"{test:.4g}" if test is not None else ""
        state = t.state.name.lower()
        if IMPORTED_RESULT_ATTR in t.user_attrs:
            state = "imported"
        elif state == "complete" and r and not r.get("final"):
            state = "stopped early"  # the scheduler ended it; its last validation value stands
        if t.user_attrs.get(NOTE_ATTR) == TIME_BUDGET:
            state = TIME_BUDGET
        evals = eval_maes(r) if r.get("final") else {}
        cost = t.values[1] if t.values and len(t.values) > 1 else None  # a two-objective study's (objectives.py)
        rows.append({"trial": t.number, "state": state, "strategy": strategy, "details": details(v, p, names),
                     "val": f"{value:.4g}" if value is not None else "", "value": value, "test": test_s,
                     "cost": f"{cost:.4g}" if cost is not None else "",
                     "eval": " ".join(f"{_short(k, names)}={x:.4g}" for k, x in evals.items()),
                     "epochs": _epochs(r), "ft_size": v["ft_size"],
                     "target": _short(v["target"], names) if "target" in p else None})
    return rows


def _short(ref: str, names: dict[str, str] | None) -> str:
    """A data reference (``dataset/property``) as the narrow table names it: its label, else its property."""
    return (names or {}).get(ref) or ref.rsplit("/", 1)[-1]


def details(v: dict[str, Any], params: dict[str, Any], names: dict[str, str] | None = None) -> str:
    """What tells trials apart: FT size, PT source or MPT set and freeze always (fixed ones too), then every
    other searched value. A source is named by its label in the spec (``names``: ``dataset/property`` ->
    label), else by its property name: the table is narrow."""
    out = [f"size={v['ft_size']}"]
    if "target" in params:  # a study with several targets: which one this trial fits
        out.insert(0, f"target={_short(v['target'], names)}")
    if v["strategy"] != "scratch":
        srcs = [v["pt_source"]] if v.get("pt_source") else v.get("mpt_properties", [])
        out += [f"source={'+'.join(_short(s, names) for s in srcs)}",
                f"freeze={v['freeze'] if 'freeze' in v else 'depth=' + str(v['freeze_depth'])}"]
    named = [d for d in dims.DIMENSIONS if d.shown or d is dims.STRATEGY]  # (the strategy has a column of its own)
    for key, x in v.items():
        if key in params and not any(d.owns(key) for d in named):
            out.append(f"{key}={x:.2g}" if isinstance(x, float) else f"{key}={x}")
    return " ".join(out)


def _epochs(r: dict[str, Any]) -> str:
    """FT epochs trained, over all repeats that ran, and how many repeats: a trial stopped early ran part of its
    first repeat only, a finished one all of them."""
    if r.get("final"):
        n = int(r.get("repeats", 1))
        return f"{r.get('epochs_run', '')} ({n} repeat{'s' if n != 1 else ''})"
    it = r.get("epoch", r.get("training_iteration"))
    return f"{it} (1 repeat)" if it not in (None, "") else ""


def failures(exp: Experiment) -> list[tuple[str, str]]:
    """(trial directory, last line of its error) of every Ray trial that failed and never finished after."""
    return [(r.dir.name, r.error[:200]) for r in read_ray_trials(exp) if r.error is not None and r.final is None]


def best(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    ended = ("complete", "stopped early", TIME_BUDGET, "imported")
    done = [r for r in rows if r["value"] is not None and r["state"] in ended]
    return min(done, key=lambda r: r["value"]) if done else None


def condition_of(row: dict[str, Any]) -> tuple[str, Any]:
    """A row's condition: (target, FT size), target "" in a single-target study. Trials are compared within a
    condition only (the live view groups its best-so-far with this too)."""
    return (row.get("target") or "", row["ft_size"])


def best_by_condition(rows: list[dict[str, Any]]) -> dict[tuple[str, Any], dict[str, Any]]:
    """The best ended trial of each condition that has one (conditions in ``best_lines``' order)."""
    conds = sorted({condition_of(r) for r in rows if r.get("ft_size") is not None}, key=str)
    found = {c: best([r for r in rows if r.get("ft_size") is not None and condition_of(r) == c]) for c in conds}
    return {c: b for c, b in found.items() if b is not None}


def best_lines(rows: list[dict[str, Any]]) -> list[str]:
    """The best trial so far; with several FT sizes (or targets) the best per size (and target) only: their
    validation MAEs are not comparable (the smaller sample has the higher error whatever the strategy)."""
    conds = {condition_of(r) for r in rows if r.get("ft_size") is not None}
    if len(conds) <= 1:
        b = best(rows)
        return [f"best so far: trial {b['trial']} {b['strategy']} {b['details']} val MAE {b['val']}"] if b else []
    out = []
    for (target, size), bs in best_by_condition(rows).items():  # several targets too: compared within itself only
        out.append(f"  best {f'for {target} ' if target else ''}at FT size {size}: trial {bs['trial']} "
                   f"{bs['strategy']} {bs['details']} val MAE {bs['val']}"
                   + (f", test MAE {bs['test']}" if bs["test"] else ""))
    return out


def offline_wandb(exp: Experiment) -> list[Path]:
    return sorted(exp.root.rglob("offline-run-*/run-*.wandb"))


def trials_table(rows: list[dict[str, Any]], title: str) -> Table:
    """One row per trial; an "eval MAE" column (each out-of-domain set of the spec, finished trials) when any
    trial has one."""
    t = Table(title=title)
    cols = [("trial", "trial"), ("state", "state"), ("strategy", "strategy"), ("details", "details"),
            ("val MAE", "val"), ("test MAE", "test")]
    cols += [("eval MAE", "eval")] if any(r.get("eval") for r in rows) else []
    cols += [("cost (s)", "cost")] if any(r.get("cost") for r in rows) else []
    cols += [("epochs", "epochs")]
    for col, _ in cols:  # wrap, never cut
        t.add_column(col, justify="right" if "MAE" in col or col in ("epochs", "cost (s)") else "left",
                     overflow="fold")
    for r in rows:
        # plain text, never markup: a data label in the details may hold [brackets]
        t.add_row(*(escape(str(r.get(k, ""))) for _, k in cols))
    return t
