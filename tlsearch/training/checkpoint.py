"""A trained model as one file: weights, target scaling and the config that built it.

Saved with ``torch.save`` of plain containers and loaded with ``torch.load(weights_only=True)``, so a
checkpoint cannot execute code; the file is written atomically. ``load_checkpoint`` rebuilds the model
and returns predictions in physical units through the stored scaler.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch

from tlsearch._io import write_atomic
from tlsearch.training.config import TrainConfig
from tlsearch.training.model import PropertyModel
from tlsearch.training.tasks import Scaler

FORMAT = "tlsearch-model-v1"


def save_checkpoint(path: str | Path, model: PropertyModel, scaler: Scaler, config: TrainConfig,
                    extra: dict[str, Any] | None = None) -> Path:
    path = Path(path)
    blob = {"format": FORMAT, "state": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "scaler": scaler.to_dict(), "config": config.model_dump(mode="json"), "head": model.head_kind,
            "extra": extra or {}}
    buf = io.BytesIO()
    torch.save(blob, buf)
    write_atomic(path, buf.getvalue())
    return path


def load_checkpoint(path: str | Path) -> tuple[PropertyModel, Scaler, TrainConfig]:
    blob = torch.load(Path(path), map_location="cpu", weights_only=True)
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise ValueError(f"{path}: not a tlsearch model checkpoint")
    config = TrainConfig.model_validate(blob["config"])
    model = PropertyModel(config.model, blob["head"], 1, atom_features=config.graph.atom_features)
    model.load_state_dict(blob["state"])
    model.eval()
    return model, Scaler.from_dict(blob["scaler"]), config
