"""The kinds of searched dimension (no Ray): the generic :class:`Dimension` (a range, a list of choices or a
fixed value, landing at one TrainConfig path) and the four that need more (the FT target, the PT source, the
MPT property subset, the freeze), with the helpers they share. The table of the study's dimensions, and
everything derived from it, is :mod:`tlsearch.search.dimensions`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import combinations
from typing import TYPE_CHECKING, Any, Callable, Literal

from tlsearch.search.spec import FloatRange, IntRange

if TYPE_CHECKING:
    from tlsearch.search.spec import SearchSpec

Branch = Literal["all", "transfer", "finetune", "mpt"]
Dtype = Literal["String", "Int64", "Float64", "Boolean"]


def in_branch(branch: Branch, strategy: str) -> bool:
    """Whether a dimension of ``branch`` exists in a trial of ``strategy``."""
    return branch == "all" or branch == strategy or (branch == "transfer" and strategy != "scratch")


def suggest(trial: Any, name: str, dim: Any) -> Any:
    """One ``suggest_*`` call for a declared dimension; a fixed value (a scalar, a one-element list) is not
    suggested."""
    if isinstance(dim, FloatRange):
        return trial.suggest_float(name, dim.low, dim.high, log=dim.log)
    if isinstance(dim, IntRange):
        return trial.suggest_int(name, dim.low, dim.high, step=dim.step)
    if isinstance(dim, list):
        return dim[0] if len(dim) == 1 else trial.suggest_categorical(name, list(dim))
    return dim


def fixed(dim: Any) -> Any:
    """The value of a dimension that was not suggested (a scalar or a one-element list; for a range, its low
    end, used only when checking configs)."""
    if isinstance(dim, list):
        return dim[0]
    if isinstance(dim, (FloatRange, IntRange)):
        return dim.low
    return dim


def extremes(dim: Any) -> list[Any]:
    if isinstance(dim, (FloatRange, IntRange)):
        return [dim.low, dim.high]
    return list(dim) if isinstance(dim, list) else [dim]


def _sampled(params: dict[str, Any], name: str) -> bool:
    v = params.get(name)
    return v is not None and not (isinstance(v, float) and math.isnan(v))  # Ray's results: NaN = not sampled


def _land(cfg: dict[str, Any], path: str, value: Any) -> None:
    *parents, leaf = path.split(".")
    for p in parents:
        cfg = cfg.setdefault(p, {})
    cfg[leaf] = value


@dataclass(frozen=True)
class Dimension:
    """A dimension the spec declares as a range, a list of choices or a fixed value (``declared``), suggested
    under its own name in ``branch``; its value, through ``cast``, lands at ``lands`` (a dotted path into the
    TrainConfig) and is the report column ``name`` (``dtype``, ``doc``). ``shown``: `tlsearch status` names it
    for every trial, fixed or not (what tells trials apart at a glance); ``family``: part of the strategy family."""

    name: str
    branch: Branch
    declared: Callable[[SearchSpec], Any]
    lands: str
    cast: Callable[[Any], Any]
    dtype: Dtype
    doc: str
    shown: bool = False
    family: bool = False

    def owns(self, param: str) -> bool:
        """Whether an Optuna parameter (a W&B config key) belongs to this dimension."""
        return param == self.name

    def params(self) -> tuple[str, ...]:
        """The parameters it may sample, in display order (the W&B report's parallel coordinates)."""
        return (self.name,)

    def suggest(self, trial: Any, spec: SearchSpec) -> Any:
        return suggest(trial, self.name, self.declared(spec))

    def resolve(self, spec: SearchSpec, params: dict[str, Any]) -> dict[str, Any]:
        return {self.name: params[self.name] if _sampled(params, self.name) else fixed(self.declared(spec))}

    def land(self, cfg: dict[str, Any], values: dict[str, Any], spec: SearchSpec) -> None:
        _land(cfg, self.lands, self.cast(values[self.name]))

    def choices(self, spec: SearchSpec) -> list[dict[str, Any]]:
        """Parameters that put this dimension at each of its choices and range ends (check_trial_configs)."""
        return [{self.name: v} for v in extremes(self.declared(spec))]

    def check(self, spec: SearchSpec) -> None:
        """Mistakes in the declaration no single trial config shows (raise UserInputError)."""

    def columns(self) -> dict[str, tuple[Dtype, str]]:
        return {self.name: (self.dtype, self.doc)}

    def row(self, values: dict[str, Any]) -> dict[str, Any]:
        """Its report columns for a trial with these resolved values (None where it does not apply)."""
        v = values.get(self.name)
        return {self.name: None if v is None else _COLUMN_CAST[self.dtype](v)}


_COLUMN_CAST: dict[str, Callable[[Any], Any]] = {"String": str, "Int64": int, "Float64": float, "Boolean": bool}


def target_of(spec: SearchSpec, params: dict[str, Any]) -> tuple[int, str]:
    """(index, label) of a trial's FT target: its sampled ``target``, else the spec's first (only) one."""
    labels = [t.label for t in spec.data.ft_targets]
    label = params["target"] if _sampled(params, "target") else labels[0]
    return labels.index(label), label


def per_target(spec: SearchSpec, name: str, index: int) -> str:
    """The parameter name of a target-dependent dimension: its choices (PT sources, MPT sets) leave the trial's
    target out, so with several targets each target has its own parameter (``<name>_t<index>``: an Optuna
    parameter keeps one distribution); a single-target study keeps the plain name."""
    return name if len(spec.data.ft_targets) == 1 else f"{name}_t{index}"


class Target(Dimension):
    """The FT target: one of ``data.targets`` (a condition of the study, like the FT size: the sampler gives every
    target its share and schedulers compare trials of one target only); lands as that data entry."""

    def land(self, cfg: dict[str, Any], values: dict[str, Any], spec: SearchSpec) -> None:
        entry = next(t for t in spec.data.ft_targets if t.label == values[self.name])
        _land(cfg, self.lands, data_ref(entry))


class PtSource(Dimension):
    """The PT source of a finetune trial: one of the spec's ``pretrain_sources`` other than the trial's target,
    by label (parameter ``pt_source``, or ``pt_source_t<i>`` per target of a study with several); it lands as
    that data entry in ``pretrain.sources``."""

    def owns(self, param: str) -> bool:
        return param == self.name or param.startswith(f"{self.name}_t")

    def _choices(self, spec: SearchSpec, label: str) -> list[str]:
        return [p.label for p in spec.pt_sources_for(label)]

    def suggest(self, trial: Any, spec: SearchSpec) -> Any:
        i, label = target_of(spec, trial.params)
        return suggest(trial, per_target(spec, self.name, i), self._choices(spec, label))

    def resolve(self, spec: SearchSpec, params: dict[str, Any]) -> dict[str, Any]:
        i, label = target_of(spec, params)
        name = per_target(spec, self.name, i)
        return {self.name: params[name] if _sampled(params, name) else fixed(self._choices(spec, label))}

    def choices(self, spec: SearchSpec) -> list[dict[str, Any]]:
        return [{"target": t.label, per_target(spec, self.name, i): v} for i, t in enumerate(spec.data.ft_targets)
                for v in self._choices(spec, t.label)]

    def land(self, cfg: dict[str, Any], values: dict[str, Any], spec: SearchSpec) -> None:
        _land(cfg, self.lands, [_entry(spec, values[self.name])])


class MptSubset(Dimension):
    """The MPT property set: its size ``mpt_size`` (``search.mpt_subset``), then which combination of that size
    (``mpt_combo_<size>``), so every parameter keeps one fixed distribution; it resolves to ``mpt_properties``
    (the candidates' labels) and lands as those data entries in ``pretrain.sources``."""

    def owns(self, param: str) -> bool:
        return param.startswith("mpt_size") or param.startswith("mpt_combo_")

    def params(self) -> tuple[str, ...]:
        return ("mpt_size",)

    @staticmethod
    def _sizes(spec: SearchSpec, target: str) -> tuple[int, int, int]:
        n, sub = len(spec.mpt_candidates_for(target)), spec.search.mpt_subset
        return n, sub.min_size, min(sub.max_size or n, n)

    def suggest(self, trial: Any, spec: SearchSpec) -> None:
        t, label = target_of(spec, trial.params)
        n, lo, hi = self._sizes(spec, label)
        k = suggest(trial, per_target(spec, "mpt_size", t), IntRange(low=lo, high=hi) if hi > lo else lo)
        if math.comb(n, k) > 1:
            trial.suggest_int(per_target(spec, f"mpt_combo_{k}", t), 0, math.comb(n, k) - 1)

    def resolve(self, spec: SearchSpec, params: dict[str, Any]) -> dict[str, Any]:
        t, label = target_of(spec, params)
        n, lo, _ = self._sizes(spec, label)
        size, combo = per_target(spec, "mpt_size", t), None
        k = int(params[size]) if _sampled(params, size) else lo
        combo = per_target(spec, f"mpt_combo_{k}", t)
        i = int(params[combo]) if _sampled(params, combo) else 0
        return {self.name: [spec.mpt_candidates_for(label)[j].label for j in mpt_combinations(n, k)[i]]}

    def land(self, cfg: dict[str, Any], values: dict[str, Any], spec: SearchSpec) -> None:
        _land(cfg, self.lands, [_entry(spec, label) for label in values[self.name]])

    def choices(self, spec: SearchSpec) -> list[dict[str, Any]]:
        return []  # every set is made of data entries the spec validated already

    def columns(self) -> dict[str, tuple[Dtype, str]]:
        return {self.name: ("String", self.doc), "mpt_size": ("Int64", "number of MPT properties (mpt)")}

    def row(self, values: dict[str, Any]) -> dict[str, Any]:
        v = values.get(self.name)
        return {self.name: None if v is None else " + ".join(v), "mpt_size": None if v is None else len(v)}


class Freeze(Dimension):
    """What fine-tuning retrains: a named freeze strategy (``search.freeze``), or a depth (``search.freeze_depth``,
    a range: that many blocks from the input frozen) when the spec gives one; the report column says either."""

    def _param(self, spec: SearchSpec) -> str:
        return "freeze_depth" if spec.search.freeze_depth is not None else "freeze"

    def _declared(self, spec: SearchSpec) -> Any:
        s = spec.search
        return s.freeze_depth if s.freeze_depth is not None else list(s.freeze)

    def owns(self, param: str) -> bool:
        return param in ("freeze", "freeze_depth")

    def params(self) -> tuple[str, ...]:
        return ("freeze", "freeze_depth")

    def suggest(self, trial: Any, spec: SearchSpec) -> None:
        suggest(trial, self._param(spec), self._declared(spec))

    def resolve(self, spec: SearchSpec, params: dict[str, Any]) -> dict[str, Any]:
        name = self._param(spec)
        v = params[name] if _sampled(params, name) else fixed(self._declared(spec))
        return {name: int(v) if name == "freeze_depth" else v}

    def land(self, cfg: dict[str, Any], values: dict[str, Any], spec: SearchSpec) -> None:
        name = self._param(spec)
        _land(cfg, f"train.{name}", values[name])

    def choices(self, spec: SearchSpec) -> list[dict[str, Any]]:
        return [{self._param(spec): v} for v in extremes(self._declared(spec))]

    def check(self, spec: SearchSpec) -> None:
        s, a = spec.search, spec.search.architecture
        if s.freeze_depth is None or not set(s.strategy) - {"scratch"}:
            return
        from tlsearch.errors import UserInputError

        deepest = max(extremes(s.freeze_depth))
        n_a, n_g = min(extremes(a.alignn_layers)), min(extremes(a.gcn_layers))
        if deepest > 1 + n_a + n_g:
            raise UserInputError(
                f"search.freeze_depth: {deepest} exceeds the {1 + n_a + n_g} blocks of the smallest searched model "
                f"(embeddings + {n_a} ALIGNN + {n_g} GCN layers); fix: freeze_depth at most {1 + n_a + n_g}, or "
                "more layers in search.architecture")

    def row(self, values: dict[str, Any]) -> dict[str, Any]:
        if "freeze_depth" in values:
            return {self.name: f"depth={values['freeze_depth']}"}
        return {self.name: values.get("freeze")}


def mpt_combinations(n: int, k: int) -> list[tuple[int, ...]]:
    return list(combinations(range(n), k))


def data_ref(entry: Any) -> dict[str, Any]:
    """A data entry as a trial config holds it: without its label, which names the data for a reader and
    changes nothing a trial trains (nor any cache or PT store key)."""
    return entry.model_dump(exclude={"name"})


def _entry(spec: SearchSpec, label: str) -> dict[str, Any]:
    """The PT data entry (a PT source or an MPT property) the spec labels ``label``, as a trial config holds it."""
    d = spec.data
    return data_ref({p.label: p for p in [*d.pretrain_sources, *d.mpt_properties]}[label])
