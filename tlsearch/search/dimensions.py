"""The searched dimensions, declared once.

Each entry of :data:`DIMENSIONS` says, for one dimension of the study's space: its name (the Optuna parameter,
the W&B config key and the ``trials.parquet`` column), the strategy branch it exists in, how the spec declares
it (a range, a list of choices or one fixed value), where its value lands in the trial's TrainConfig, and its
report column (type and meaning). Everything else is derived from the table, in its order:

- ``space.Space`` (the define-by-run function) suggests each dimension of the trial's branch;
- ``space.resolve`` (a trial's values: sampled ones from its parameters, the rest fixed) and
  ``space.train_config`` (where each value lands);
- ``space.check_trial_configs`` (every choice and both ends of every range, at validate time);
- ``status.details``, the dimension columns of ``trials.parquet`` (``analysis/_schema.py``, filled by
  ``analysis/_load.py``) and the parameters of the W&B report;
- the strategy family (scratch, PT->FT per source, MPT per property set): :func:`family_key` for the schedulers,
  :func:`family_label` for the report.

Adding a dimension is one entry here plus the training code that reads its TrainConfig field (see
docs/architecture.md). Four dimensions need more than the generic entry and say so in their own class
(``_dimension.py``): the FT target (a condition; it decides which PT sources and MPT sets a trial may take), the
PT source (a label that lands as a data reference; with several targets a parameter per target), the MPT
property subset (two parameters: its size, then which combination) and the freeze (named strategies, or a
depth when the spec searches ``freeze_depth``).
"""

from __future__ import annotations

from typing import Any

from tlsearch.search._dimension import (  # noqa: F401 - re-exported: the rest of tlsearch imports them from here
    Branch, Dimension, Dtype, Freeze, MptSubset, PtSource, Target, data_ref, extremes, fixed, in_branch,
    mpt_combinations, per_target, suggest, target_of)


def _arch(name: str, doc: str) -> Dimension:
    return Dimension(name, "all", lambda spec: getattr(spec.search.architecture, name), f"model.{name}", int,
                     "Int64", doc)


# the study's dimensions in the order the define-by-run function suggests them (that order is part of what a
# seeded sampler draws: keep it when adding one)
DIMENSIONS: tuple[Dimension, ...] = (
    Dimension("strategy", "all", lambda spec: list(spec.search.strategy), "mode", str, "String",
              "scratch | finetune | mpt", family=True),
    Target("target", "all", lambda spec: [t.label for t in spec.data.ft_targets], "target", str, "String",
           "FT target dataset/property (a condition, like the FT size)", shown=True),
    PtSource("pt_source", "finetune", lambda spec: [p.label for p in spec.data.pretrain_sources],
             "pretrain.sources", str, "String", "PT dataset:property (finetune)", shown=True, family=True),
    MptSubset("mpt_properties", "mpt", lambda spec: None, "pretrain.sources", list, "String",
              "MPT property set, ' + '-joined labels (mpt)", shown=True, family=True),
    Freeze("freeze", "transfer", lambda spec: None, "train.freeze", str, "String",
           "freeze strategy (all_unfrozen, 2b, 3b, new_head, last_layer) or depth=<k>", shown=True),
    Dimension("reinit_head", "transfer", lambda spec: list(spec.search.reinit_head), "train.reinit_head", bool,
              "Boolean", "head re-initialised before FT (transfer strategies)"),
    Dimension("pt_lr", "transfer", lambda spec: spec.search.pt_lr, "pretrain.optim.lr", float, "Float64",
              "PT peak learning rate (transfer strategies)"),
    Dimension("body_lr_factor", "transfer", lambda spec: spec.search.body_lr_factor, "train.body_lr_factor", float,
              "Float64", "body lr = ft_lr x this factor (transfer strategies)"),
    Dimension("ft_size", "all", lambda spec: list(spec.search.ft_size), "train.sample_size", lambda v: v, "String",
              "FT sample size as searched: an integer or 'all'", shown=True),
    Dimension("sampling", "all", lambda spec: list(spec.search.sampling), "train.sampling", str, "String",
              "FT sampling scheme: random | stratified | diverse"),
    Dimension("ft_lr", "all", lambda spec: spec.search.ft_lr, "train.optim.lr", float, "Float64",
              "FT (or scratch) peak learning rate"),
    Dimension("batch_size", "all", lambda spec: spec.search.batch_size, "train.optim.batch_size", int, "Int64",
              "FT batch size"),
    _arch("alignn_layers", "ALIGNN layers"),
    _arch("gcn_layers", "GCN layers"),
    _arch("hidden_features", "hidden width"),
    _arch("embedding_features", "embedding width"),
)


STRATEGY = DIMENSIONS[0]  # the branch every other dimension depends on


def dimensions(strategy: str) -> list[Dimension]:
    """The dimensions a trial of ``strategy`` has, in table order."""
    return [d for d in DIMENSIONS if in_branch(d.branch, strategy)]


def param_names() -> tuple[str, ...]:
    """Every parameter a space can sample under a fixed name, in table order (``mpt_combo_<k>`` not included)."""
    return tuple(p for d in DIMENSIONS for p in d.params())


def family_key(params: dict[str, Any]) -> str:
    """The strategy family of a trial's sampled parameters (what a scheduler must not drop wholesale): the
    strategy, then the sampled parameters of the family's dimensions (PT source; MPT size and combination)."""
    owned = [k for k in sorted(params) if any(d.family and d.name != "strategy" and d.owns(k) for d in DIMENSIONS)]
    return " ".join([str(params.get("strategy", "")), *(f"{k}={params[k]}" for k in owned)])


def family_label(values: dict[str, Any]) -> str:
    """The strategy family of a trial's resolved values, as the report names it: scratch, PT->FT(<source>) or
    MPT(<property set>)."""
    if values["strategy"] == "finetune":
        return f"PT->FT({values['pt_source']})"
    if values["strategy"] == "mpt":
        return f"MPT({' + '.join(values['mpt_properties'])})"
    return "scratch"
