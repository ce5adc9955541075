"""One trial's training: models, heads, freeze strategies, the loop, the pre-trained model store.
Imports neither Ray nor W&B."""

from tlsearch.training.config import TrainConfig, config_from_dict, load_config
from tlsearch.training.engine import DivergenceError, EpochMetrics, Trainer
from tlsearch.training.store import PretrainStore
from tlsearch.training.trial import TrialResult, train_trial

__all__ = ["DivergenceError", "EpochMetrics", "PretrainStore", "TrainConfig", "Trainer", "TrialResult",
           "config_from_dict", "load_config", "train_trial"]
