"""``matminer2018``: four real DFT datasets shipped inside the ``matminer==0.4.1`` source distribution.

dielectric_constant (Petousis et al. 2017) and piezoelectric_tensor (de Jong et al. 2015) are the very
fine-tuning sets of Devi, Butler & Gautam (2024); elastic_tensor (de Jong et al. 2015) and flla_2015
(Faber et al. 2015) serve as pre-training sources. The sdist is fetched with pip, so a user's configured
index or mirror is respected; ``?sdist=/path/matminer-0.4.1.tar.gz`` (or ``$TLSEARCH_MATMINER_SDIST``)
points at a local copy for offline clusters.
"""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tlsearch._io import file_sha256
from tlsearch.data._base import Candidate, DatasetInfo, Source
from tlsearch.data._ref import DatasetRef
from tlsearch.data._structures import atoms_from_pymatgen_dict, atoms_from_poscar
from tlsearch.errors import DataFileError, SourceUnavailableError

PACKAGE = "matminer==0.4.1"
SDIST_NAME = "matminer-0.4.1.tar.gz"

_DATASETS = {
    "dielectric_constant": DatasetInfo(
        "dielectric_constant",
        ("n", "poly_electronic", "poly_total", "band_gap"),
        "DFPT dielectric constants, refractive index n (Petousis et al., Sci. Data 4, 160134 (2017))",
        1056,
    ),
    "piezoelectric_tensor": DatasetInfo(
        "piezoelectric_tensor",
        ("eij_max",),
        "DFPT piezoelectric modulus eij_max, C/m^2 (de Jong et al., Sci. Data 2, 150053 (2015))",
        941,
    ),
    "elastic_tensor": DatasetInfo(
        "elastic_tensor",
        ("K_VRH", "G_VRH", "poisson_ratio", "elastic_anisotropy"),
        "DFT elastic moduli, GPa (de Jong et al., Sci. Data 2, 150009 (2015))",
        1181,
    ),
    "flla_2015": DatasetInfo(
        "flla_2015",
        ("formation_energy_per_atom", "e_above_hull"),
        "DFT formation energies, eV/atom (Faber et al., Int. J. Quantum Chem. 115, 1094 (2015))",
        3938,
    ),
}


def _fetch_sdist(cache_dir: Path) -> Path:
    target = cache_dir / SDIST_NAME
    if target.exists():
        return target
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
           "--disable-pip-version-check", "-q", "-d", str(cache_dir), PACKAGE]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as exc:
        proc = None
        err = str(exc)
    else:
        err = proc.stderr.strip().splitlines()[-1:] if proc.returncode else ""
    if proc is None or proc.returncode != 0 or not target.exists():
        raise SourceUnavailableError(
            f"could not download {PACKAGE} with pip ({err or 'no file'}); fix: run "
            f"`pip download --no-deps --no-binary :all: {PACKAGE}` where a package index is reachable and "
            f"pass the file as 'matminer2018:<dataset>?sdist=/path/{SDIST_NAME}' or set TLSEARCH_MATMINER_SDIST"
        )
    return target


def _read_csv_text(sdist: Path, dataset: str) -> str:
    member = f"matminer-0.4.1/matminer/datasets/{dataset}.csv"
    try:
        with tarfile.open(sdist, "r:gz") as tar:
            fh = tar.extractfile(member)
            if fh is None:
                raise KeyError(member)
            return fh.read().decode("utf-8")
    except (OSError, tarfile.TarError, KeyError, EOFError) as exc:
        raise DataFileError(
            f"{sdist}: cannot read {member} ({exc}); fix: delete the file so it is downloaded again, "
            f"or point ?sdist= at an intact {SDIST_NAME}"
        ) from None


def parse_rows(text: str) -> Iterator[dict[str, str]]:
    """Rows of a matminer CSV as dicts. Skips leading '# ref' lines; drops the unnamed leading index
    column that some files carry (data rows one field longer than the header)."""
    lines = text.splitlines(keepends=True)
    start = 0
    while start < len(lines) and lines[start].startswith("#"):
        start += 1
    reader = csv.reader(io.StringIO("".join(lines[start:])))
    header = next(reader)
    for row in reader:
        if len(row) == len(header) + 1:
            row = row[1:]
        yield dict(zip(header, row)) if len(row) == len(header) else {"__bad_row__": str(len(row))}


def _row_atoms(row: dict[str, str]) -> Any:
    if row.get("poscar"):
        return atoms_from_poscar(row["poscar"])
    return atoms_from_pymatgen_dict(row["structure"])


class Matminer2018(Source):
    name = "matminer2018"
    description = "Real DFT datasets from the matminer 0.4.1 sdist (fetched with pip, cached)"
    params = {"sdist": f"local path of {SDIST_NAME} (offline use); default: download with pip"}

    def datasets(self) -> dict[str, DatasetInfo]:
        return dict(_DATASETS)

    def _sdist(self, ref: DatasetRef, cache_dir: Path) -> Path:
        local = ref.param_dict.get("sdist") or os.environ.get("TLSEARCH_MATMINER_SDIST")
        if local:
            path = Path(local).expanduser()
            if not path.is_file():
                raise DataFileError(f"{path}: no such file (the matminer 0.4.1 sdist given by ?sdist= or "
                                    "TLSEARCH_MATMINER_SDIST)")
            return path
        return _fetch_sdist(cache_dir)

    def candidates(self, ref: DatasetRef, cache_dir: Path) -> Iterator[Candidate]:
        props = _DATASETS[ref.name].properties
        for i, row in enumerate(parse_rows(_read_csv_text(self._sdist(ref, cache_dir), ref.name))):
            rid = row.get("material_id") or f"{ref.name}-row{i}"
            if "__bad_row__" in row:
                yield Candidate(rid, None, {}, f"row {i} has {row['__bad_row__']} fields")
                continue
            targets = {p: row.get(p) for p in props}
            try:
                atoms = _row_atoms(row)
            except Exception as exc:  # any parse failure of one entry is recorded, never fatal
                yield Candidate(rid, None, targets, f"{type(exc).__name__}: {exc}"[:200])
                continue
            yield Candidate(rid, atoms, targets)

    def fingerprint(self, ref: DatasetRef) -> str:
        return "matminer-0.4.1-v1"

    def provenance(self, ref: DatasetRef, cache_dir: Path) -> dict[str, Any]:
        sdist = self._sdist(ref, cache_dir)
        return {"package": PACKAGE, "file": f"matminer/datasets/{ref.name}.csv", "sdist_sha256": file_sha256(sdist),
                "reference": _DATASETS[ref.name].description}
