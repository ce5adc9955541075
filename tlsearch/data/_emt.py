"""``emt:alloys``: random metal-alloy crystals labelled with ASE's EMT potential, generated on the fly.

Each structure is a small fcc, bcc or hcp cell of Al/Cu/Ag/Au/Ni/Pd/Pt (1-3 species), randomly strained
(up to +-3% per lattice-vector component) and rattled (up to 0.05 A). Labels: the EMT energy per atom
at that geometry, the formation energy against the relaxed fcc elements, and the equilibrium volume
per atom and bulk modulus of a Birch-Murnaghan fit to 7 isotropically scaled copies (+-6% in volume).
The i-th structure depends only on ``(seed, i, max_atoms)``, so a smaller ``n`` is a prefix of a larger.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ase
import numpy as np
from ase import Atoms as AseAtoms
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.data import atomic_numbers, reference_states
from ase.eos import EquationOfState
from ase.units import GPa
from jarvis.core.atoms import Atoms

from tlsearch.data._base import Candidate, DatasetInfo, Source
from tlsearch.data._ref import DatasetRef
from tlsearch.errors import BadReferenceError

GENERATOR_VERSION = "emt-v1"
ELEMENTS = ("Al", "Cu", "Ag", "Au", "Ni", "Pd", "Pt")
PROPERTIES = ("formation_energy_per_atom", "energy_per_atom", "volume_per_atom", "bulk_modulus")
DEFAULTS = {"n": 200, "seed": 0, "max_atoms": 8}
LIMITS = {"n": (1, 1_000_000), "seed": (0, 2**63 - 1), "max_atoms": (1, None)}
EOS_SCALES = (0.94, 0.96, 0.98, 1.0, 1.02, 1.04, 1.06)  # volume factors, most compressed first
MAX_STRAIN, MAX_DISPLACEMENT = 0.03, 0.05
# (lattice, cubic cell?, repeat): the candidate cells; those with more than max_atoms atoms are left out
_CELLS = [(lat, cubic, rep) for lat, cubic in (("fcc", False), ("fcc", True), ("bcc", False), ("bcc", True),
                                               ("hcp", False)) for rep in ((1, 1, 1), (2, 1, 1), (2, 2, 1), (2, 2, 2))]
_CELL_SIZE = {"fcc": (1, 4), "bcc": (1, 2), "hcp": (2, 2)}  # atoms per (primitive, cubic) cell
_ELEMENT_REF: dict[str, tuple[float, float]] = {}  # symbol -> (energy/atom, volume/atom) of relaxed fcc


class _FrozenNeighbors:
    """EMT's neighbour list, built on the most compressed copy of an isotropic series and then reused (~4x
    faster). Scaling scales every distance alike, so its pairs are a superset of every larger copy's; EMT
    itself keeps only the pairs within its cutoff, so the energies are exactly those of a fresh EMT."""

    def __init__(self, nl: Any) -> None:
        self.get_neighbors = nl.get_neighbors

    def update(self, atoms: AseAtoms) -> bool:
        return False


def _fit(volumes: list[float], energies: list[float]) -> tuple[float, float, float] | None:
    """Birch-Murnaghan ``(v0, e0, B)`` in eV and A^3, None unless finite, B > 0 and v0 within the volumes."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit = tuple(float(x) for x in EquationOfState(volumes, energies, eos="birchmurnaghan").fit(warn=False))
    except Exception:
        return None
    ok = all(math.isfinite(x) for x in fit) and fit[2] > 0 and min(volumes) <= fit[0] <= max(volumes)
    return (fit[0], fit[1], fit[2]) if ok else None


def _eos(atoms: AseAtoms, tries: int = 3) -> tuple[float, tuple[float, float, float] | None]:
    """EMT energy of ``atoms`` and its isotropic EOS fit ``(v0, e0, B)`` (None if it failed). A series whose
    minimum lies outside it is followed by one shifted 12% in volume towards it, ``tries`` series at most."""
    cell, work, energy, shift = np.array(atoms.cell), atoms.copy(), math.nan, 1.0
    for t in range(tries):
        work.calc = calc = EMT()
        volumes, energies = [], []
        for k, s in enumerate(EOS_SCALES):
            work.set_cell(cell * (shift * s) ** (1.0 / 3.0), scale_atoms=True)
            energies.append(float(work.get_potential_energy()))
            volumes.append(float(work.get_volume()))
            if k == 0 and hasattr(calc, "nl"):
                calc.nl = _FrozenNeighbors(calc.nl)
        energy = energies[3] if t == 0 else energy  # EOS_SCALES[3] == 1: atoms itself
        fit = _fit(volumes, energies)
        if fit is not None:
            return energy, fit
        shift *= 0.88 if energies[0] < energies[-1] else 1.12
    return energy, None


def element_reference(symbol: str) -> tuple[float, float]:
    """(energy/atom, volume/atom) of the element's fcc crystal relaxed under EMT (computed once, cached)."""
    if symbol not in _ELEMENT_REF:
        _, fit = _eos(bulk(symbol, "fcc", a=float(reference_states[atomic_numbers[symbol]]["a"])))
        if fit is None:
            raise RuntimeError(f"EMT equation of state of fcc {symbol} could not be fitted")
        _ELEMENT_REF[symbol] = (fit[1], fit[0])
    return _ELEMENT_REF[symbol]


def make_structure(seed: int, index: int, max_atoms: int) -> AseAtoms:
    """The ``index``-th random alloy of ``seed``: depends on nothing else, whatever the dataset size."""
    rng = np.random.default_rng([seed, index])
    cells = [c for c in _CELLS if _CELL_SIZE[c[0]][c[1]] * int(np.prod(c[2])) <= max_atoms]
    lattices = sorted({c[0] for c in cells})
    lattice = lattices[int(rng.integers(len(lattices)))]
    cells = [c for c in cells if c[0] == lattice]
    _, cubic, rep = cells[int(rng.integers(len(cells)))]
    host = ELEMENTS[int(rng.integers(len(ELEMENTS)))]
    kw: dict[str, Any] = {"c": math.sqrt(8.0 / 3.0)} if lattice == "hcp" else {"cubic": cubic}
    atoms = bulk(host, lattice, a=1.0, **kw).repeat(rep)
    natoms = len(atoms)
    k = min(int(rng.integers(1, 4)), natoms)
    others = [e for e in ELEMENTS if e != host]
    species = [host, *(others[int(j)] for j in rng.choice(len(others), size=k - 1, replace=False))]
    symbols = np.array([species[int(j)] for j in rng.integers(k, size=natoms)], dtype=object)
    symbols[rng.permutation(natoms)[:k]] = species  # every chosen species occurs at least once
    atoms.set_chemical_symbols(list(symbols))
    a_fcc = np.mean([(4.0 * element_reference(s)[1]) ** (1.0 / 3.0) for s in symbols])
    volume = natoms * a_fcc**3 / 4.0  # the fcc volume/atom of that lattice constant, for every lattice
    atoms.set_cell(np.array(atoms.cell) * (volume / atoms.get_volume()) ** (1.0 / 3.0), scale_atoms=True)
    strain = np.eye(3) + rng.uniform(-MAX_STRAIN, MAX_STRAIN, size=(3, 3))
    atoms.set_cell(np.array(atoms.cell) @ strain, scale_atoms=True)
    direction = rng.normal(size=(natoms, 3))
    direction /= np.maximum(np.linalg.norm(direction, axis=1, keepdims=True), 1e-12)
    atoms.positions += direction * rng.uniform(0.0, MAX_DISPLACEMENT, size=(natoms, 1))
    atoms.wrap()
    return atoms


def label(atoms: AseAtoms) -> dict[str, float]:
    """The four EMT targets of a structure; the EOS ones are left out when the fit fails."""
    n = len(atoms)
    energy, fit = _eos(atoms)
    e = energy / n
    ref = sum(element_reference(s)[0] for s in atoms.get_chemical_symbols()) / n
    out = {"formation_energy_per_atom": e - ref, "energy_per_atom": e}
    if fit is not None:
        out.update(volume_per_atom=fit[0] / n, bulk_modulus=fit[2] / GPa)
    return out


def to_jarvis(atoms: AseAtoms) -> Atoms:
    return Atoms(lattice_mat=np.array(atoms.cell), coords=atoms.get_scaled_positions(),
                 elements=atoms.get_chemical_symbols(), cartesian=False)


def parse_params(ref: DatasetRef) -> dict[str, int]:
    """``n``, ``seed`` and ``max_atoms`` of ``ref`` as integers (defaults filled in), range-checked."""
    out = dict(DEFAULTS)
    for key, text in ref.param_dict.items():
        lo, hi = LIMITS[key]
        allowed = f"an integer in {lo}..{hi}" if hi is not None else f"an integer >= {lo}"
        value = int(text) if re.fullmatch(r"\s*[+-]?\d+\s*", text) else None
        if value is None or value < lo or (hi is not None and value > hi):
            raise BadReferenceError(f"{ref}: parameter {key!r} must be {allowed}, got {text!r}")
        out[key] = value
    return out


class EMTAlloys(Source):
    name = "emt"
    description = "Random Al/Cu/Ag/Au/Ni/Pd/Pt alloy crystals labelled on the fly with ASE's EMT potential"
    params = {
        "n": "number of structures, 1..1000000 (default 200)",
        "seed": "random seed, an integer >= 0 (default 0); structure i depends only on seed, i, max_atoms",
        "max_atoms": "largest cell, in atoms, >= 1 (default 8; cells never exceed 32 atoms)",
    }

    def datasets(self) -> dict[str, DatasetInfo]:
        return {"alloys": DatasetInfo(
            "alloys", PROPERTIES,
            "EMT formation and total energy (eV/atom), equilibrium volume (A^3/atom) and bulk modulus (GPa) "
            "of strained, rattled fcc/bcc/hcp alloy cells")}

    def check_ref(self, ref: DatasetRef) -> None:
        super().check_ref(ref)
        parse_params(ref)

    def candidates(self, ref: DatasetRef, cache_dir: Path) -> Iterator[Candidate]:
        p = parse_params(ref)
        for i in range(p["n"]):
            cid = f"emt-{p['seed']}-{i:05d}"
            try:
                atoms = make_structure(p["seed"], i, p["max_atoms"])
                candidate = Candidate(cid, to_jarvis(atoms), label(atoms))
            except Exception as exc:  # never raise: the registry records the entry as skipped
                candidate = Candidate(cid, None, {}, f"EMT generation or labelling failed: {exc!r}")
            yield candidate

    def fingerprint(self, ref: DatasetRef) -> str:
        return f"{GENERATOR_VERSION};ase={ase.__version__}"

    def provenance(self, ref: DatasetRef, cache_dir: Path) -> dict[str, Any]:
        p = parse_params(ref)
        return {"generator": "ASE EMT", "generator_version": GENERATOR_VERSION, "ase_version": ase.__version__,
                "elements": list(ELEMENTS), **p}
