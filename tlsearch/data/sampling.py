"""Fine-tuning sample draws: ``random`` (the paper's), ``stratified`` (target quantiles), ``diverse``
(farthest-point sampling in descriptor space). Every draw is a pure function of (pool, size, scheme, seed);
repeats use different seeds."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, get_args

import numpy as np

from tlsearch.errors import SampleSizeError, UnknownChoiceError

Scheme = Literal["random", "stratified", "diverse"]
SCHEMES: tuple[str, ...] = get_args(Scheme)
MIN_SIZE = 2


def resolve_size(size: int | str, pool_size: int) -> int:
    """``size`` as an int; ``"all"`` means the whole pool."""
    if size == "all":
        return pool_size
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)):
        raise SampleSizeError(
            f"sample size must be an integer in [{MIN_SIZE}, {pool_size}] (the pool size) or 'all', got {size!r}"
        )
    if not MIN_SIZE <= size <= pool_size:
        raise SampleSizeError(
            f"sample size {size} is outside [{MIN_SIZE}, {pool_size}] (the pool left after the held-out test set); "
            "use a smaller size or 'all'"
        )
    return int(size)


def draw_sample(
    pool: Sequence[int] | np.ndarray,
    size: int | str,
    scheme: str = "random",
    seed: int = 0,
    targets: np.ndarray | None = None,
    descriptors: np.ndarray | None = None,
) -> np.ndarray:
    """Draw ``size`` indices from ``pool`` (indices into the dataset). ``targets`` / ``descriptors`` are
    indexed like the dataset and are needed by ``stratified`` / ``diverse`` respectively."""
    pool = np.asarray(pool, dtype=np.int64)
    n = resolve_size(size, len(pool))
    rng = np.random.default_rng([seed, 0xF7])
    if scheme not in SCHEMES:
        raise UnknownChoiceError("sampling scheme", scheme, SCHEMES)
    if n == len(pool):
        return np.sort(pool)
    if scheme == "random":
        chosen = rng.choice(pool, size=n, replace=False)
    elif scheme == "stratified":
        if targets is None:
            raise ValueError("stratified sampling needs targets")
        chosen = _stratified(pool, n, np.asarray(targets, dtype=float)[pool], rng)
    else:
        if descriptors is None:
            raise ValueError("diverse sampling needs descriptors")
        chosen = pool[_farthest_points(np.asarray(descriptors, dtype=float)[pool], n, rng)]
    return np.sort(chosen)


def _stratified(pool: np.ndarray, n: int, y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Equal-count target bins (quantiles); each bin contributes in proportion to its size
    (largest remainders), so the sample's target distribution follows the pool's."""
    n_bins = max(1, min(10, n // 2))
    order = np.argsort(y, kind="stable")
    bins = np.array_split(order, n_bins)
    quota = np.array([len(b) for b in bins], dtype=float) * n / len(pool)
    take = np.floor(quota).astype(int)
    for i in np.argsort(-(quota - take))[: n - take.sum()]:
        take[i] += 1
    parts = [rng.choice(b, size=k, replace=False) for b, k in zip(bins, take) if k]
    return pool[np.concatenate(parts)]


def _farthest_points(x: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Greedy farthest-point sampling: start at a seeded random point, then repeatedly add the point
    farthest from everything chosen (ties broken by index)."""
    chosen = [int(rng.integers(len(x)))]
    dist = np.linalg.norm(x - x[chosen[0]], axis=1)
    dist[chosen[0]] = -np.inf  # never pick a point twice (duplicate descriptor rows tie at distance 0)
    for _ in range(n - 1):
        nxt = int(np.argmax(dist))
        chosen.append(nxt)
        dist = np.minimum(dist, np.linalg.norm(x - x[nxt], axis=1))
        dist[nxt] = -np.inf
    return np.asarray(chosen, dtype=np.int64)
