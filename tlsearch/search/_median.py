"""``scheduler: {type: median}``: Ray's median stopping rule, one per FT size (Ray is imported in ``make`` only).

From ``grace_period`` epochs on, after every epoch of its first repeat, a trial stops when its best validation
MAE so far is worse than the median, over the other trials of its FT size that got that far, of their mean
validation MAE from ``grace_period`` to that epoch (the Vizier rule), provided at least ``min_samples_required``
such trials exist; with fewer it goes on. Unlike ASHA it needs no rungs: any trial clearly behind its size's
typical curve stops at the next epoch, and trials of the same size are never compared with those of another
(``GroupedScheduler``). No decision falls on the last epoch (a stop there would cut a trial just before its
summary), and the rule never pauses a trial, so the trainable needs no checkpoint at its decisions.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from tlsearch.search._plugin import SchedulerPlugin, SchedulerSpec, ft_size_groups, limited

if TYPE_CHECKING:
    from tlsearch.search.spec import SearchSpec


class MedianStopping(SchedulerSpec):
    type: Literal["median"]
    grace_period: int = Field(3, ge=1, description="epochs every trial runs before the rule may stop it")
    min_samples_required: int = Field(3, ge=1, description="other trials of the FT size needed for a median")


def decision_epochs(spec: SearchSpec) -> set[int]:
    """Every epoch from ``grace_period`` up to, not including, the last."""
    return set(range(spec.scheduler.grace_period, spec.budget.max_epochs))


def make(spec: SearchSpec, searcher: Any, state_path: Path) -> tuple[Any, Any]:
    from functools import partial

    from ray.tune.schedulers import MedianStoppingRule

    from tlsearch.search._grouped import GroupedScheduler

    sch = spec.scheduler
    rule = partial(MedianStoppingRule, time_attr="training_iteration", grace_period=sch.grace_period,
                   min_samples_required=sch.min_samples_required, hard_stop=True)
    scheduler = GroupedScheduler(*ft_size_groups(spec), rule, decision_epochs(spec), label="median stopping")
    return limited(spec, searcher), scheduler


PLUGIN = SchedulerPlugin(MedianStopping, make, decision_epochs)
