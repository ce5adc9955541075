"""What a scheduler module declares (no Ray): the contract between one scheduler and the rest of tlsearch.

A scheduler module (``_asha.py``, ``_sh_bracket.py``, ``_fifo.py``, ``_median.py``) defines ``PLUGIN``, a
``SchedulerPlugin``, and takes one line in the registry (``tlsearch.search.schedulers``):

- ``spec``: its section of ``space.yaml``, a ``SchedulerSpec`` with ``type: Literal["<name>"]``. The spec's
  ``scheduler:`` union is built from every registered model, discriminated on ``type``, so ``tlsearch
  validate`` and docs/spec.md (tests/test_docs_spec.py) see every type;
- ``make(spec, searcher, state_path) -> (searcher, scheduler)``: the concurrency-limited searcher and the Ray
  Tune scheduler of a study (Ray is imported inside it, never at module level: ``tlsearch status`` and
  ``validate`` load the spec without Ray); ``state_path`` is a file in the experiment directory for a
  scheduler whose state Tune does not keep across a resume;
- ``decision_epochs(spec) -> set[int]``: the epochs of the first repeat after which its decisions fall;
- ``pauses``: whether a trial waits at a decision and later resumes from its checkpoint there; the trainable
  then checkpoints at every decision epoch (a scheduler that only stops trials needs no checkpoint there).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, get_args

from tlsearch._models import Strict

if TYPE_CHECKING:
    from tlsearch.search.spec import SearchSpec


class SchedulerSpec(Strict):
    """A scheduler's section of ``space.yaml`` (unknown keys rejected); subclasses narrow ``type`` to a Literal."""

    type: str


Make = Callable[["SearchSpec", Any, Path], tuple[Any, Any]]


@dataclass(frozen=True)
class SchedulerPlugin:
    spec: type[SchedulerSpec]
    make: Make
    decision_epochs: Callable[["SearchSpec"], set[int]]
    pauses: bool = False

    @property
    def type(self) -> str:
        """The spec's ``type`` value that selects this scheduler (the one value of its Literal)."""
        (name,) = get_args(self.spec.model_fields["type"].annotation)
        return str(name)


def limited(spec: SearchSpec, searcher: Any) -> Any:
    """The searcher behind Ray's ConcurrencyLimiter at ``resources.max_concurrent`` (imports Ray)."""
    from ray.tune.search import ConcurrencyLimiter

    return ConcurrencyLimiter(searcher, max_concurrent=spec.resources.max_concurrent)


def ft_size_groups(spec: SearchSpec) -> tuple[Any, Any]:
    """The grouping every scheduler here uses: the trial config's ``ft_size`` (else the first size), and its
    ``target`` too in a study with several (``conditions.group_keys``)."""
    from tlsearch.search.conditions import group_keys

    return group_keys(spec)
