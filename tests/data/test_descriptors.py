"""The cheap composition + structure descriptor used for diversity sampling."""

from __future__ import annotations

import numpy as np
import pytest
from ase.data import atomic_masses, atomic_numbers
from jarvis.core.atoms import Atoms

from tlsearch.data.descriptors import N_ELEMENTS, describe, descriptor_matrix

D = N_ELEMENTS + 7
Z_MEAN, Z_STD, M_MEAN, M_STD, VOL_PER_ATOM, DENSITY, LOG_SITES = range(N_ELEMENTS, D)


def cu_fcc(a: float = 3.61) -> Atoms:
    h = a / 2
    return Atoms(lattice_mat=[[0, h, h], [h, 0, h], [h, h, 0]], coords=[[0, 0, 0]], elements=["Cu"], cartesian=False)


def cu_fcc_conventional(a: float = 3.61) -> Atoms:
    frac = [[0, 0, 0], [0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0]]
    return Atoms(lattice_mat=np.eye(3) * a, coords=frac, elements=["Cu"] * 4, cartesian=False)


def cu_bcc(a: float = 2.87) -> Atoms:
    return Atoms(lattice_mat=np.eye(3) * a, coords=[[0, 0, 0], [0.5, 0.5, 0.5]], elements=["Cu"] * 2, cartesian=False)


def nacl() -> Atoms:
    frac = [[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5], [0.5, 0, 0], [0, 0.5, 0], [0, 0, 0.5], [0.5, 0.5, 0.5]]
    return Atoms(lattice_mat=np.eye(3) * 5.64, coords=frac, elements=["Na"] * 4 + ["Cl"] * 4, cartesian=False)


def gaas_sio() -> Atoms:
    frac = [[0, 0, 0], [0.25, 0.25, 0.25], [0.5, 0.5, 0], [0.1, 0.6, 0.3], [0.7, 0.2, 0.9]]
    lat = [[5.0, 0.2, 0.0], [0.0, 6.0, 0.3], [0.4, 0.0, 7.0]]
    return Atoms(lattice_mat=lat, coords=frac, elements=["Ga", "As", "Si", "O", "O"], cartesian=False)


STRUCTURES = [cu_fcc, cu_fcc_conventional, cu_bcc, nacl, gaas_sio]


@pytest.mark.parametrize("make", STRUCTURES)
def test_fixed_length_and_finite(make) -> None:
    v = describe(make())
    assert v.shape == (D,)
    assert np.all(np.isfinite(v))


@pytest.mark.parametrize("make", STRUCTURES)
def test_element_fractions_sum_to_one(make) -> None:
    atoms = make()
    frac = describe(atoms)[:N_ELEMENTS]
    assert frac.sum() == pytest.approx(1.0)
    assert np.all(frac >= 0)
    for el in set(atoms.elements):
        expected = list(atoms.elements).count(el) / len(atoms.elements)
        assert frac[atomic_numbers[el] - 1] == pytest.approx(expected)


def test_mixed_composition_statistics() -> None:
    v = describe(nacl())
    z = np.array([11] * 4 + [17] * 4)
    m = atomic_masses[z]
    assert v[Z_MEAN] == pytest.approx(14.0)
    assert v[Z_STD] == pytest.approx(3.0)
    assert v[M_MEAN] == pytest.approx(m.mean())
    assert v[M_STD] == pytest.approx(m.std())
    assert v[VOL_PER_ATOM] == pytest.approx(5.64**3 / 8)
    assert v[DENSITY] == pytest.approx(m.sum() / 5.64**3)
    assert v[LOG_SITES] == pytest.approx(np.log(8))


def test_cu_fcc_and_bcc_differ_in_volume_and_density() -> None:
    fcc, bcc = describe(cu_fcc()), describe(cu_bcc())
    # same composition ...
    assert np.array_equal(fcc[:N_ELEMENTS], bcc[:N_ELEMENTS])
    assert fcc[Z_MEAN] == bcc[Z_MEAN] and fcc[M_MEAN] == bcc[M_MEAN]
    # ... but a different structure
    assert fcc[VOL_PER_ATOM] == pytest.approx(3.61**3 / 4)
    assert bcc[VOL_PER_ATOM] == pytest.approx(2.87**3 / 2)
    assert fcc[VOL_PER_ATOM] != pytest.approx(bcc[VOL_PER_ATOM], rel=1e-4)
    assert fcc[DENSITY] != pytest.approx(bcc[DENSITY], rel=1e-4)
    assert not np.allclose(fcc, bcc)
    x = descriptor_matrix([cu_fcc(), cu_bcc()])
    assert not np.allclose(x[0], x[1])


def test_identical_structures_have_identical_descriptors() -> None:
    assert np.array_equal(describe(cu_fcc()), describe(cu_fcc()))
    x = descriptor_matrix([nacl(), cu_fcc(), nacl()])
    assert np.array_equal(x[0], x[2])
    assert not np.array_equal(x[0], x[1])


def test_cell_choice_only_changes_site_count() -> None:
    prim, conv = describe(cu_fcc()), describe(cu_fcc_conventional())
    assert np.allclose(np.delete(prim, LOG_SITES), np.delete(conv, LOG_SITES))
    assert conv[LOG_SITES] - prim[LOG_SITES] == pytest.approx(np.log(4))


def test_left_handed_lattice_gives_positive_volume() -> None:
    atoms = Atoms(lattice_mat=-np.eye(3) * 3.0, coords=[[0, 0, 0]], elements=["Cu"], cartesian=False)
    v = describe(atoms)
    assert v[VOL_PER_ATOM] == pytest.approx(27.0)
    assert v[DENSITY] > 0


def test_matrix_columns_standardised_and_constant_columns_zero() -> None:
    structures = [make() for make in STRUCTURES] + [cu_fcc(3.5), nacl()]
    raw = np.stack([describe(a) for a in structures])
    x = descriptor_matrix(structures)
    assert x.shape == (len(structures), D)
    assert np.allclose(x.mean(axis=0), 0.0, atol=1e-12)
    varying = raw.std(axis=0) > 0
    constant = ~varying
    assert varying.sum() >= 10 and constant.sum() >= 90  # most elements never occur
    assert np.allclose(x[:, varying].std(axis=0), 1.0)
    assert np.all(x[:, constant] == 0.0)
    # e.g. hydrogen never occurs: its column is exactly zero
    assert np.all(x[:, 0] == 0.0)


def test_matrix_single_structure_and_all_identical_are_zero() -> None:
    assert np.array_equal(descriptor_matrix([nacl()]), np.zeros((1, D)))
    assert np.array_equal(descriptor_matrix([cu_fcc()] * 3), np.zeros((3, D)))


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # numpy warns on the mean/std of an empty stack
def test_matrix_empty() -> None:
    x = descriptor_matrix([])
    assert x.shape == (0, D)


def test_matrix_feeds_diverse_sampling() -> None:
    from tlsearch.data.sampling import draw_sample

    structures = [cu_fcc(), cu_fcc(), cu_bcc(), nacl(), nacl(), gaas_sio()]
    x = descriptor_matrix(structures)
    sample = draw_sample(np.arange(6), 4, "diverse", seed=0, descriptors=x)
    assert len(set(sample.tolist())) == 4
    # the four distinct structures are chosen before any duplicate
    assert len({tuple(row) for row in x[sample]}) == 4
