"""One trial's training: models, heads, freeze strategies, the loop, the pre-trained model store.
Imports neither Ray nor W&B. Names are imported on first use (PEP 562), so that the plain-data
configuration (``tlsearch.training.config``) can be used without torch."""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {"TrainConfig": "config", "config_from_dict": "config", "load_config": "config",
          "DivergenceError": "engine", "EpochMetrics": "engine", "Trainer": "engine",
          "PretrainStore": "store", "TrialResult": "trial", "train_trial": "trial"}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    globals()[name] = value
    return value
