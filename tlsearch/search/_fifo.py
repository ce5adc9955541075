"""``scheduler: {type: none}``: no early stopping, every trial runs all epochs and repeats in FIFO order."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from tlsearch.search._plugin import SchedulerPlugin, SchedulerSpec, limited

if TYPE_CHECKING:
    from tlsearch.search.spec import SearchSpec


class NoScheduler(SchedulerSpec):
    type: Literal["none"]


def decision_epochs(spec: SearchSpec) -> set[int]:
    return set()


def make(spec: SearchSpec, searcher: Any, state_path: Path) -> tuple[Any, Any]:
    from ray.tune.schedulers import FIFOScheduler

    return limited(spec, searcher), FIFOScheduler()


PLUGIN = SchedulerPlugin(NoScheduler, make, decision_epochs)
