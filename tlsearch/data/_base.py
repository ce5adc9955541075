"""Records, datasets and the one small interface every data source implements."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

if TYPE_CHECKING:
    from jarvis.core.atoms import Atoms

from tlsearch.data._ref import DatasetRef
from tlsearch.errors import BadReferenceError, EmptyDatasetError, UnknownChoiceError


@dataclass(frozen=True)
class Record:
    """One labelled crystal. ``targets`` holds only finite values; a missing label is simply absent."""

    id: str
    atoms: Atoms
    targets: Mapping[str, float]


@dataclass(frozen=True)
class Skipped:
    """An entry that was left out, and why (``reason`` is a short fixed tag, ``detail`` free text)."""

    id: str
    reason: str
    detail: str = ""


@dataclass(frozen=True)
class Candidate:
    """What a source yields: a parsed structure, or the error that parsing it raised."""

    id: str
    atoms: Atoms | None
    targets: Mapping[str, Any]
    error: str = ""
    reason: str = ""  # why there is no structure, when the source knows better than "unparsable structure"


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    properties: tuple[str, ...]
    description: str = ""
    size: int | None = None


@dataclass
class Dataset:
    ref: DatasetRef
    records: list[Record]
    properties: tuple[str, ...]
    skipped: list[Skipped] = field(default_factory=list)
    provenance: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.records)

    @property
    def ids(self) -> list[str]:
        return [r.id for r in self.records]

    def skipped_by_reason(self) -> dict[str, int]:
        return dict(Counter(s.reason for s in self.skipped))

    def values(self, prop: str) -> np.ndarray:
        """Target values of ``prop`` per record, NaN where missing."""
        self.require_property(prop)
        return np.array([r.targets.get(prop, math.nan) for r in self.records], dtype=np.float64)

    def require_property(self, prop: str) -> None:
        if prop not in self.properties:
            raise UnknownChoiceError("property", prop, self.properties, where=str(self.ref))

    def with_property(self, prop: str) -> "Dataset":
        """The records that have a finite ``prop``; the others are counted as skipped ('missing target')."""
        self.require_property(prop)
        kept = [r for r in self.records if prop in r.targets]
        missing = [Skipped(r.id, "missing target", prop) for r in self.records if prop not in r.targets]
        if not kept:
            raise EmptyDatasetError(f"{self.ref}: no record has a finite value of {prop!r}")
        return Dataset(self.ref, kept, (prop,), self.skipped + missing, dict(self.provenance))


class Source(ABC):
    """A named provider of datasets. Implementations yield :class:`Candidate` entries; validation
    (parse errors, non-finite targets, duplicate ids) is done once, centrally, in :func:`load_dataset`."""

    name: ClassVar[str]
    description: ClassVar[str]
    #: parameters accepted in a reference's query string, with their meaning
    params: ClassVar[Mapping[str, str]] = {}
    #: False for sources whose dataset name is a free-form path (``folder``)
    fixed_datasets: ClassVar[bool] = True

    @abstractmethod
    def datasets(self) -> dict[str, DatasetInfo]:
        """Datasets this source knows (for ``tlsearch data list`` and for name validation)."""

    @abstractmethod
    def candidates(self, ref: DatasetRef, cache_dir: Path) -> Iterator[Candidate]:
        """Yield every entry of the dataset, parsed or not."""

    def properties(self, ref: DatasetRef, cache_dir: Path) -> tuple[str, ...]:
        return self.datasets()[ref.name].properties

    def provenance(self, ref: DatasetRef, cache_dir: Path) -> dict[str, Any]:
        return {}

    def fingerprint(self, ref: DatasetRef) -> str:
        """Anything that changes the dataset's content must change this (used in the parsed-dataset cache key)."""
        return ""

    def check_ref(self, ref: DatasetRef) -> None:
        if self.fixed_datasets and ref.name not in self.datasets():
            raise UnknownChoiceError("dataset", ref.name, self.datasets(), where=f"source {self.name!r}")
        unknown = set(ref.param_dict) - set(self.params)
        if unknown:
            raise BadReferenceError(
                f"{ref}: unknown parameter(s) {sorted(unknown)}; valid parameters of source "
                f"{self.name!r}: {sorted(self.params) or '(none)'}"
            )
