"""The ``folder`` source: a directory in ALIGNN's layout (``folder:/data/crystals``, ``folder:rel/dir?format=cif``).

The directory holds structure files (POSCAR/``.vasp``, ``.cif``, ``.xyz``) and ``id_prop.csv``: one row
per structure, the file name first, then one or more numeric property columns. ALIGNN's own files have
no header; their properties are then named ``target`` (one column) or ``target_0``, ``target_1``, ...
A header row (detected when the first row's second field is not a number) names the properties instead.
Bad rows and missing or unparsable structure files become skipped entries, not errors.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jarvis.core.atoms import Atoms

from tlsearch._io import file_sha256, stable_hash
from tlsearch.data._base import Candidate, DatasetInfo, Source
from tlsearch.data._ref import DatasetRef
from tlsearch.data._structures import atoms_from_poscar
from tlsearch.errors import DataFileError, UnknownChoiceError

FORMATS = ("auto", "poscar", "cif", "xyz")
_LAYOUT = (
    "expected layout: a directory holding structure files (POSCAR/.vasp, .cif or .xyz) and an id_prop.csv "
    "whose rows are 'file_name,value[,value...]' (optionally under a header row 'file,prop1[,prop2...]')"
)


@dataclass(frozen=True)
class _Table:
    properties: tuple[str, ...]
    rows: list[tuple[int, list[str]]]  # (line number, fields)
    has_header: bool


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _to_float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return float("nan")  # 'na', '' ... : dropped by the central validation


def read_id_prop(path: Path) -> _Table:
    """Parse an ALIGNN ``id_prop.csv`` (with or without a header row)."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            rows = [(n, [f.strip() for f in row]) for n, row in enumerate(csv.reader(fh), 1)]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataFileError(f"{path}: cannot read id_prop file ({type(exc).__name__}: {exc}); {_LAYOUT}") from None
    rows = [(n, r) for n, r in rows if any(r)]
    if not rows:
        raise DataFileError(f"{path}: id_prop file is empty; {_LAYOUT}")
    first = rows[0][1]
    if len(first) < 2:
        raise DataFileError(f"{path}: line {rows[0][0]} has {len(first)} column(s), need at least 2; {_LAYOUT}")
    has_header = not _is_float(first[1])
    n = len(first) - 1
    if has_header:
        names = tuple(name or f"target_{i}" for i, name in enumerate(first[1:]))
        if len(set(names)) != len(names):
            raise DataFileError(f"{path}: header row {first} repeats a property name")
        rows = rows[1:]
    else:
        names = ("target",) if n == 1 else tuple(f"target_{i}" for i in range(n))
    return _Table(names, rows, has_header)


class Folder(Source):
    name = "folder"
    description = "a directory of structure files plus id_prop.csv (ALIGNN's training-folder layout)"
    params = {
        "id_prop": "name of the property csv inside the directory (default id_prop.csv)",
        "format": "structure file format: auto (by extension; default), poscar, cif or xyz",
    }
    fixed_datasets = False

    def datasets(self) -> dict[str, DatasetInfo]:
        return {}

    @staticmethod
    def directory(ref: DatasetRef) -> Path:
        return Path(ref.name).expanduser().resolve()

    @staticmethod
    def id_prop_path(ref: DatasetRef) -> Path:
        return Folder.directory(ref) / ref.param_dict.get("id_prop", "id_prop.csv")

    def check_ref(self, ref: DatasetRef) -> None:
        super().check_ref(ref)
        fmt = ref.param_dict.get("format", "auto")
        if fmt not in FORMATS:
            raise UnknownChoiceError("format", fmt, FORMATS, where=str(ref))
        directory = self.directory(ref)
        if not directory.is_dir():
            raise DataFileError(f"{ref}: directory {directory} does not exist or is not a directory; {_LAYOUT}")
        id_prop = self.id_prop_path(ref)
        if not id_prop.is_file():
            raise DataFileError(f"{ref}: {id_prop} not found; {_LAYOUT}")

    def properties(self, ref: DatasetRef, cache_dir: Path) -> tuple[str, ...]:
        return read_id_prop(self.id_prop_path(ref)).properties

    def fingerprint(self, ref: DatasetRef) -> str:
        self.check_ref(ref)
        id_prop = self.id_prop_path(ref)
        table = read_id_prop(id_prop)
        directory = self.directory(ref)
        files: list[Any] = []
        for _n, row in table.rows:
            if not row or not row[0]:
                continue
            try:
                st = (directory / row[0]).stat()
                files.append([row[0], st.st_size, st.st_mtime_ns])
            except OSError:
                files.append([row[0], None, None])
        return f"dir={directory}|id_prop={file_sha256(id_prop)}|files={stable_hash(files)}"

    def candidates(self, ref: DatasetRef, cache_dir: Path) -> Iterator[Candidate]:
        id_prop = self.id_prop_path(ref)
        table = read_id_prop(id_prop)
        directory = self.directory(ref)
        fmt = ref.param_dict.get("format", "auto")
        width = len(table.properties) + 1
        for lineno, row in table.rows:
            rid = row[0] or f"<{id_prop.name} line {lineno}>"
            if len(row) != width:
                yield Candidate(rid, None, {}, f"{id_prop.name} line {lineno}: {len(row)} columns, expected {width}")
                continue
            targets = {p: _to_float(v) for p, v in zip(table.properties, row[1:])}
            if not row[0]:
                yield Candidate(rid, None, targets, f"{id_prop.name} line {lineno}: empty file name")
                continue
            path = directory / row[0]
            if not path.exists():
                yield Candidate(rid, None, targets, f"{path} not found", reason="missing file")
                continue
            atoms, error = read_structure(path, fmt)
            yield Candidate(rid, atoms, targets, error)

    def provenance(self, ref: DatasetRef, cache_dir: Path) -> dict[str, Any]:
        id_prop = self.id_prop_path(ref)
        return {
            "directory": str(self.directory(ref)),
            "id_prop": str(id_prop),
            "id_prop_sha256": file_sha256(id_prop),
            "format": ref.param_dict.get("format", "auto"),
        }


def detect_format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix == ".cif":
        return "cif"
    if suffix == ".xyz":
        return "xyz"
    return "poscar"  # .vasp, .poscar, POSCAR/CONTCAR without extension, anything else (ALIGNN's default)


def read_structure(path: Path, fmt: str = "auto") -> tuple[Atoms | None, str]:
    """(atoms, "") or (None, why it could not be read)."""
    if not path.is_file():
        return None, f"structure file {path} not found"
    kind = detect_format(path) if fmt == "auto" else fmt
    try:
        if kind == "cif":
            # cif2cell is optional (jarvis prints and falls back without it); keep the cell as written so
            # that per-cell (extensive) targets stay consistent with the structure
            return Atoms.from_cif(filename=str(path), use_cif2cell=False, get_primitive_atoms=False), ""
        if kind == "xyz":
            return Atoms.from_xyz(filename=str(path)), ""
        return atoms_from_poscar(path.read_text()), ""
    except Exception as exc:
        return None, f"{path.name} ({kind}): {type(exc).__name__}: {exc}"
