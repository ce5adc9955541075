"""The scheduler registry (no Ray): spec ``scheduler.type`` -> the scheduler module that declares it.

Each module in ``MODULES`` defines ``PLUGIN`` (see ``_plugin.py``). From the registry come the spec's
``scheduler:`` union (``spec.py``), the study's searcher and scheduler (``runner.py``) and the epochs at which
a trial must have a checkpoint (``trainable.py``). A new scheduler is one module and one line here.
"""

from __future__ import annotations

from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

from tlsearch.search._plugin import SchedulerPlugin

if TYPE_CHECKING:
    from tlsearch.search.spec import SearchSpec

#: one line per scheduler module; the first is the default (a ``scheduler:`` section without ``type``)
MODULES = (
    "tlsearch.search._asha",        # asha
    "tlsearch.search._sh_bracket",  # sh
    "tlsearch.search._fifo",        # none
    "tlsearch.search._median",      # median
)

SCHEDULERS: dict[str, SchedulerPlugin] = {p.type: p for p in (import_module(m).PLUGIN for m in MODULES)}
DEFAULT = next(iter(SCHEDULERS))

#: the spec models of every registered scheduler, for a union discriminated on ``type``
SchedulerChoice: Any = Union[tuple(p.spec for p in SCHEDULERS.values())]  # noqa: UP007 - built at run time


def plugin(spec: SearchSpec) -> SchedulerPlugin:
    return SCHEDULERS[spec.scheduler.type]


def make(spec: SearchSpec, searcher: Any, state_path: Path) -> tuple[Any, Any]:
    """The concurrency-limited searcher and the trial scheduler of a study (imports Ray)."""
    return plugin(spec).make(spec, searcher, state_path)


def decision_epochs(spec: SearchSpec) -> set[int]:
    return plugin(spec).decision_epochs(spec)


def checkpoint_epochs(spec: SearchSpec) -> set[int]:
    """The epochs of the first repeat a trial must checkpoint after: its scheduler's decision epochs where the
    scheduler pauses trials there (they resume from that checkpoint), else none."""
    p = plugin(spec)
    return p.decision_epochs(spec) if p.pauses else set()
