"""A cheap composition + structure descriptor for diversity sampling (no training, no graphs).

Per structure: element fractions over the periodic table (Z 1-103), the mean and spread of atomic
number and mass, volume per atom, density and the number of sites (log). Columns are standardised
before distances are taken.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from ase.data import atomic_masses, atomic_numbers
from jarvis.core.atoms import Atoms

N_ELEMENTS = 103


def describe(atoms: Atoms) -> np.ndarray:
    z = np.array([atomic_numbers[e] for e in atoms.elements])
    frac = np.bincount(np.clip(z, 1, N_ELEMENTS) - 1, minlength=N_ELEMENTS) / len(z)
    m = atomic_masses[z]
    vol = abs(float(np.linalg.det(np.asarray(atoms.lattice_mat, dtype=float))))
    extra = [z.mean(), z.std(), m.mean(), m.std(), vol / len(z), m.sum() / vol, np.log(len(z))]
    return np.concatenate([frac, np.asarray(extra, dtype=float)])


def descriptor_matrix(structures: Sequence[Atoms]) -> np.ndarray:
    """Standardised descriptor matrix (n, d); constant columns become zero."""
    x = np.stack([describe(a) for a in structures]) if structures else np.zeros((0, N_ELEMENTS + 7))
    std = x.std(axis=0)
    std[std == 0] = 1.0
    return (x - x.mean(axis=0)) / std
