"""``scheduler: {type: asha}`` (the default): its spec, decision epochs and factory (no Ray here; the scheduler
itself, one ASHA per FT size with the family rule, is ``_scheduler.GroupedASHA``)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from tlsearch.search._plugin import SchedulerPlugin, SchedulerSpec, ft_size_groups, limited

if TYPE_CHECKING:
    from tlsearch.search.spec import SearchSpec


class ASHA(SchedulerSpec):
    type: Literal["asha"] = "asha"
    grace_period: int = Field(3, ge=1)
    reduction_factor: float = Field(3.0, gt=1)
    # the best trial of each strategy family at a rung goes on (see _scheduler.py): no family is dropped wholesale
    protect_families: bool = True


def decision_epochs(spec: SearchSpec) -> set[int]:
    """ASHA's rungs, ``grace_period * reduction_factor**k`` epochs for as many k as Ray's ASHA makes with
    ``max_t`` one past the last epoch, each decided at the first epoch that reaches it; none on the last epoch
    (GroupedASHA drops a rung there)."""
    sch, last = spec.scheduler, spec.budget.max_epochs
    grace, eta = sch.grace_period, sch.reduction_factor
    n = int(math.log((last + 1) / grace) / math.log(eta) + 1)  # Ray's ASHA: its number of rungs
    return {e for e in (math.ceil(grace * eta**k) for k in range(max(n, 0))) if e < last}


def make(spec: SearchSpec, searcher: Any, state_path: Path) -> tuple[Any, Any]:
    from tlsearch.search._scheduler import GroupedASHA

    sch, epochs = spec.scheduler, spec.budget.max_epochs
    # max_t is one past the last epoch: a finished trial's summary comes at that iteration
    return limited(spec, searcher), GroupedASHA(*ft_size_groups(spec), max_t=epochs + 1, grace_period=sch.grace_period,
                                                reduction_factor=sch.reduction_factor, last_epoch=epochs,
                                                protect_families=sch.protect_families)


PLUGIN = SchedulerPlugin(ASHA, make, decision_epochs)
