"""The ``emt:alloys`` generator: determinism, prefix property, physical sanity, parameter checks, registry."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT

from tlsearch.data._base import Candidate
from tlsearch.data._emt import PROPERTIES, EMTAlloys, element_reference, label, make_structure
from tlsearch.data._ref import DatasetRef
from tlsearch.data._registry import load_dataset
from tlsearch.errors import BadReferenceError, UnknownChoiceError


def _generate(ref: str, tmp_path: Path) -> list[Candidate]:
    return list(EMTAlloys().candidates(DatasetRef.parse(ref), tmp_path))


def _same(a: Candidate, b: Candidate) -> bool:
    return (
        a.id == b.id
        and list(a.atoms.elements) == list(b.atoms.elements)
        and np.array_equal(np.asarray(a.atoms.lattice_mat), np.asarray(b.atoms.lattice_mat))
        and np.array_equal(np.asarray(a.atoms.frac_coords), np.asarray(b.atoms.frac_coords))
        and dict(a.targets) == dict(b.targets)
    )


def test_same_seed_gives_identical_structures_and_labels(tmp_path: Path) -> None:
    first = _generate("emt:alloys?n=6&seed=3", tmp_path)
    second = _generate("emt:alloys?n=6&seed=3", tmp_path)
    assert [c.id for c in first] == [f"emt-3-{i:05d}" for i in range(6)]
    assert all(_same(a, b) for a, b in zip(first, second, strict=True))


def test_different_seed_gives_different_structures(tmp_path: Path) -> None:
    a = _generate("emt:alloys?n=6&seed=3", tmp_path)
    b = _generate("emt:alloys?n=6&seed=4", tmp_path)
    lattices = lambda cs: [np.round(np.asarray(c.atoms.lattice_mat), 6).tolist() for c in cs]  # noqa: E731
    assert lattices(a) != lattices(b)
    assert [c.targets["energy_per_atom"] for c in a] != [c.targets["energy_per_atom"] for c in b]


def test_smaller_n_is_a_prefix_of_larger_n(tmp_path: Path) -> None:
    small = _generate("emt:alloys?n=5&seed=0", tmp_path)
    large = _generate("emt:alloys?n=12&seed=0", tmp_path)
    assert len(small) == 5 and len(large) == 12
    assert all(_same(a, b) for a, b in zip(small, large[:5]))


def test_max_atoms_and_species_are_respected() -> None:
    for i in range(30):
        atoms = make_structure(7, i, 1)
        assert len(atoms) == 1
    sizes, species = set(), set()
    for i in range(40):
        atoms = make_structure(7, i, 8)
        assert 1 <= len(atoms) <= 8
        sizes.add(len(atoms))
        species.add(len(set(atoms.get_chemical_symbols())))
        assert set(atoms.get_chemical_symbols()) <= {"Al", "Cu", "Ag", "Au", "Ni", "Pd", "Pt"}
    assert sizes == {1, 2, 4, 8} and species == {1, 2, 3}


def test_pure_relaxed_fcc_copper_has_zero_formation_energy() -> None:
    _, v_cu = element_reference("Cu")
    targets = label(bulk("Cu", "fcc", a=(4 * v_cu) ** (1 / 3)))
    assert abs(targets["formation_energy_per_atom"]) < 1e-4
    assert targets["volume_per_atom"] == pytest.approx(v_cu, rel=1e-3)
    assert 100 < targets["bulk_modulus"] < 200  # EMT Cu: ~134 GPa (experiment: 140)


def test_labels_match_a_fresh_emt_calculator() -> None:
    for i in range(5):
        atoms = make_structure(1, i, 8)
        fresh = atoms.copy()
        fresh.calc = EMT()
        expected = fresh.get_potential_energy() / len(atoms)
        assert label(atoms)["energy_per_atom"] == pytest.approx(expected, abs=1e-10)


def test_labels_are_physically_sensible(tmp_path: Path) -> None:
    cands = _generate("emt:alloys?n=40&seed=2", tmp_path)
    assert all(c.atoms is not None and not c.error for c in cands)
    assert all(set(c.targets) == set(PROPERTIES) for c in cands)  # the EOS fit succeeded everywhere
    for c in cands:
        t = c.targets
        assert 10 <= t["bulk_modulus"] <= 500, (c.id, t)
        assert 8 <= t["volume_per_atom"] <= 25, (c.id, t)
        assert -1 < t["formation_energy_per_atom"] < 2, (c.id, t)
        assert np.isfinite(t["energy_per_atom"])


@pytest.mark.parametrize(
    ("query", "param"),
    [("n=0", "n"), ("n=1000001", "n"), ("n=abc", "n"), ("n=2.5", "n"), ("seed=-1", "seed"),
     ("seed=x", "seed"), ("max_atoms=0", "max_atoms"), ("max_atoms=", "max_atoms")],
)
def test_bad_parameter_values_are_rejected(query: str, param: str, tmp_path: Path) -> None:
    ref = DatasetRef.parse(f"emt:alloys?{query}")
    value = query.split("=", 1)[1]
    with pytest.raises(BadReferenceError, match=rf"'{param}'.*'{value}'") as info:
        EMTAlloys().check_ref(ref)
    assert "integer" in str(info.value)
    with pytest.raises(BadReferenceError):
        next(EMTAlloys().candidates(ref, tmp_path))
    with pytest.raises(BadReferenceError):
        load_dataset(ref, cache=tmp_path)


def test_unknown_parameter_and_dataset_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(BadReferenceError, match="unknown parameter"):
        load_dataset("emt:alloys?size=3", cache=tmp_path)
    with pytest.raises(UnknownChoiceError, match="alloys"):
        load_dataset("emt:metals", cache=tmp_path)


def test_fingerprint_and_provenance() -> None:
    ref = DatasetRef.parse("emt:alloys?n=7")
    assert "emt-v1" in EMTAlloys().fingerprint(ref)
    prov = EMTAlloys().provenance(ref, Path("."))
    assert prov["generator"] == "ASE EMT" and prov["n"] == 7 and prov["seed"] == 0 and prov["max_atoms"] == 8


def test_load_dataset_through_the_registry(tmp_path: Path) -> None:
    ds = load_dataset("emt:alloys?n=20&seed=1", cache=tmp_path)
    assert len(ds) == 20 and not ds.skipped
    assert ds.properties == PROPERTIES
    assert ds.ids == [f"emt-1-{i:05d}" for i in range(20)]
    for prop in PROPERTIES:
        assert np.isfinite(ds.values(prop)).all()
    assert ds.provenance["generator"] == "ASE EMT"
    again = load_dataset("emt:alloys?n=20&seed=1", cache=tmp_path)  # from the parquet cache
    assert again.ids == ds.ids
    np.testing.assert_allclose(again.values("bulk_modulus"), ds.values("bulk_modulus"))
