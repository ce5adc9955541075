"""Fine-tuning sample draws: random, stratified (target quantiles), diverse (farthest-point sampling)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tlsearch.data.sampling import SCHEMES, draw_sample, resolve_size
from tlsearch.data.splits import split_pool
from tlsearch.errors import SampleSizeError, UnknownChoiceError, UserInputError

N_DATA = 250


@pytest.fixture(scope="module")
def data() -> dict[str, np.ndarray]:
    """A dataset of 250 records; a 10% held-out test set; the pool of the other 225 (>= 200)."""
    rng = np.random.default_rng(0)
    split = split_pool([f"id-{i}" for i in range(N_DATA)], test_fraction=0.1, seed=0)
    return {
        "pool": split.pool,
        "test": split.test,
        "targets": rng.lognormal(0.0, 1.0, N_DATA),
        "descriptors": rng.normal(size=(N_DATA, 5)),
    }


def _draw(data: dict[str, np.ndarray], size, scheme: str, seed: int = 0, pool=None) -> np.ndarray:
    return draw_sample(
        data["pool"] if pool is None else pool,
        size,
        scheme=scheme,
        seed=seed,
        targets=data["targets"],
        descriptors=data["descriptors"],
    )


def _assert_valid(sample: np.ndarray, pool: np.ndarray, size: int) -> None:
    assert len(sample) == size
    assert len(np.unique(sample)) == size, "sample has duplicates"
    assert set(sample.tolist()) <= set(np.asarray(pool).tolist())
    assert np.all(np.diff(sample) > 0)  # returned sorted


# --------------------------------------------------------------------------- all schemes


def test_schemes_are_the_three_documented() -> None:
    assert set(SCHEMES) == {"random", "stratified", "diverse"}


@pytest.mark.parametrize("scheme", SCHEMES)
def test_deterministic_given_seed(data, scheme: str) -> None:
    a = _draw(data, 20, scheme, seed=11)
    b = _draw(data, 20, scheme, seed=11)
    assert np.array_equal(a, b)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_different_seeds_give_different_samples(data, scheme: str) -> None:
    pool = data["pool"][:200]
    draws = [tuple(_draw(data, 20, scheme, seed=s, pool=pool).tolist()) for s in range(5)]
    assert draws[0] != draws[1]
    assert len(set(draws)) >= 4


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("size", [2, 3, 20, 100, 224])
def test_valid_subset_of_pool(data, scheme: str, size: int) -> None:
    for seed in range(3):
        sample = _draw(data, size, scheme, seed=seed)
        _assert_valid(sample, data["pool"], size)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_never_includes_held_out_test_indices(data, scheme: str) -> None:
    test = set(data["test"].tolist())
    assert test  # the fixture really holds some out
    # make held-out records the most attractive choices: extreme targets and far-away descriptors
    targets = data["targets"].copy()
    descriptors = data["descriptors"].copy()
    targets[data["test"]] = 1e6
    descriptors[data["test"]] = 1e3
    for seed in range(5):
        for size in (2, 20, 150):
            sample = draw_sample(
                data["pool"], size, scheme, seed=seed, targets=targets, descriptors=descriptors
            )
            assert test.isdisjoint(sample.tolist())
            _assert_valid(sample, data["pool"], size)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_size_all_returns_whole_pool(data, scheme: str) -> None:
    sample = _draw(data, "all", scheme)
    assert np.array_equal(sample, np.sort(data["pool"]))
    # the same when the number equals the pool size
    assert np.array_equal(_draw(data, len(data["pool"]), scheme), np.sort(data["pool"]))


@pytest.mark.parametrize("scheme", SCHEMES)
def test_unsorted_pool_gives_valid_sample(data, scheme: str) -> None:
    shuffled = np.random.default_rng(3).permutation(data["pool"])
    sample = _draw(data, 20, scheme, seed=1, pool=shuffled)
    _assert_valid(sample, data["pool"], 20)


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("size", [0, 1, -5, 226, 10_000])
def test_size_out_of_range(data, scheme: str, size: int) -> None:
    pool_size = len(data["pool"])
    with pytest.raises(SampleSizeError) as info:
        _draw(data, size, scheme)
    assert str(pool_size) in str(info.value)
    assert isinstance(info.value, UserInputError)


@pytest.mark.parametrize("size", [2.5, 20.0, "20", "ALL", None, True, [20]])
def test_size_not_an_int(data, size) -> None:
    with pytest.raises(SampleSizeError) as info:
        _draw(data, size, "random")
    assert str(len(data["pool"])) in str(info.value)
    assert repr(size) in str(info.value)


def test_resolve_size() -> None:
    assert resolve_size("all", 37) == 37
    assert resolve_size(5, 37) == 5
    assert resolve_size(np.int64(37), 37) == 37
    assert type(resolve_size(np.int32(5), 37)) is int
    with pytest.raises(SampleSizeError, match="37"):
        resolve_size(38, 37)


def test_unknown_scheme_lists_valid_schemes(data) -> None:
    with pytest.raises(UnknownChoiceError) as info:
        _draw(data, 20, "clustered")
    message = str(info.value)
    assert "'clustered'" in message
    for scheme in SCHEMES:
        assert scheme in message
    assert sorted(info.value.valid) == sorted(SCHEMES)


def test_missing_inputs_for_scheme(data) -> None:
    with pytest.raises(ValueError, match="targets"):
        draw_sample(data["pool"], 20, "stratified", descriptors=data["descriptors"])
    with pytest.raises(ValueError, match="descriptors"):
        draw_sample(data["pool"], 20, "diverse", targets=data["targets"])
    # random needs neither
    _assert_valid(draw_sample(data["pool"], 20, "random"), data["pool"], 20)


def test_random_is_roughly_uniform() -> None:
    pool = np.arange(100)
    counts = np.zeros(100)
    for seed in range(400):
        counts[draw_sample(pool, 10, "random", seed=seed)] += 1
    # each index expected 40 times; binomial sd ~6
    assert counts.min() > 15 and counts.max() < 70


# --------------------------------------------------------------------------- stratified


def _decile_counts(pool_y: np.ndarray, sample_y: np.ndarray) -> np.ndarray:
    edges = np.quantile(pool_y, np.linspace(0, 1, 11))
    bins = np.clip(np.searchsorted(edges, sample_y, side="right") - 1, 0, 9)
    return np.bincount(bins, minlength=10)


@pytest.mark.parametrize(("pool_size", "size"), [(200, 20), (1000, 20), (1000, 50), (1000, 100), (1003, 70)])
def test_stratified_tracks_pool_quantiles_on_skewed_targets(pool_size: int, size: int) -> None:
    rng = np.random.default_rng(42)
    y = rng.lognormal(0.0, 1.5, pool_size) ** 2  # heavily right-skewed
    pool = np.arange(pool_size)
    for seed in range(5):
        sample = draw_sample(pool, size, "stratified", seed=seed, targets=y)
        _assert_valid(sample, pool, size)
        counts = _decile_counts(y, y[sample])
        assert np.all(np.abs(counts - size / 10) <= 1), counts


def test_stratified_always_samples_the_top_decile() -> None:
    """Random draws of 20 from a heavy-tailed pool often miss the top decile; stratified never does."""
    rng = np.random.default_rng(1)
    y = rng.pareto(1.5, 400)
    pool = np.arange(400)
    top = y >= np.quantile(y, 0.9)
    strat = [top[draw_sample(pool, 20, "stratified", seed=s, targets=y)].sum() for s in range(30)]
    assert all(c == 2 for c in strat)


def test_stratified_uses_pool_targets_only() -> None:
    """Targets of records outside the pool (held-out test set) must not shift the bins."""
    y = np.arange(300, dtype=float)
    pool = np.arange(100, 300)  # 0..99 are held out
    y_with_outliers = y.copy()
    y_with_outliers[:100] = -1e9
    a = draw_sample(pool, 20, "stratified", seed=2, targets=y)
    b = draw_sample(pool, 20, "stratified", seed=2, targets=y_with_outliers)
    assert np.array_equal(a, b)
    assert np.all(np.abs(_decile_counts(y[pool], y[a]) - 2) <= 1)


def test_stratified_with_tied_targets() -> None:
    y = np.repeat([0.0, 1.0, 5.0], [150, 40, 10])
    pool = np.arange(200)
    sample = draw_sample(pool, 30, "stratified", seed=0, targets=y)
    _assert_valid(sample, pool, 30)
    # pool proportions 75% / 20% / 5% -> expected 22.5 / 6 / 1.5; ties straddle bin edges, so allow 1.5
    for value, expected in [(0.0, 22.5), (1.0, 6.0), (5.0, 1.5)]:
        assert abs(int(np.sum(y[sample] == value)) - expected) <= 1.5


# --------------------------------------------------------------------------- diverse


def _coverage(x: np.ndarray, chosen: np.ndarray) -> float:
    """Mean over all points of the distance to the nearest chosen point."""
    d = np.linalg.norm(x[:, None, :] - x[chosen][None, :, :], axis=2)
    return float(d.min(axis=1).mean())


def _clustered(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    sizes = [n - 4 * (n // 20), *([n // 20] * 4)]  # one dense cluster, four small far-away ones
    centres = rng.normal(scale=10.0, size=(5, 6))
    scales = [0.5, 1.0, 1.0, 2.0, 2.0]
    return np.concatenate([c + s * rng.normal(size=(k, 6)) for c, s, k in zip(centres, scales, sizes)])


@pytest.mark.parametrize("data_seed", [0, 1, 2])
def test_diverse_covers_descriptor_space_better_than_random(data_seed: int) -> None:
    x = _clustered(200, data_seed)
    pool = np.arange(200)
    diverse = _coverage(x, draw_sample(pool, 20, "diverse", seed=0, descriptors=x))
    random_mean = np.mean([_coverage(x, draw_sample(pool, 20, "random", seed=s)) for s in range(10)])
    assert diverse < random_mean
    # and it reaches every cluster
    labels = np.repeat(np.arange(5), [160, 10, 10, 10, 10])
    for seed in range(3):
        chosen = draw_sample(pool, 20, "diverse", seed=seed, descriptors=x)
        assert set(labels[chosen].tolist()) == set(range(5))


def test_diverse_is_farthest_point() -> None:
    """On a line, after the seeded start, the next pick is the farthest end."""
    x = np.linspace(0.0, 1.0, 101)[:, None]
    pool = np.arange(101)
    for seed in range(5):
        chosen = set(draw_sample(pool, 3, "diverse", seed=seed, descriptors=x).tolist())
        assert 0 in chosen or 100 in chosen


@pytest.mark.parametrize("n_distinct", [1, 2, 5])
def test_diverse_with_duplicate_descriptors_has_no_duplicates(n_distinct: int) -> None:
    """Identical structures give identical descriptor rows; the draw must still be `size` distinct indices."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n_distinct, 3))[rng.integers(n_distinct, size=60)]
    pool = np.arange(60)
    for size in (2, n_distinct + 1, 10, 59):
        for seed in range(3):
            sample = draw_sample(pool, size, "diverse", seed=seed, descriptors=x)
            _assert_valid(sample, pool, size)
            # every distinct descriptor is represented before any is repeated
            assert len({tuple(r) for r in x[sample]}) == min(size, n_distinct)


# --------------------------------------------------------------------------- property test


@st.composite
def _cases(draw):
    pool_size = draw(st.integers(2, 300))
    held_out = draw(st.integers(0, 30))
    size = draw(st.integers(2, pool_size))
    seed = draw(st.integers(0, 2**32 - 1))
    n_distinct = draw(st.integers(1, pool_size))  # ties in targets / duplicate descriptors
    data_seed = draw(st.integers(0, 1000))
    return pool_size, held_out, size, seed, n_distinct, data_seed


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_cases())
def test_every_scheme_returns_a_valid_sample(case) -> None:
    pool_size, held_out, size, seed, n_distinct, data_seed = case
    n = pool_size + held_out
    rng = np.random.default_rng(data_seed)
    perm = rng.permutation(n)
    pool, test = perm[:pool_size], perm[pool_size:]
    levels = rng.normal(size=n_distinct)
    targets = levels[rng.integers(n_distinct, size=n)]
    descriptors = rng.normal(size=(n_distinct, 4))[rng.integers(n_distinct, size=n)]
    for scheme in SCHEMES:
        sample = draw_sample(pool, size, scheme, seed=seed, targets=targets, descriptors=descriptors)
        _assert_valid(sample, pool, size)
        assert set(test.tolist()).isdisjoint(sample.tolist())
        again = draw_sample(pool, size, scheme, seed=seed, targets=targets, descriptors=descriptors)
        assert np.array_equal(sample, again)
