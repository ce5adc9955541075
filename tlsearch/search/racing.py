"""Racing: more repeats where validation cannot yet tell the leading strategy families apart.

After the search (``budget.race_repeats`` > 0), per condition (FT size; and target), the best finished trial of
each strategy family is compared paired by (repeat, fold) cell (:func:`tlsearch.search.selection.verdict`). When
the leader is not clear (probability of being best < 0.9), every family tied with it gets one more repeat of its
best configuration (a new FT draw, ``seed + repeat``, cross-validated like the others: the same draw and folds for
every contender, so the new cells are paired too); hopeless families get nothing. Rounds repeat until the order
is clear everywhere or each contender has ``race_repeats`` extra repeats.

A race trial is the study's trainable on the contender's own parameters with a block of later repeats
(``RACE_BLOCK``); it runs as a Ray Tune trial (same resources, concurrency, W&B) in its own Tune run
``race<round>-<time>`` next to ``tune/``. Its final summary is kept in ``race.json`` (Ray trial id of the trial it
extends -> the summaries of its race trials), which the analysis merges into that trial's row
(:func:`tlsearch.search.selection.merged_summary`). Racing runs after the search, outside ``time_budget_s``; an
interrupted round is run again on ``resume`` (rounds recorded in race.json are kept).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tlsearch._io import write_atomic
from tlsearch.search import dimensions as dims
from tlsearch.search.conditions import conditions, group_keys
from tlsearch.search.selection import merged_summary, verdict

RACE_FILE = "race.json"
RACE_BLOCK = "race_repeats"  # in a race trial's config: [first repeat, end) it trains
RACE_INDEX = "race_index"    # the grid Tune runs over: which contender a race trial is


def read_race(root: Path) -> dict[str, list[dict[str, Any]]]:
    """race.json of an experiment directory: Ray trial id -> its race trials' final summaries (empty without)."""
    path = Path(root) / RACE_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def _write_race(root: Path, race: dict[str, list[dict[str, Any]]]) -> None:
    write_atomic(Path(root) / RACE_FILE, json.dumps(race, indent=1, default=float).encode())


@dataclass
class Contender:
    """A finished trial of the search, with the repeats racing added so far merged into its summary."""

    trial_id: str
    params: dict[str, Any]
    condition: tuple[Any, ...]
    family: str
    summary: dict[str, Any]

    def entry(self) -> dict[str, Any]:
        """What :func:`verdict` compares: the family, the mean validation MAE and the paired cells."""
        s = self.summary
        as_list = lambda v: json.loads(v) if isinstance(v, str) else v  # noqa: E731
        per_fold = as_list(s.get("val_mae_per_fold"))  # per repeat, per fold (the trainable's summary)
        return {"family": self.family, "trial": self.trial_id, "val_mae": float(s["val_mae"]),
                "cv_folds": s.get("cv_folds") or 1,
                "val_mae_per_fold": [x for rep in per_fold for x in rep] if per_fold else None,
                "val_mae_per_repeat": as_list(s.get("val_mae_per_repeat")), "cost": None}


def contenders(spec: Any, finals: list[tuple[str, dict[str, Any], dict[str, Any]]],
               race: dict[str, list[dict[str, Any]]]) -> list[Contender]:
    """The finished trials (``finals``: (Ray trial id, sampled params, final summary)) with their raced repeats."""
    from tlsearch.search.space import resolve

    keys, default = group_keys(spec)
    keys = keys if isinstance(keys, tuple) else (keys,)
    defaults = default if isinstance(default, tuple) else (default,)
    out = []
    for tid, params, final in finals:
        v = resolve(spec, params)
        cond = tuple(params.get(k, d) for k, d in zip(keys, defaults))
        out.append(Contender(tid, params, cond, dims.family_label(v), merged_summary(final, race.get(tid, []))))
    return out


def plan(spec: Any, runs: list[Contender]) -> list[tuple[Contender, int, int]]:
    """The race trials of the next round: (contender, first repeat, end) for the best trial of every family tied
    with its condition's leader, while it has fewer than ``budget.race_repeats`` extra repeats."""
    budget = spec.budget.race_repeats
    todo = []
    for cond in sorted({r.condition for r in runs}, key=str):
        best: dict[str, Contender] = {}
        for r in sorted((r for r in runs if r.condition == cond), key=lambda r: float(r.summary["val_mae"])):
            best.setdefault(r.family, r)
        if len(best) < 2:
            continue
        v = verdict([c.entry() for c in best.values()])
        if v["clear"]:
            continue
        racing = v["tied"]
        if len(racing) < 2:  # not clear, yet no other family reaches TIED: the leader and its closest rival
            p = v["p_best"]
            racing = sorted(p, key=lambda f: -(p[f] or 0.0))[:2]
        for fam in racing:
            c = best[fam]
            extra = int(c.summary.get("raced_repeats") or 0)
            if extra < budget:
                first = spec.budget.repeats + extra
                todo.append((c, first, first + 1))
    return todo


def describe_round(spec: Any, todo: list[tuple[Contender, int, int]], names: dict[str, str]) -> str:
    conds = sorted({c.condition for c, _, _ in todo}, key=str)
    parts = []
    for cond in conds:
        fams = [c.family for c, _, _ in todo if c.condition == cond]
        where = " | ".join(str(x) for x in cond)
        parts.append(f"{where}: {', '.join(fams)}")
    return "; ".join(parts)


def race(spec: Any, exp: Any, console: Any, finals: list[tuple[str, dict[str, Any], dict[str, Any]]],
         paths: dict[str, str]) -> dict[str, list[dict[str, Any]]]:
    """Run racing rounds until every condition's order is clear or the budget is spent; returns race.json's
    content. ``finals``: the search's finished trials (Ray trial id, params, final summary)."""
    raced = read_race(exp.root)
    if not spec.budget.race_repeats or len(conditions(spec)) == 0:
        return raced
    names = spec.data.names()
    for rnd in range(1, spec.budget.race_repeats * 64 + 1):
        todo = plan(spec, contenders(spec, finals, raced))
        if not todo:
            break
        console.print(f"racing round {rnd}: one more repeat for the families validation cannot yet separate "
                      f"({describe_round(spec, todo, names)})", highlight=False)
        configs = [{**c.params, RACE_BLOCK: [a, b]} for c, a, b in todo]
        results = _run_round(spec, exp, console, configs, paths, rnd)
        failed = 0
        for (c, _, _), res in zip(todo, results):
            if res is None or not res.get("final"):
                failed += 1
                continue
            raced.setdefault(c.trial_id, []).append({k: v for k, v in res.items() if _plain(v)})
        _write_race(exp.root, raced)
        if failed == len(todo):  # nothing came back: stop rather than loop on a broken configuration
            console.print(f"racing round {rnd}: every race trial failed; racing stops (the search's results stand)")
            break
    else:
        return raced
    left = plan(spec, contenders(spec, finals, raced))
    console.print("racing: " + ("the order is clear in every condition" if not left else
                                f"budget spent (race_repeats {spec.budget.race_repeats}); still tied: "
                                f"{describe_round(spec, left, names)}"), highlight=False)
    return raced


def _plain(v: Any) -> bool:
    return isinstance(v, (str, int, float, bool)) or v is None


def _run_round(spec: Any, exp: Any, console: Any, configs: list[dict[str, Any]], paths: dict[str, str],
               rnd: int) -> list[dict[str, Any] | None]:
    """One round's race trials as a Ray Tune run (grid over the contenders); their final metrics, in order."""
    from ray import tune
    from ray.tune import FailureConfig, RunConfig, TuneConfig, Tuner

    from tlsearch.search import tracking
    from tlsearch.search.trainable import trainable

    fn = tune.with_parameters(trainable, spec=spec.model_dump(mode="json"), paths=paths, race=configs)
    res = spec.resources
    fn = tune.with_resources(fn, {"cpu": res.cpus_per_trial, "gpu": res.gpus_per_trial})
    tuner = Tuner(
        fn, param_space={RACE_INDEX: tune.grid_search(list(range(len(configs))))},
        tune_config=TuneConfig(max_concurrent_trials=res.max_concurrent, reuse_actors=True,
                               trial_dirname_creator=lambda t: f"r{t.trial_id[-5:]}"),
        run_config=RunConfig(name=f"race{rnd}-{int(time.time())}", storage_path=exp.tune_storage, verbose=0,
                             callbacks=tracking.callbacks(spec, exp, console),
                             failure_config=FailureConfig(max_failures=res.max_failures)))
    grid = tuner.fit()
    out: list[dict[str, Any] | None] = [None] * len(configs)
    for r in grid:
        if r.metrics and r.config and RACE_INDEX in r.config:
            out[int(r.config[RACE_INDEX])] = dict(r.metrics)
    return out
