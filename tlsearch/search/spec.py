"""``space.yaml``: the whole study in one validated file (pydantic, unknown keys rejected).

A searched value is written as a scalar (fixed), a list (categorical choice) or a range mapping
``{low, high, log?, step?}`` (float or int). Every mistake is reported as ``file: field: message``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from tlsearch.errors import UserInputError
from tlsearch.search._asha import ASHA
from tlsearch.search._fifo import NoScheduler  # noqa: F401 - the scheduler sections, importable from here too
from tlsearch.search._sh_bracket import SuccessiveHalving  # noqa: F401
from tlsearch.search.data_spec import DataEntry, DataSpec
from tlsearch.search.objectives import Objective
from tlsearch.search.objectives import check as check_objectives
from tlsearch.search.pt_files import resolve_paths
from tlsearch.search.schedulers import DEFAULT as DEFAULT_SCHEDULER
from tlsearch.search.schedulers import SCHEDULERS, SchedulerChoice
from tlsearch._models import Strict as _Strict
from tlsearch._models import format_errors
from tlsearch.training.config import FreezeStrategy, GraphSpec, ModelSpec


class FloatRange(_Strict):
    low: float
    high: float
    log: bool = False

    @model_validator(mode="after")
    def _ordered(self) -> "FloatRange":
        if not (math.isfinite(self.low) and math.isfinite(self.high)):
            raise ValueError(f"low and high must be finite numbers, got low={self.low}, high={self.high}")
        if not self.low < self.high:
            raise ValueError(f"low ({self.low}) must be < high ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError(f"a log range needs low > 0, got {self.low}")
        return self


class IntRange(_Strict):
    low: int
    high: int
    step: int = Field(1, ge=1)

    @model_validator(mode="after")
    def _ordered(self) -> "IntRange":
        if not self.low <= self.high:
            raise ValueError(f"low ({self.low}) must be <= high ({self.high})")
        return self


# a choice list needs at least one value (an empty one passed validation and broke every trial config)
FloatDim = Union[float, Annotated[list[float], Field(min_length=1)], FloatRange]
IntDim = Union[int, Annotated[list[int], Field(min_length=1)], IntRange]


_MODEL = ModelSpec.model_fields  # the model's defaults and bounds live in training/config.py


class Architecture(_Strict):
    """The searched model dimensions (a value, a list or a range each); their defaults are ModelSpec's and their
    bounds are checked on the trial configs (space.check_trial_configs)."""
    backend: Literal["pure", "dgl"] = _MODEL["backend"].default
    alignn_layers: IntDim = _MODEL["alignn_layers"].default
    gcn_layers: IntDim = _MODEL["gcn_layers"].default
    hidden_features: IntDim = _MODEL["hidden_features"].default
    embedding_features: IntDim = _MODEL["embedding_features"].default


class MPTSubset(_Strict):
    min_size: int = Field(2, ge=1)
    max_size: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _ordered(self) -> "MPTSubset":
        if self.max_size is not None and self.max_size < self.min_size:
            raise ValueError(f"max_size ({self.max_size}) must be >= min_size ({self.min_size})")
        return self


class SearchDims(_Strict):
    strategy: list[Literal["scratch", "finetune", "mpt"]] = Field(["scratch", "finetune"], min_length=1)
    freeze: list[FreezeStrategy] = Field(["all_unfrozen"], min_length=1)
    freeze_depth: IntRange | None = None   # when given, a depth is searched instead of named strategies
    reinit_head: list[bool] = Field([False], min_length=1)
    ft_size: list[Union[int, Literal["all"]]] = Field([100], min_length=1)
    sampling: list[Literal["random", "stratified", "diverse"]] = Field(["random"], min_length=1)
    ft_lr: FloatDim = 1e-3
    pt_lr: FloatDim = 1e-3
    body_lr_factor: FloatDim = 1.0
    batch_size: IntDim = 16
    mpt_subset: MPTSubset = MPTSubset()
    architecture: Architecture = Architecture()


class Budget(_Strict):
    trials: int = Field(10, ge=1)
    max_epochs: int = Field(30, ge=1, description="FT epochs per trial (ASHA's max_t)")
    pt_epochs: int = Field(20, ge=1)
    time_budget_s: float | None = Field(None, gt=0)
    repeats: int = Field(1, ge=1, le=20, description="FT draws per configuration (different sample seeds)")
    # k-fold cross-validation of each repeat's FT sample (every structure validated once; the delivered model is
    # the fold ensemble); 1: one 90/10 train/validation split; "auto": 5 folds up to 300 structures, else 1
    cv_folds: Annotated[int, Field(ge=1, le=20)] | Literal["auto"] = "auto"
    # racing (search/racing.py): after the search, up to this many extra repeats for the best configuration of
    # each family validation cannot separate from its condition's leader (0: no racing)
    race_repeats: int = Field(0, ge=0, le=20)


class Resources(_Strict):
    cpus_per_trial: float = Field(1.0, gt=0)
    gpus_per_trial: float = Field(0.0, ge=0)
    max_concurrent: int = Field(2, ge=1)
    max_failures: int = Field(1, ge=0)
    checkpoints_kept: int = Field(2, ge=1)
    # an epoch is checkpointed when this many seconds passed since the trial's last checkpoint or its start
    # and checkpoints stay under ~5 % of the trial's time (0: every epoch); see trainable.py
    checkpoint_interval_s: float = Field(30.0, ge=0)


class Tracking(_Strict):
    project: str = "tlsearch"
    entity: str | None = None
    mode: Literal["auto", "online", "offline", "disabled"] = "auto"


class Cluster(_Strict):
    address: str | None = None  # None: start a local Ray; "auto" or "HOST:PORT": join a cluster
    dashboard_host: str = "127.0.0.1"
    dashboard_port: int = Field(8265, ge=1, le=65535)
    # where the trials of every node share PT models: a directory all nodes see, or an object-store URI
    # (s3://BUCKET/PATH; each node keeps a mirror); None: $TLSEARCH_CACHE/pretrained on each node
    pt_store: str | None = None
    # where they share graph packs, the same way; None: $TLSEARCH_CACHE/graphs on each node
    graph_store: str | None = None


class SearchSpec(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    data: DataSpec
    graph: GraphSpec = GraphSpec()
    search: SearchDims = SearchDims()
    budget: Budget = Budget()
    # every registered scheduler's section (tlsearch/search/schedulers.py), chosen by its `type`
    scheduler: SchedulerChoice = Field(ASHA(), discriminator="type")
    resources: Resources = Resources()
    tracking: Tracking = Tracking()
    storage: str = "experiments"
    cluster: Cluster = Cluster()
    seed: int = 0
    search_seed: Union[int, None] = Field(None, description="seeds the TPE sampler instead of seed")
    metric: Literal["val_mae"] = "val_mae"
    # [val_mae] (one objective, the default) or [val_mae, cost]: a Pareto front of accuracy and compute
    # (search/objectives.py)
    objectives: list[Objective] = Field(["val_mae"], min_length=1)
    # experiment directories of earlier studies whose finished trials inside this space start the search
    # (search/warm_start.py); relative paths are relative to the spec file's directory
    warm_start: list[str] = []

    @model_validator(mode="before")
    @classmethod
    def _default_scheduler_type(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("scheduler"), dict) and "type" not in data["scheduler"]:
            data = {**data, "scheduler": {"type": DEFAULT_SCHEDULER, **data["scheduler"]}}
        return data

    @field_validator("objectives")
    @classmethod
    def _objectives(cls, v: list[str]) -> list[str]:
        return check_objectives(v)

    @property
    def multi_objective(self) -> bool:
        return len(self.objectives) > 1

    @model_validator(mode="after")
    def _consistent(self) -> "SearchSpec":
        s, d = self.search, self.data
        if "finetune" in s.strategy and not d.pretrain_sources:
            raise ValueError("search.strategy includes 'finetune' but data.pretrain_sources is empty")
        several = len(d.ft_targets) > 1
        for t in d.ft_targets:
            which = f"the target {t.label}" if several else "the target"
            if "finetune" in s.strategy and not self.pt_sources_for(t.label):
                raise ValueError(f"search.strategy includes 'finetune' but data.pretrain_sources has no source other "
                                 f"than {which} (a target is never pre-trained on itself); fix: add a PT source")
            n = len(self.mpt_candidates_for(t.label))
            if "mpt" in s.strategy and n < s.mpt_subset.min_size:
                raise ValueError(f"search.strategy includes 'mpt' but data.mpt_properties has {n} properties "
                                 f"other than {which}, fewer than search.mpt_subset.min_size={s.mpt_subset.min_size}")
        k = self.budget.cv_folds
        small = [n for n in s.ft_size if isinstance(n, int) and k != "auto" and k > 1 and n < 2 * k]
        if small:
            raise ValueError(f"budget.cv_folds={k} needs FT samples of >= {2 * k} structures (two per fold), but "
                             f"search.ft_size has {small}; fix: fewer cv_folds (or 'auto') or larger FT sizes")
        return self

    def renamed(self, name: str | None) -> "SearchSpec":
        """The spec under another study name (``tlsearch run --name``): the experiment directory, the Optuna
        study, titles and W&B all use it, so a resume finds the same study."""
        if name is None or name == self.name:
            return self
        try:
            return SearchSpec.model_validate({**self.model_dump(), "name": name})
        except ValidationError:
            raise UserInputError(f"--name: {name!r} is not a valid study name; fix: 1-64 letters, digits, "
                                 "'_', '.' or '-'") from None

    @property
    def mpt_candidates(self) -> list[DataEntry]:
        """The MPT properties other than the (first) target (same dataset and property, whatever their labels)."""
        return self.mpt_candidates_for(self.data.ft_targets[0].label)

    def mpt_candidates_for(self, target: str) -> list[DataEntry]:
        """The MPT properties other than the target ``target`` (a ``dataset/property`` label)."""
        return [p for p in self.data.mpt_properties if p.label != target]

    def pt_sources_for(self, target: str) -> list[Any]:
        """The PT sources a trial on target ``target`` may pre-train on: every source but the target itself.
        A single-target study keeps every source (as before several targets existed)."""
        if len(self.data.ft_targets) == 1:
            return list(self.data.pretrain_sources)
        return [p for p in self.data.pretrain_sources if p.label != target]

    def model_fixed(self) -> ModelSpec:
        return ModelSpec(backend=self.search.architecture.backend)


# union alternatives that appear in error locations, besides the shared ones; discriminated-union tags
_BRANCHES = {p.spec.__name__ for p in SCHEDULERS.values()}
_TAGS = {"scheduler": set(SCHEDULERS)}


def format_spec_errors(exc: ValidationError, where: str) -> str:
    return format_errors(exc, where, _BRANCHES, _TAGS)


def spec_from_dict(data: Any, where: str = "space.yaml") -> SearchSpec:
    if not isinstance(data, dict):
        raise UserInputError(f"{where}: expected a mapping with sections name, data, search, budget, ...")
    try:
        spec = SearchSpec.model_validate(data)
    except ValidationError as exc:
        raise UserInputError(format_spec_errors(exc, where)) from None
    from tlsearch.search.space import check_trial_configs

    try:
        check_trial_configs(spec)
    except UserInputError as exc:
        detail = str(exc).replace(f"trial config of {spec.name}: ", "trial config field ")
        raise UserInputError(f"{where}: search: a value in the search space gives an invalid trial: {detail}") from None
    return spec


def load_spec(path: str | Path) -> SearchSpec:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise UserInputError(f"{path}: cannot read ({exc.strerror}); fix: give the path of a space.yaml") from None
    except UnicodeDecodeError as exc:
        raise UserInputError(f"{path}: not a text file ({exc.reason} at byte {exc.start}); "
                             "fix: give the path of a space.yaml") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise UserInputError(f"{path}: not valid YAML ({exc})".replace("\n", " ")) from None
    return spec_from_dict(resolve_paths(data, path.parent), str(path))
