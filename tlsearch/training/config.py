"""What one trial trains: a typed, validated configuration (YAML for ``tlsearch train``).

Defaults follow Devi, Butler & Gautam (2024) except model size and epochs, which are kept small so a
trial runs on a laptop CPU; the paper's settings are 4+4 layers, hidden 256, 500 epochs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import Discriminator, Field, Tag, ValidationError, model_validator

from tlsearch._models import Strict as _Strict
from tlsearch._models import format_errors
from tlsearch.errors import UserInputError
from tlsearch.graphs import GraphParams

Mode = Literal["scratch", "finetune", "mpt"]
FreezeStrategy = Literal["all_unfrozen", "2b", "3b", "new_head", "last_layer"]
Size = Annotated[int, Field(ge=2)] | Literal["all"]  # a sample needs a train and a validation structure


class TargetSpec(_Strict):
    """A (dataset reference, property) pair, e.g. ``matminer2018:dielectric_constant`` / ``n``."""

    dataset: str
    property: str

    @property
    def label(self) -> str:
        return f"{self.dataset}/{self.property}"


class CheckpointSpec(_Strict):
    """A PT source that is already trained: a tlsearch model file (``tlsearch train -o`` model.pt, or a file of
    ``tlsearch models export``) or an ALIGNN checkpoint as alignn's trainer writes it (a folder or zip holding
    ``config.json`` + ``best_model.pt``). ``finetune`` then starts from its weights; nothing is pre-trained."""

    checkpoint: str = Field(min_length=1)
    label: str = Field("", description="name in trials and reports (default: the file or folder name)")

    @model_validator(mode="before")
    @classmethod
    def _default_label(cls, data: Any) -> Any:
        if isinstance(data, dict) and not data.get("label") and isinstance(data.get("checkpoint"), str):
            data = {**data, "label": Path(data["checkpoint"]).name or data["checkpoint"]}
        return data


def source_kind(v: Any) -> str:
    """The union tag of a PT source: a checkpoint to start from, or a (dataset, property) to pre-train on."""
    return "CheckpointSpec" if isinstance(v, CheckpointSpec) or (isinstance(v, dict) and "checkpoint" in v) \
        else "TargetSpec"


# a pre-training source: a (dataset, property) to pre-train on, or a checkpoint to start from
PTSource = Annotated[Union[Annotated[TargetSpec, Tag("TargetSpec")], Annotated[CheckpointSpec, Tag("CheckpointSpec")]],
                     Discriminator(source_kind)]


class ModelSpec(_Strict):
    backend: Literal["pure", "dgl"] = "pure"
    alignn_layers: int = Field(2, ge=0, le=12)
    gcn_layers: int = Field(2, ge=0, le=12)
    hidden_features: int = Field(64, ge=4, le=2048)
    embedding_features: int = Field(64, ge=4, le=1024)  # alignn's default (was 32: see docs/benchmarks.md)
    edge_input_features: int = Field(80, ge=2, le=512)
    triplet_input_features: int = Field(40, ge=2, le=512)


class GraphSpec(_Strict):
    builder: Literal["pure", "dgl"] = "pure"
    cutoff: float = Field(8.0, gt=0)
    max_neighbors: int = Field(12, ge=1)
    three_body_cutoff: float | None = None
    atom_features: Literal["cgcnn", "basic", "atomic_number", "cfid"] = "cgcnn"

    def params(self) -> GraphParams:
        return GraphParams(**self.model_dump())


class OptimSpec(_Strict):
    epochs: int = Field(30, ge=1)
    lr: float = Field(1e-3, gt=0, le=1.0)
    batch_size: int = Field(16, ge=1)
    weight_decay: float = Field(1e-5, ge=0)
    pct_start: float = Field(0.3, gt=0, lt=1)
    # L1: what alignn's own trainer always trains with (the paper's numbers); MSE was 26 % worse on dielectric n
    loss: Literal["mse", "l1", "huber"] = "l1"
    patience: int | None = Field(None, ge=1, description="early stopping: epochs without val improvement")
    select: Literal["best", "last"] = "best"
    scaling: Literal["standard", "minmax"] = "standard"  # target scaling; the paper used minmax to [-1, 1]


class PretrainSpec(_Strict):
    sources: list[PTSource] = Field(min_length=1)
    sample_size: Size = "all"
    val_fraction: float = Field(0.1, gt=0, lt=1)
    include_target: bool = False  # MPT: keep the FT target property in the PT set (leave-target-out otherwise)
    # other FT targets whose held-out test structures pre-training leaves out too (a study with several targets:
    # the same PT data, so the same PT model, for each of them)
    held_out_of: list[TargetSpec] = []
    head_depth: int = Field(1, ge=1, le=4)
    optim: OptimSpec = OptimSpec()
    seed: int = 0


class TrainSpec(_Strict):
    """Training on the target: fine-tuning for finetune/mpt, from scratch for scratch."""

    sample_size: Size = 100
    sampling: Literal["random", "stratified", "diverse"] = "random"
    sample_seed: int = 0
    val_fraction: float = Field(0.1, gt=0, lt=1)
    # k >= 2: k-fold cross-validation of the sample (k fold models; every structure validated once, the out-of-fold
    # MAE is the validation MAE, the fold models are the delivered ensemble); 1: one train/validation split
    # (val_fraction); "auto": 5 folds for samples of <= 300 structures, else 1 (tlsearch.data.splits.folds_for)
    cv_folds: Annotated[int, Field(ge=1, le=20)] | Literal["auto"] = 1
    freeze: FreezeStrategy = "all_unfrozen"
    freeze_depth: int | None = Field(None, ge=0)
    reinit_head: bool = False
    body_lr_factor: float = Field(1.0, gt=0, le=1.0)
    optim: OptimSpec = OptimSpec()


class TrainConfig(_Strict):
    name: str = "trial"
    mode: Mode = "scratch"
    target: TargetSpec
    pretrain: PretrainSpec | None = None
    train: TrainSpec = TrainSpec()
    model: ModelSpec = ModelSpec()
    graph: GraphSpec = GraphSpec()
    eval_sets: list[TargetSpec] = []
    test_fraction: float = Field(0.1, gt=0, lt=1)
    split_seed: int = 0
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # bf16 autocast where the hardware has it (CUDA; CPUs with AVX512-BF16 or AMX); off by default: fp32 is what the
    # accuracy-parity benchmark measured (benchmarks/transfer.py), bf16 is opt-in where it is shown to cost nothing
    amp: bool = False
    threads: int | None = Field(None, ge=1)
    cache_dir: str | None = None
    store_dir: str | None = None
    output_dir: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> "TrainConfig":
        if self.mode == "scratch":
            if self.pretrain is not None:
                raise ValueError("mode 'scratch' takes no 'pretrain' section (use mode 'finetune' or 'mpt')")
            if self.train.freeze != "all_unfrozen" or self.train.freeze_depth:
                raise ValueError("mode 'scratch' trains every layer: freeze must be 'all_unfrozen'")
        else:
            if self.pretrain is None:
                raise ValueError(f"mode {self.mode!r} needs a 'pretrain' section with its sources")
            if self.mode == "finetune" and len(self.pretrain.sources) != 1:
                raise ValueError("mode 'finetune' pre-trains on exactly one source; use mode 'mpt' for several")
            if self.mode == "mpt" and any(isinstance(s, CheckpointSpec) for s in self.pretrain.sources):
                raise ValueError("mode 'mpt' pre-trains on dataset properties; a checkpoint source is for mode "
                                 "'finetune'")
        if self.train.freeze_depth is not None and self.train.freeze != "all_unfrozen":
            raise ValueError("give either freeze (a named strategy) or freeze_depth, not both")
        return self


def config_from_dict(data: dict[str, Any], where: str = "config") -> TrainConfig:
    try:
        return TrainConfig.model_validate(data)
    except ValidationError as exc:
        raise UserInputError(format_errors(exc, where)) from None


def load_config(path: str | Path) -> TrainConfig:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise UserInputError(f"{path}: cannot read ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise UserInputError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(data, dict):
        raise UserInputError(f"{path}: expected a mapping of config sections at the top level")
    pt = data.get("pretrain")
    if isinstance(pt, dict) and isinstance(pt.get("sources"), list):  # checkpoint paths: relative to this file
        data["pretrain"] = {**pt, "sources": [
            {**s, "checkpoint": str((path.parent / s["checkpoint"]).resolve())}
            if isinstance(s, dict) and isinstance(s.get("checkpoint"), str) and s["checkpoint"] else s
            for s in pt["sources"]]}
    return config_from_dict(data, str(path))
