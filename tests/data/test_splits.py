"""The held-out test set (split_pool) and the train/validation split of a sample (train_val_split)."""

from __future__ import annotations

import random

import numpy as np
import pytest

from tlsearch.data.splits import split_pool, train_val_split
from tlsearch.errors import SampleSizeError, UserInputError


def _ids(n: int, prefix: str = "mp") -> list[str]:
    return [f"{prefix}-{i}" for i in range(n)]


def _test_ids(ids: list[str], **kw) -> set[str]:
    return {ids[i] for i in split_pool(ids, **kw).test}


# --------------------------------------------------------------------------- split_pool


@pytest.mark.parametrize("n", [20, 37, 100, 137, 555, 1000])
def test_test_size_is_round_of_fraction(n: int) -> None:
    split = split_pool(_ids(n))
    assert len(split.test) == round(0.1 * n)
    assert len(split.pool) == n - round(0.1 * n)


@pytest.mark.parametrize(("n", "fraction"), [(100, 0.25), (1000, 0.05), (50, 0.5), (7, 0.3)])
def test_test_size_other_fractions(n: int, fraction: float) -> None:
    split = split_pool(_ids(n), test_fraction=fraction)
    assert len(split.test) == round(fraction * n)
    assert split.test_fraction == fraction


@pytest.mark.parametrize("n", [2, 3, 4])
def test_small_dataset_still_holds_out_one_and_keeps_one(n: int) -> None:
    split = split_pool(_ids(n))
    assert len(split.test) == 1
    assert len(split.pool) == n - 1


def test_pool_and_test_are_disjoint_sorted_and_cover_everything() -> None:
    n = 333
    split = split_pool(_ids(n), seed=4)
    assert set(split.pool.tolist()).isdisjoint(split.test.tolist())
    assert sorted(split.pool.tolist() + split.test.tolist()) == list(range(n))
    assert np.all(np.diff(split.pool) > 0) and np.all(np.diff(split.test) > 0)
    assert split.pool.dtype == np.int64 and split.test.dtype == np.int64
    assert split.seed == 4


def test_test_set_does_not_depend_on_id_order() -> None:
    ids = _ids(500)
    expected = _test_ids(ids, seed=7)
    rng = random.Random(123)
    for _ in range(3):
        shuffled = ids[:]
        rng.shuffle(shuffled)
        assert _test_ids(shuffled, seed=7) == expected


def test_different_seed_gives_different_test_set() -> None:
    ids = _ids(500)
    a, b = _test_ids(ids, seed=0), _test_ids(ids, seed=1)
    assert len(a) == len(b) == 50
    assert a != b
    assert _test_ids(ids, seed=0) == a  # and the same seed is deterministic


@pytest.mark.parametrize("n", [99, 100, 104, 105, 250, 1000])
def test_adding_one_id_barely_changes_test_membership(n: int) -> None:
    ids = _ids(n)
    before = _test_ids(ids, seed=3)
    for new in ["new-a", "new-b", "new-c", "zzz"]:
        after = _test_ids(ids + [new], seed=3)
        old_after = after - {new}
        # old ids may enter/leave by at most one (the test set grows by at most one and the
        # new id can push at most one old id out)
        assert len(before ^ old_after) <= 1
        assert len(before ^ after) <= 2


def test_removing_one_id_barely_changes_test_membership() -> None:
    ids = _ids(400)
    before = _test_ids(ids, seed=0)
    for drop in [0, 17, 399]:
        rest = ids[:drop] + ids[drop + 1 :]
        after = _test_ids(rest, seed=0)
        assert len((before - {ids[drop]}) ^ after) <= 2


def test_zero_fraction_gives_empty_test() -> None:
    split = split_pool(_ids(50), test_fraction=0.0)
    assert len(split.test) == 0
    assert split.pool.tolist() == list(range(50))


def test_empty_and_single_id() -> None:
    split = split_pool([])
    assert len(split.pool) == 0 and len(split.test) == 0
    split = split_pool(["only"])
    assert len(split.pool) + len(split.test) == 1


@pytest.mark.parametrize("fraction", [-0.1, 1.0, 1.5, float("nan")])
def test_bad_fraction_raises_user_input_error(fraction: float) -> None:
    with pytest.raises(UserInputError, match="test_fraction"):
        split_pool(_ids(10), test_fraction=fraction)


def test_duplicate_ids_raise() -> None:
    with pytest.raises(UserInputError, match="unique"):
        split_pool(["a", "b", "a", "c"])


# --------------------------------------------------------------------------- train_val_split


@pytest.mark.parametrize("n", [2, 3, 5, 10, 14, 15, 25, 100, 251])
def test_train_val_disjoint_cover_and_sizes(n: int) -> None:
    sample = np.arange(1000, 1000 + 3 * n, 3)  # arbitrary dataset indices
    train, val = train_val_split(sample, seed=1)
    assert set(train.tolist()).isdisjoint(val.tolist())
    assert sorted(train.tolist() + val.tolist()) == sorted(sample.tolist())
    assert len(val) == max(round(0.1 * n), 1)
    assert len(train) >= 1
    assert np.all(np.diff(train) > 0) and np.all(np.diff(val) > 0)


def test_train_val_other_fraction() -> None:
    train, val = train_val_split(np.arange(40), val_fraction=0.25)
    assert len(val) == 10 and len(train) == 30


def test_train_val_deterministic_by_seed() -> None:
    sample = np.arange(200) * 2
    a_train, a_val = train_val_split(sample, seed=5)
    b_train, b_val = train_val_split(sample, seed=5)
    assert np.array_equal(a_train, b_train) and np.array_equal(a_val, b_val)
    c_train, c_val = train_val_split(sample, seed=6)
    assert not np.array_equal(a_val, c_val)


def test_train_val_accepts_list() -> None:
    train, val = train_val_split([5, 9, 2, 7], seed=0)
    assert sorted(train.tolist() + val.tolist()) == [2, 5, 7, 9]


@pytest.mark.parametrize("sample", [[], [3]])
def test_train_val_too_small_sample(sample: list[int]) -> None:
    with pytest.raises(SampleSizeError, match=">= 2"):
        train_val_split(np.asarray(sample, dtype=np.int64))


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.5, 2.0])
def test_train_val_bad_fraction(fraction: float) -> None:
    with pytest.raises(UserInputError, match="val_fraction"):
        train_val_split(np.arange(10), val_fraction=fraction)
