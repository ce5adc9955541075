"""Structures to predict: a folder of structure files (with or without ``id_prop.csv``), one file, or any dataset
reference tlsearch reads.

- a folder with ``id_prop.csv``: its rows (ALIGNN's layout, see :mod:`tlsearch.data._folder`); true values come from
  the column named like the model's property, or from the only column of a file without a header row;
- a folder without one: every POSCAR/CONTCAR, ``.vasp``, ``.poscar``, ``.cif`` or ``.xyz`` file in it (and files
  without an extension, read as POSCAR, as ALIGNN does); ids are the file names; no true values;
- one structure file; or a dataset reference (``emt:alloys?n=80&seed=0``, ``folder:/data/x``): its records, true
  values from the property when the dataset has it.

Entries that cannot be used are kept with a reason (:class:`Skipped`), never raised; only an input that gives no
entry at all is an error.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tlsearch.data._base import Skipped
from tlsearch.data._ref import DatasetRef
from tlsearch.data._structures import structure_problem
from tlsearch.errors import DataFileError, UserInputError

SUFFIXES = {".vasp", ".poscar", ".cif", ".xyz", ""}
_KINDS = ("a folder of structure files (POSCAR/.vasp, .cif, .xyz; with or without an id_prop.csv), one structure "
          "file, or a dataset reference such as 'emt:alloys?n=80&seed=0' or 'folder:/data/x'")


@dataclass
class Structures:
    """What :func:`read_structures` found: the usable entries and the skipped ones, with reasons."""

    where: str
    ids: list[str]
    atoms: list[Any]
    y: np.ndarray | None = None   # true values (NaN where missing), None when the input has none
    value_source: str = ""        # where the true values came from, e.g. "id_prop.csv column bulk_modulus"
    skipped: list[Skipped] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ids)


def _is_structure_file(path: Path) -> bool:
    name = path.name
    return (path.is_file() and not name.startswith(".")
            and (path.suffix.lower() in SUFFIXES or name.upper().startswith(("POSCAR", "CONTCAR"))))


class _Collector:
    """Adds parsed entries, skipping unparsable, broken and repeated ones with a reason."""

    def __init__(self, out: Structures) -> None:
        self.out, self.seen, self.values = out, set(), []

    def add(self, rid: str, atoms: Any, error: str = "", value: float = math.nan, missing: bool = False) -> None:
        out = self.out
        if rid in self.seen:
            out.skipped.append(Skipped(rid, "duplicate id", "an entry with this id came earlier"))
            return
        self.seen.add(rid)
        if atoms is None:
            out.skipped.append(Skipped(rid, "missing file" if missing else "unparsable structure", error))
            return
        problem = structure_problem(atoms)
        if problem:
            out.skipped.append(Skipped(rid, "bad structure", problem))
            return
        out.ids.append(rid)
        out.atoms.append(atoms)
        self.values.append(value)


def _value_column(table: Any, prop: str | None) -> tuple[int | None, str]:
    if prop is not None and prop in table.properties:
        return table.properties.index(prop), prop
    if not table.has_header and len(table.properties) == 1:
        return 0, table.properties[0]
    return None, ""


def _from_folder(directory: Path, prop: str | None, progress: Callable[[int, int], None] | None) -> Structures:
    from tlsearch.data._folder import read_id_prop, read_structure

    out = Structures(str(directory), [], [])
    col = _Collector(out)
    id_prop = directory / "id_prop.csv"
    if id_prop.is_file():
        table = read_id_prop(id_prop)
        column, name = _value_column(table, prop)
        if column is None:
            out.notes.append(f"{id_prop} has no column {prop!r} (columns: {', '.join(table.properties)}): "
                             "no true values, no MAE")
        for n, (lineno, row) in enumerate(table.rows):
            if progress:
                progress(n, len(table.rows))
            if not row or not row[0]:
                out.skipped.append(Skipped(f"<id_prop.csv line {lineno}>", "bad row", "empty file name"))
                continue
            path = directory / row[0]
            atoms, error = read_structure(path)
            value = math.nan
            if column is not None and column + 1 < len(row):
                try:
                    value = float(row[column + 1])
                except ValueError:
                    pass
            col.add(row[0], atoms, error, value, missing=not path.is_file())
        if column is not None:
            out.value_source = f"{id_prop.name} column {name}"
    else:
        files = sorted(p for p in directory.iterdir() if _is_structure_file(p))
        for n, path in enumerate(files):
            if progress:
                progress(n, len(files))
            atoms, error = read_structure(path)
            col.add(path.name, atoms, error)
        if not files:
            raise DataFileError(f"{directory}: no structure files (POSCAR/CONTCAR, .vasp, .poscar, .cif, .xyz) and no "
                                f"id_prop.csv; fix: give {_KINDS}")
    if progress:
        progress(len(out.ids) + len(out.skipped), len(out.ids) + len(out.skipped))
    if out.value_source:
        out.y = np.asarray(col.values, dtype=np.float64)
    return out


def _from_ref(text: str, prop: str | None, cache: str | Path | None) -> Structures:
    from tlsearch.data._registry import load_dataset

    ds = load_dataset(DatasetRef.parse(text), cache=cache)
    out = Structures(text, ds.ids, [r.atoms for r in ds.records], skipped=list(ds.skipped))
    if prop is not None and prop in ds.properties:
        out.y, out.value_source = ds.values(prop), f"{text} property {prop}"
    else:
        out.notes.append(f"{text} has no property {prop!r} (properties: {', '.join(ds.properties)}): no MAE")
    return out


def read_structures(source: str | Path, prop: str | None = None, cache: str | Path | None = None,
                    progress: Callable[[int, int], None] | None = None) -> Structures:
    """The structures of ``source`` (see the module docstring); true values of ``prop`` when it has them."""
    path = Path(source).expanduser()
    if path.is_dir():
        return _from_folder(path.resolve(), prop, progress)
    if path.is_file():
        from tlsearch.data._folder import read_structure

        out = Structures(str(path), [], [])
        atoms, error = read_structure(path)
        _Collector(out).add(path.name, atoms, error)
        return out
    text = str(source)
    if ":" in text and text.split(":", 1)[0] in _sources():
        return _from_ref(text, prop, cache)
    raise UserInputError(f"{source}: no such file or directory, and not a dataset reference; fix: give {_KINDS}")


def _sources() -> list[str]:
    from tlsearch.data._registry import source_names

    return source_names()


def loose_key(atoms: Any) -> bytes:
    """A structure's identity up to file precision and atom order: lattice (Angstrom) and wrapped fractional
    coordinates rounded to 1e-3, with the species; the same crystal read from a dataset or from a POSCAR written
    from it gets the same key."""
    import hashlib

    lat = np.round(np.asarray(atoms.lattice_mat, dtype=np.float64), 3) + 0.0  # + 0.0: no -0.0
    frac = (np.round(np.mod(np.asarray(atoms.frac_coords, dtype=np.float64), 1.0), 3) % 1.0) + 0.0
    rows = sorted(zip(atoms.elements, map(tuple, frac.tolist())))
    return hashlib.sha256(repr((lat.tolist(), rows)).encode()).digest()


def _in_test_set(target: str, prop: str, test_fraction: float, split_seed: int,
                 cache: str | Path | None) -> dict[bytes, bool] | str:
    """Every structure of the target dataset that has ``prop`` (by :func:`loose_key`): True when it is in the
    held-out test set, taken exactly as training takes it (as :func:`tlsearch.prepared.load_split` does: the
    records with a finite ``prop``, split by id); the reason as a string when the dataset cannot be read here."""
    from tlsearch.data._registry import load_dataset
    from tlsearch.data.splits import split_pool

    try:
        ds = load_dataset(target, cache=cache).with_property(prop)
    except UserInputError as exc:
        return str(exc)
    split = split_pool(ds.ids, test_fraction, split_seed)
    test = np.zeros(len(ds), dtype=bool)
    test[split.test] = True  # split.test holds record indices, not ids
    return {loose_key(r.atoms): bool(t) for r, t in zip(ds.records, test)}


def training_overlap(atoms: list[Any], target: str, prop: str, test_fraction: float, split_seed: int,
                     cache: str | Path | None = None) -> str | None:
    """A note when structures to predict are in the model's target dataset: outside its held-out test set the
    model may have trained on them (its FT samples are drawn there), so their errors are no test of it. None
    when there is no overlap; a note saying so when the target dataset cannot be read here."""
    where = _in_test_set(target, prop, test_fraction, split_seed, cache)
    if isinstance(where, str):
        return f"not checked whether these structures were in the model's training data ({target}: {where})"
    hits = [where[k] for k in map(loose_key, atoms) if k in where]
    n_test, n_pool = sum(hits), len(hits) - sum(hits)
    if not hits:
        return None
    test_part = f"{n_test} of these structures are in the held-out test set of the model's target dataset ({target}): " \
                "never trained on" if n_test else ""
    if not n_pool:
        return test_part + "."
    return (f"{n_pool} of these structures are in the model's target dataset ({target}) outside its held-out test "
            "set: the model may have trained on them, so their errors are not a test of it"
            + (f"; {test_part}" if n_test else "") + ".")
