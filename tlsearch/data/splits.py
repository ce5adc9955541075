"""The fixed held-out test set and the train/validation split inside a fine-tuning sample.

The test set is chosen by ranking ids by a seeded hash, so it depends only on the set of ids and the
seed, never on file order; exactly ``round(fraction * n)`` records are held out. Fine-tuning samples are
drawn from the rest only (:func:`split_pool`), so the test set can never leak into training or selection.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tlsearch.errors import SampleSizeError, UserInputError

DEFAULT_TEST_FRACTION = 0.1
DEFAULT_VAL_FRACTION = 0.1


def _id_rank_keys(ids: Sequence[str], seed: int) -> list[bytes]:
    salt = f"tlsearch-split:{seed}:".encode()
    return [hashlib.sha256(salt + i.encode()).digest() for i in ids]


@dataclass(frozen=True)
class Split:
    """Indices into a dataset's records: ``pool`` (may be sampled for FT/PT) and ``test`` (held out)."""

    pool: np.ndarray
    test: np.ndarray
    seed: int
    test_fraction: float


def split_pool(ids: Sequence[str], test_fraction: float = DEFAULT_TEST_FRACTION, seed: int = 0) -> Split:
    if not 0.0 <= test_fraction < 1.0:
        raise UserInputError(f"test_fraction must be in [0, 1), got {test_fraction}")
    if len(set(ids)) != len(ids):
        raise UserInputError("split_pool: ids must be unique (deduplicate the dataset first)")
    n = len(ids)
    n_test = int(round(test_fraction * n))
    if test_fraction > 0 and n >= 2:
        n_test = min(max(n_test, 1), n - 1)
    keys = _id_rank_keys(ids, seed)
    order = sorted(range(n), key=keys.__getitem__)
    test = np.sort(np.asarray(order[:n_test], dtype=np.int64))
    pool = np.sort(np.asarray(order[n_test:], dtype=np.int64))
    return Split(pool=pool, test=test, seed=seed, test_fraction=test_fraction)


def train_val_split(sample: np.ndarray, val_fraction: float = DEFAULT_VAL_FRACTION, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Split a drawn sample (indices) into train and validation; at least one of each when size >= 2."""
    if not 0.0 < val_fraction < 1.0:
        raise UserInputError(f"val_fraction must be in (0, 1), got {val_fraction}")
    sample = np.asarray(sample, dtype=np.int64)
    if len(sample) < 2:
        raise SampleSizeError(f"a fine-tuning sample needs >= 2 structures for a train/validation split, got {len(sample)}")
    n_val = min(max(int(round(val_fraction * len(sample))), 1), len(sample) - 1)
    perm = np.random.default_rng([seed, 0x5EED]).permutation(len(sample))
    return np.sort(sample[perm[n_val:]]), np.sort(sample[perm[:n_val]])


def cv_folds(sample: np.ndarray, k: int, seed: int = 0) -> list[np.ndarray]:
    """Split a drawn sample (indices) into ``k`` disjoint folds that cover it, sizes differing by at most one.

    The folds depend only on the sample and ``seed`` (the repeat's sample seed), never on the configuration that
    trains on them, so every configuration of a study is validated on the same folds (paired comparisons).
    """
    sample = np.asarray(sample, dtype=np.int64)
    if k < 2:
        raise UserInputError(f"cv_folds must be >= 2 to cross-validate, got {k}")
    if len(sample) < 2 * k:
        raise SampleSizeError(f"{k}-fold cross-validation needs a fine-tuning sample of >= {2 * k} structures "
                              f"(two per fold), got {len(sample)}; fix: fewer cv_folds or a larger FT size")
    perm = np.random.default_rng([seed, 0xF01D]).permutation(len(sample))
    return [np.sort(sample[part]) for part in np.array_split(perm, k)]


def folds_for(n: int, cv_folds: int | str) -> int:
    """How many folds a sample of ``n`` structures is cross-validated with: ``cv_folds`` itself, or for ``"auto"``
    5 up to ``AUTO_CV_MAX_SIZE`` structures (a 90/10 split would validate on 30 or fewer) and 1 above (one 90/10
    split; ``benchmarks/selection.py`` measures both)."""
    if cv_folds == "auto":
        k = min(AUTO_CV_FOLDS, n // 2) if n <= AUTO_CV_MAX_SIZE else 1
        return k if k >= 2 else 1
    return int(cv_folds)


AUTO_CV_FOLDS = 5
AUTO_CV_MAX_SIZE = 300
