"""The ``data`` section of ``space.yaml``: what the models learn, and the names a reader sees for it.

A data entry is ``{dataset: REF, property: NAME, label: TEXT}``. ``dataset/property`` identifies the data
everywhere (trial parameters, trials.parquet, eval-set keys, caches, the PT store), so a spec that adds or
changes a ``label`` runs, resumes and reuses PT models exactly as without it; the label only names the data
where a person reads it (conclusions, report tables and plots, ``tlsearch status``, W&B).
"""

from __future__ import annotations

from typing import Annotated, Any, Iterator, Literal, Union

from pydantic import (ConfigDict, Discriminator, Field, Tag, field_validator, model_serializer,
                      model_validator)

from tlsearch._models import Strict
from tlsearch.training.config import CheckpointSpec, TargetSpec, source_kind


class DataEntry(TargetSpec):
    """A (dataset, property) of the study with an optional ``label`` (attribute ``name``; ``label`` stays the
    ``dataset/property`` identity)."""

    model_config = ConfigDict(serialize_by_alias=True)

    name: str | None = Field(None, alias="label", description="the name a reader sees (default: the reference)")

    @field_validator("name")
    @classmethod
    def _a_name(cls, v: str | None) -> str | None:
        if v is not None and not v.strip():
            raise ValueError("a label names the data in reports: give a non-empty text, or leave label out")
        if v is not None and not v.isprintable():
            raise ValueError("a label is one line of printable text (no newline, tab or control character)")
        return v.strip() if v is not None else None

    @model_serializer(mode="wrap")
    def _no_empty_label(self, handler: Any) -> Any:
        out = handler(self)  # an unlabelled entry is written as before (spec.json, trial configs)
        if isinstance(out, dict):
            for key in [k for k in ("label", "name") if k in out and out[k] is None]:
                del out[key]
        return out


# a pre-training source: a (dataset, property) to pre-train on, or a checkpoint to start from
PTSource = Annotated[Union[Annotated[DataEntry, Tag("TargetSpec")], Annotated[CheckpointSpec, Tag("CheckpointSpec")]],
                     Discriminator(source_kind)]


class DataSpec(Strict):
    # one FT target (``target``), or several in one study (``targets``: each is a condition like the FT size)
    target: DataEntry | None = None
    targets: list[DataEntry] = []
    pretrain_sources: list[PTSource] = []  # {dataset, property}, or {checkpoint, label} (docs/pretrained.md)
    mpt_properties: list[DataEntry] = []
    eval_sets: list[DataEntry] = []
    pretrained: list[str] = []  # files of `tlsearch models export`, imported into the store (see docs/pretrained.md)
    pt_sample_size: Union[int, Literal["all"]] = "all"
    test_fraction: float = Field(0.1, gt=0, lt=1)
    split_seed: int = 0

    @model_validator(mode="after")
    def _one_way_to_name_targets(self) -> "DataSpec":
        if (self.target is None) == (not self.targets):
            raise ValueError("give the FT target as data.target (one) or data.targets (a list of several), "
                             + ("not both" if self.target is not None else "one of them is required"))
        seen: dict[str, int] = {}
        for i, t in enumerate(self.targets):
            if t.label in seen:
                raise ValueError(f"data.targets.{i} ({t.label}) repeats data.targets.{seen[t.label]}; fix: list each "
                                 "target once")
            seen[t.label] = i
        return self

    @property
    def ft_targets(self) -> list[DataEntry]:
        """The study's FT targets, in spec order (``[target]`` for a single-target spec)."""
        return [self.target] if self.target is not None else list(self.targets)

    def _entries(self) -> Iterator[tuple[str, Any]]:
        if self.target is not None:
            yield "target", self.target
        yield from ((f"targets.{i}", e) for i, e in enumerate(self.targets))
        for section in ("pretrain_sources", "mpt_properties", "eval_sets"):
            yield from ((f"{section}.{i}", e) for i, e in enumerate(getattr(self, section)))

    @model_validator(mode="after")
    def _one_name_each(self) -> "DataSpec":
        """A label names one (dataset, property), and a (dataset, property) has one label (written once is
        enough: its other entries take it); a checkpoint source's label is its name."""
        name_of: dict[str, tuple[str, str]] = {}  # identity -> (label, where)
        data_of: dict[str, tuple[str, str]] = {}  # label -> (identity, where)
        for where, e in self._entries():
            name = e.label if isinstance(e, CheckpointSpec) else e.name
            if name is None:
                continue
            if e.label in name_of and name_of[e.label][0] != name:
                n, w = name_of[e.label]
                raise ValueError(f"{where}.label {name!r} and {w}.label {n!r} name the same data ({e.label}); "
                                 "fix: give it one label (writing it once is enough)")
            if name in data_of and data_of[name][0] != e.label:
                ident, w = data_of[name]
                raise ValueError(f"{where}.label {name!r} also names {ident} ({w}); fix: give each dataset "
                                 "property its own label")
            name_of.setdefault(e.label, (name, where))
            data_of.setdefault(name, (e.label, where))
        return self

    def names(self) -> dict[str, str]:
        """``dataset/property`` -> its label, for the labelled data only (a reader's name for everything else
        is derived from the reference as before)."""
        out: dict[str, str] = {}
        for _, e in self._entries():
            if getattr(e, "name", None) and not isinstance(e, CheckpointSpec):
                out.setdefault(e.label, e.name)
        return out
