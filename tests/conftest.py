"""Shared fixtures: an isolated cache per test and a few small real crystal structures."""

from __future__ import annotations

import numpy as np
import pytest
from jarvis.core.atoms import Atoms


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    """Every test gets its own empty tlsearch cache (never the user's)."""
    monkeypatch.setenv("TLSEARCH_CACHE", str(tmp_path / "tlcache"))
    monkeypatch.setenv("DGLBACKEND", "pytorch")


def fcc(element: str = "Cu", a: float = 3.61) -> Atoms:
    lat = 0.5 * a * np.array([[0, 1, 1], [1, 0, 1], [1, 1, 0]], dtype=float)
    return Atoms(lattice_mat=lat, coords=[[0, 0, 0]], elements=[element], cartesian=False)


def rocksalt(a: float = 5.64) -> Atoms:
    lat = 0.5 * a * np.array([[0, 1, 1], [1, 0, 1], [1, 1, 0]], dtype=float)
    return Atoms(lattice_mat=lat, coords=[[0, 0, 0], [0.5, 0.5, 0.5]], elements=["Na", "Cl"], cartesian=False)


def diamond(a: float = 5.43) -> Atoms:
    lat = 0.5 * a * np.array([[0, 1, 1], [1, 0, 1], [1, 1, 0]], dtype=float)
    return Atoms(lattice_mat=lat, coords=[[0, 0, 0], [0.25, 0.25, 0.25]], elements=["Si", "Si"], cartesian=False)


def structures(n: int = 12, seed: int = 0) -> list[Atoms]:
    """``n`` distinct small crystals: strained and rattled fcc/rock-salt/diamond cells."""
    rng = np.random.default_rng(seed)
    makers = [fcc, rocksalt, diamond]
    out = []
    for i in range(n):
        base = makers[i % 3]()
        lat = np.asarray(base.lattice_mat) @ (np.eye(3) + rng.uniform(-0.03, 0.03, (3, 3)))
        frac = np.asarray(base.frac_coords) + rng.uniform(-0.01, 0.01, (base.num_atoms, 3))
        out.append(Atoms(lattice_mat=lat, coords=frac, elements=list(base.elements), cartesian=False))
    return out


@pytest.fixture
def small_structures() -> list[Atoms]:
    return structures()
