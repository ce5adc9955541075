"""Datasets: sources, validation, the parsed-dataset cache, held-out splits and fine-tuning samples."""

from tlsearch.data._base import Candidate, Dataset, DatasetInfo, Record, Skipped, Source
from tlsearch.data._ref import DatasetRef
from tlsearch.data._registry import get_source, load_dataset, source_names
from tlsearch.data.sampling import SCHEMES, draw_sample, resolve_size
from tlsearch.data.splits import Split, cv_folds, folds_for, split_pool, train_val_split

__all__ = ["Candidate", "Dataset", "DatasetInfo", "DatasetRef", "Record", "SCHEMES", "Skipped", "Source", "Split",
           "draw_sample", "get_source", "load_dataset", "resolve_size", "source_names", "split_pool",
           "train_val_split", "cv_folds", "folds_for"]
