"""Which pre-trained models a study's trials will ask the store for, as the trials' own TrainConfigs.

``tlsearch pretrain`` trains them ahead of a study: one per ``data.pretrain_sources`` entry (strategy
``finetune``) and one per MPT property subset that ``search.mpt_subset`` allows (strategy ``mpt``), for every
architecture the spec lets a trial pick. Each config is built with :func:`tlsearch.search.space.train_config`,
exactly as a trial builds its own, so both compute the same store key. Checkpoint sources pre-train nothing.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any

from tlsearch.errors import UserInputError
from tlsearch.search.dimensions import per_target
from tlsearch.search.space import mpt_combinations, train_config
from tlsearch.search.spec import FloatRange, IntRange, SearchSpec
from tlsearch.training.config import TrainConfig

MAX_ARCHITECTURES = 64
_ARCH = ("alignn_layers", "gcn_layers", "hidden_features", "embedding_features")


@dataclass(frozen=True)
class PlannedModel:
    strategy: str          # "finetune" or "mpt"
    label: str             # the PT source's label, or the MPT subset joined with " + "
    config: TrainConfig    # the first repeat's trial config (its pretrain section decides the store key)


def _values(dim: Any) -> list[Any]:
    if isinstance(dim, IntRange):
        return list(range(dim.low, dim.high + 1, dim.step))
    return list(dim) if isinstance(dim, list) else [dim]


def _architectures(spec: SearchSpec, where: str) -> list[dict[str, Any]]:
    a = spec.search.architecture
    choices = [_values(getattr(a, name)) for name in _ARCH]
    n = math.prod(len(c) for c in choices)
    if n > MAX_ARCHITECTURES:
        raise UserInputError(
            f"{where}: search.architecture allows {n} architectures, more than the {MAX_ARCHITECTURES} "
            "`tlsearch pretrain` trains ahead (one PT model each); fix: narrow search.architecture, or let the "
            "trials pre-train on demand (`tlsearch run` does)")
    return [dict(zip(_ARCH, combo)) for combo in itertools.product(*choices)]


def plan(spec: SearchSpec, only: str | None = None, where: str = "space.yaml", **paths: Any) -> list[PlannedModel]:
    """Every PT model the spec's trials can ask for, in the order a user reads the spec. Raises
    :class:`UserInputError` when the spec pre-trains nothing or each trial pre-trains its own model."""
    s = spec.search
    transfer = [t for t in s.strategy if t in ("finetune", "mpt") and (only is None or t == only)]
    if not transfer:
        wanted = f"strategy {only!r}" if only else "a transfer strategy (finetune or mpt)"
        raise UserInputError(
            f"{where}: search.strategy is {list(s.strategy)}, without {wanted}: no trial of this study pre-trains "
            "a model; fix: add finetune or mpt to search.strategy" + (" or drop --only" if only else ""))
    if isinstance(s.pt_lr, FloatRange) or (isinstance(s.pt_lr, list) and len(set(s.pt_lr)) > 1):
        got = s.pt_lr.model_dump() if isinstance(s.pt_lr, FloatRange) else s.pt_lr
        raise UserInputError(
            f"{where}: search.pt_lr is searched ({got}): each trial pre-trains its own model at its sampled "
            "PT learning rate, so there is nothing to train ahead; fix: give search.pt_lr one value")
    archs = _architectures(spec, where)
    out: list[PlannedModel] = []
    targets = [t.label for t in spec.data.ft_targets]
    if "finetune" in transfer:
        for src in spec.data.pretrain_sources:
            if getattr(src, "checkpoint", None) is not None:
                continue  # starts from the checkpoint's weights: nothing to pre-train
            # several targets: every target's test set is left out of PT, so one model serves each target
            # that may use the source; its config is built as the first such target's trials build theirs
            t = next(i for i, label in enumerate(targets) if src in spec.pt_sources_for(label))
            for arch in archs:
                params = {"strategy": "finetune", "target": targets[t], per_target(spec, "pt_source", t): src.label}
                out.append(PlannedModel("finetune", src.label, train_config(spec, {**params, **arch}, **paths)))
    if "mpt" in transfer:
        seen: set[str] = set()
        for t, target in enumerate(targets):  # the MPT sets leave the trial's target out: they differ by target
            cands = spec.mpt_candidates_for(target)
            n = len(cands)
            max_k = min(s.mpt_subset.max_size or n, n)
            for k in range(s.mpt_subset.min_size, max_k + 1):
                for i, combo in enumerate(mpt_combinations(n, k)):
                    label = " + ".join(cands[j].label for j in combo)
                    if label in seen:
                        continue
                    seen.add(label)
                    for arch in archs:
                        params = {"strategy": "mpt", "target": target, per_target(spec, "mpt_size", t): k,
                                  per_target(spec, f"mpt_combo_{k}", t): i, **arch}
                        out.append(PlannedModel("mpt", label, train_config(spec, params, **paths)))
    return out
