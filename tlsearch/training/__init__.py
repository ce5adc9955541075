"""One trial's training: models, heads, freeze strategies, the loop, the pre-trained model store.
Imports neither Ray nor W&B. Names are imported on first use (PEP 562), so that the plain-data
configuration (``tlsearch.training.config``) can be used without torch."""

from __future__ import annotations

from tlsearch._lazy import lazy_getattr

_WHERE = {"TrainConfig": "config", "config_from_dict": "config", "load_config": "config",
          "DivergenceError": "engine", "EpochMetrics": "engine", "Trainer": "engine",
          "PretrainStore": "store", "TrialResult": "trial", "train_trial": "trial", "load_model": "predict",
          "export_model": "export"}

__all__ = sorted(_WHERE)

__getattr__ = lazy_getattr(__name__, _WHERE)
