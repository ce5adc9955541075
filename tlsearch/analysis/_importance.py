"""Parameter importance from the persistent Optuna study with PED-ANOVA (Optuna 5's default evaluator; it
keeps conditional parameters, which fANOVA silently drops). Computed over all trials with a value and, where
the space is conditional, per strategy branch (only that branch's trials, so its own parameters compete)."""

from __future__ import annotations

from typing import Any

from tlsearch.search.objectives import val_of

MIN_TRIALS = 4  # below this PED-ANOVA's top quantile is one trial: no signal


def _importance(trials: list[Any], notes: list[str]) -> dict[str, float] | str:
    import warnings

    import optuna
    from optuna.importance import PedAnovaImportanceEvaluator, get_param_importances

    if len(trials) < MIN_TRIALS:
        return f"too few trials with a value ({len(trials)} < {MIN_TRIALS})"
    # parameters that vary within these trials; the FT size is a condition (spread evenly by the sampler,
    # its validation errors incomparable), not a knob, so it is left out
    searched = sorted(p for p in {p for t in trials for p in t.params} if p != "ft_size"
                      and len({repr(t.params.get(p)) for t in trials}) > 1)
    if not searched:
        return "no parameter varies in these trials"
    study = optuna.create_study(direction="minimize")
    # by validation MAE (a two-objective study's trials carry their cost too)
    study.add_trials([optuna.trial.create_trial(params=t.params, distributions=t.distributions, value=val_of(t))
                      for t in trials])
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            imp = get_param_importances(study, evaluator=PedAnovaImportanceEvaluator(), params=searched,
                                        normalize=True)
    except (ValueError, RuntimeError, ZeroDivisionError) as exc:
        return f"not computable: {exc}"
    notes += [str(w.message) for w in caught if str(w.message) not in notes]
    return {k: float(v) for k, v in sorted(imp.items(), key=lambda kv: -kv[1])}


def importances(study: Any) -> tuple[dict[str, dict[str, float] | str], list[str]]:
    """{branch: {param: importance} or the reason none was computed}; branch 'all' plus one per strategy
    when more than one strategy was searched. Trials stopped early count with their last validation value
    (what the searcher saw); failed trials are left out."""
    import optuna

    done = [t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
            if val_of(t) is not None]
    notes: list[str] = []
    out: dict[str, dict[str, float] | str] = {"all": _importance(done, notes)}
    strategies = sorted({t.params["strategy"] for t in done if "strategy" in t.params})
    if len(strategies) > 1:
        for s in strategies:
            out[f"strategy={s}"] = _importance([t for t in done if t.params.get("strategy") == s], notes)
    return out, notes
