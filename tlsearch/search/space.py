"""The study's search space as a pure Optuna define-by-run function (only ``suggest_*`` calls, no I/O),
and the mapping from sampled parameters to a :class:`TrainConfig`, both derived from the one table of
dimensions (``dimensions.py``).

Conditional structure: PT source, freeze strategy and PT learning rate exist only for transfer
strategies; the MPT property subset only for ``mpt`` (its size first, then which combination, so every
parameter keeps one fixed distribution). Fixed values (scalars in the spec) are not suggested.
"""

from __future__ import annotations

from typing import Any

from tlsearch.search import dimensions as dims
from tlsearch.search.dimensions import STRATEGY, data_ref, family_key, mpt_combinations
from tlsearch.search.spec import SearchSpec
from tlsearch.training.config import TrainConfig, config_from_dict

__all__ = ["Space", "check_trial_configs", "family_key", "make_space", "mpt_combinations", "resolve", "train_config"]


class Space:
    """Picklable define-by-run function (Ray saves the searcher, space included, with the experiment): the
    strategy, then every dimension of its branch, in the order of ``dimensions.DIMENSIONS``."""

    def __init__(self, spec: SearchSpec) -> None:
        self.spec = spec

    def __call__(self, trial: Any) -> None:
        strategy = STRATEGY.suggest(trial, self.spec)
        for dim in dims.dimensions(strategy):
            if dim is not STRATEGY:
                dim.suggest(trial, self.spec)
        return None


def make_space(spec: SearchSpec) -> Space:
    return Space(spec)


def resolve(spec: SearchSpec, params: dict[str, Any]) -> dict[str, Any]:
    """Every dimension's value for a trial with these sampled ``params`` (NaN = not sampled), the rest fixed:
    the dimensions of its strategy's branch, in table order."""
    out: dict[str, Any] = {}
    for dim in dims.dimensions(STRATEGY.resolve(spec, params)["strategy"]):  # the strategy first: it is in the table
        out.update(dim.resolve(spec, params))
    return out


def train_config(spec: SearchSpec, params: dict[str, Any], repeat: int = 0, **paths: Any) -> TrainConfig:
    """The TrainConfig of one trial (and one repeat: repeats differ in the FT sample and the seed): what the
    spec fixes, then each dimension's value where its table entry says it lands."""
    v = resolve(spec, params)
    d, b = spec.data, spec.budget
    cfg: dict[str, Any] = {
        "name": f"{spec.name}",
        "eval_sets": [data_ref(e) for e in d.eval_sets],
        "test_fraction": d.test_fraction,
        "split_seed": d.split_seed,
        "seed": spec.seed + repeat,
        "graph": spec.graph.model_dump(),
        "model": {"backend": spec.search.architecture.backend},
        "train": {"sample_seed": spec.seed + repeat, "cv_folds": b.cv_folds, "optim": {"epochs": b.max_epochs}},
        **{k: str(p) for k, p in paths.items() if p is not None},
    }
    if v["strategy"] != "scratch":
        cfg["pretrain"] = {"sample_size": d.pt_sample_size, "optim": {"epochs": b.pt_epochs, "batch_size": 32},
                           "seed": spec.seed}
        if len(d.ft_targets) > 1:  # PT leaves out every target's test set: one PT model per source serves them all
            cfg["pretrain"]["held_out_of"] = [data_ref(t) for t in d.ft_targets if t.label != v["target"]]
    for dim in dims.dimensions(v["strategy"]):
        dim.land(cfg, v, spec)
    return config_from_dict(cfg, where=f"trial config of {spec.name}")


def check_trial_configs(spec: SearchSpec) -> None:
    """Build the trial config at every choice and both ends of every range, one dimension at a time, so a
    value the spec accepts but every trial would reject (an lr above 1, a layer count out of bounds) is
    reported when the spec is loaded, not when the trials fail; then each dimension's own checks (a freeze
    depth deeper than the smallest searched model)."""
    for strategy in spec.search.strategy:
        for dim in dims.dimensions(strategy):
            if dim is not STRATEGY:
                for params in dim.choices(spec):
                    train_config(spec, {"strategy": strategy, **params})
    for dim in dims.DIMENSIONS:
        dim.check(spec)
