"""Structure parsing and sanity checks shared by the sources."""

from __future__ import annotations

import ast
import contextlib
import io
import hashlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # jarvis takes ~2.5 s to import (scipy, sklearn, pandas): only where structures are made
    from jarvis.core.atoms import Atoms

MIN_VOLUME_PER_ATOM = 1.0  # Angstrom^3; anything smaller is a broken cell


def atoms_from_poscar(text: str) -> Atoms:
    from jarvis.io.vasp.inputs import Poscar

    return Poscar.from_string(text).atoms


def atoms_from_pymatgen_dict(obj: Mapping[str, Any] | str) -> Atoms:
    """A ``pymatgen.core.Structure.as_dict()`` (or its Python-literal text) to jarvis Atoms, no pymatgen needed."""
    from jarvis.core.atoms import Atoms

    d = ast.literal_eval(obj) if isinstance(obj, str) else obj
    lattice = np.asarray(d["lattice"]["matrix"], dtype=float)
    elements, coords = [], []
    for site in d["sites"]:
        species = site["species"]
        if len(species) != 1 or abs(float(species[0].get("occu", 1)) - 1.0) > 1e-6:
            raise ValueError(f"disordered site {species!r}: partial occupancies are not supported")
        elements.append(species[0]["element"])
        coords.append(site["abc"])
    return Atoms(lattice_mat=lattice, coords=np.asarray(coords, dtype=float), elements=elements, cartesian=False)


def atoms_from_arrays(lattice: Any, frac: Any, elements: list[str]) -> Atoms:
    from jarvis.core.atoms import Atoms

    return Atoms(
        lattice_mat=np.asarray(lattice, dtype=float).reshape(3, 3),
        coords=np.asarray(frac, dtype=float).reshape(-1, 3),
        elements=list(elements),
        cartesian=False,
    )


_KNOWN: dict[str, bool] = {}


def _element_known(symbol: str) -> bool:
    if symbol not in _KNOWN:
        from jarvis.core.specie import get_node_attributes

        try:
            with contextlib.redirect_stdout(io.StringIO()):  # jarvis prints a warning per unknown element
                feats = get_node_attributes(symbol, atom_features="cgcnn")
            _KNOWN[symbol] = feats is not None and len(feats) > 0
        except Exception:
            _KNOWN[symbol] = False
    return _KNOWN[symbol]


def structure_problem(atoms: Atoms) -> str:
    """Return why ``atoms`` cannot be used ('' when it is fine)."""
    if atoms.num_atoms < 1:
        return "no atoms"
    lat = np.asarray(atoms.lattice_mat, dtype=float)
    frac = np.asarray(atoms.frac_coords, dtype=float)
    if not (np.isfinite(lat).all() and np.isfinite(frac).all()):
        return "non-finite lattice or coordinates"
    volume = abs(float(np.linalg.det(lat)))
    if volume / atoms.num_atoms < MIN_VOLUME_PER_ATOM:
        return f"cell volume {volume:.3g} A^3 for {atoms.num_atoms} atoms is degenerate"
    unknown = sorted({e for e in atoms.elements if not _element_known(e)})
    if unknown:
        return f"unknown element(s) {unknown}"
    return ""


def structure_digest(atoms: Atoms) -> bytes:
    """Content hash of a structure: the exact float64 lattice and fractional coordinates, and the species."""
    h = hashlib.sha256(np.ascontiguousarray(atoms.lattice_mat, dtype=np.float64).tobytes())
    h.update(np.ascontiguousarray(atoms.frac_coords, dtype=np.float64).tobytes())
    h.update("\0".join(atoms.elements).encode())
    return h.digest()
