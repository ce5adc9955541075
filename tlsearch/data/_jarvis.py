"""The ``jarvis`` source: JARVIS figshare datasets (``jarvis:dft_3d``, ``jarvis:dft_2d?file=/data/dft_2d.json``).

Without ``file`` the dataset is fetched with :func:`jarvis.db.figshare.data` into the source cache
directory (a ``<name>.json.zip`` holding one ``<name>.json`` member). On clusters without internet,
pass the figshare file (``.json.zip``) or its unzipped ``.json`` (a list of dicts) as ``?file=``.
Every entry is a dict with an id (``jid`` or ``id``), an ``atoms`` dict for
:meth:`jarvis.core.atoms.Atoms.from_dict`, and property values; JARVIS writes ``"na"`` for a
missing value. Every numeric value (or numeric string) becomes a target; the registry validates.
"""

from __future__ import annotations

import contextlib
import json
import math
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jarvis
from jarvis.core.atoms import Atoms

from tlsearch._io import file_sha256
from tlsearch.data._base import Candidate, DatasetInfo, Source
from tlsearch.data._ref import DatasetRef
from tlsearch.errors import DataFileError, SourceUnavailableError

CITATION = (
    "K. Choudhary et al., The joint automated repository for various integrated simulations (JARVIS) "
    "for data-driven materials design, npj Comput. Mater. 6, 173 (2020), doi:10.1038/s41524-020-00440-1"
)

_DFT_MAIN = (
    "formation_energy_peratom", "optb88vdw_bandgap", "mbj_bandgap", "optb88vdw_total_energy", "ehull",
    "bulk_modulus_kv", "shear_modulus_gv", "epsx", "epsy", "epsz", "mepsx", "mepsy", "mepsz",
    "dfpt_piezo_max_dielectric", "dfpt_piezo_max_dij", "dfpt_piezo_max_eij", "exfoliation_energy",
    "spillage", "slme", "magmom_oszicar", "magmom_outcar", "max_efg", "avg_elec_mass", "avg_hole_mass",
    "n-Seebeck", "p-Seebeck", "n-powerfact", "p-powerfact", "ncond", "pcond", "nkappa", "pkappa",
    "max_ir_mode", "min_ir_mode",
)
_DFT_2D = (
    "optb88vdw_bandgap", "formation_energy_peratom", "exfoliation_energy", "mbj_bandgap",
    "optb88vdw_total_energy", "magmom_oszicar", "magmom_outcar", "epsx", "epsy", "epsz",
)
_MEGNET = ("e_form", "gap pbe", "e_hull", "bulk modulus", "shear modulus", "elastic anisotropy", "mu_b")
_MP = ("formation_energy_per_atom", "band_gap", "e_above_hull", "energy_per_atom", "total_magnetization")

#: name -> (properties, default id key, description)
_DATASETS: dict[str, tuple[tuple[str, ...], str, str]] = {
    "dft_3d": (_DFT_MAIN, "jid", "JARVIS-DFT 3D materials, latest release (~76k+), OptB88vdW/TBmBJ"),
    "dft_3d_2022": (_DFT_MAIN, "jid", "JARVIS-DFT 3D materials, 12-12-2022 release (~76k)"),
    "dft_3d_2021": (_DFT_MAIN, "jid", "JARVIS-DFT 3D materials, 8-18-2021 release (~55k)"),
    "dft_2d": (_DFT_2D, "jid", "JARVIS-DFT 2D (monolayer) materials, 12-12-2022 release (~1.1k)"),
    "dft_2d_2021": (_DFT_2D, "jid", "JARVIS-DFT 2D (monolayer) materials, 3-12-2021 release (~1.1k)"),
    "megnet": (_MEGNET, "id", "Materials Project 2018 snapshot used by MEGNet (~69k), JARVIS format"),
    "megnet2": (("formation_energy_per_atom",), "id", "Materials Project 2019-04-01 snapshot (~133k)"),
    "mp_3d_2020": (_MP, "id", "Materials Project 2020 snapshot (~127k), JARVIS format"),
}
#: numeric identifiers that are not material properties
_NOT_TARGETS = frozenset({"jid", "id", "icsd", "icsd_id", "spg_number", "spg"})


def _figshare_info(name: str) -> tuple[str, str, str]:
    """(json member name, download url, reference) of a dataset, from jarvis-tools' own table."""
    from jarvis.db.figshare import get_db_info

    url, js_tag, _msg, reference = get_db_info()[name][:4]
    return js_tag, url, reference


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return None  # "na", "", formulas, ...
    return None


def read_entries(path: Path, member: str = "") -> list[Any]:
    """Load a JARVIS list-of-dicts from a ``.json`` file or a figshare ``.json.zip`` archive."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf:
                names = [n for n in zf.namelist() if not n.endswith("/")]
                jsons = [n for n in names if n.endswith(".json")]
                pick = member if member in names else (jsons[0] if len(jsons) == 1 else "")
                if not pick:
                    raise DataFileError(
                        f"{path}: zip archive must hold exactly one .json file (or {member!r}); found {names}"
                    )
                data = json.loads(zf.read(pick))
        else:
            with open(path, "rb") as fh:
                data = json.load(fh)
    except DataFileError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise DataFileError(f"{path}: cannot read JARVIS dataset file ({type(exc).__name__}: {exc})") from None
    if not isinstance(data, list):
        raise DataFileError(
            f"{path}: a JARVIS dataset file must hold a JSON list of entries (dicts), found {type(data).__name__}"
        )
    return data


class Jarvis(Source):
    name = "jarvis"
    description = "JARVIS-Tools figshare datasets (JARVIS-DFT 3D/2D, MEGNet and Materials Project snapshots)"
    params = {
        "file": "local path of the dataset file (.json list of dicts or figshare .json.zip), for offline use",
        "id_key": "entry key holding the record id (default: jid for dft_*, id for megnet*/mp_3d_2020)",
    }

    def datasets(self) -> dict[str, DatasetInfo]:
        return {n: DatasetInfo(n, props, desc) for n, (props, _id, desc) in _DATASETS.items()}

    def _file(self, ref: DatasetRef) -> Path | None:
        raw = ref.param_dict.get("file")
        return Path(raw).expanduser().resolve() if raw else None

    def check_ref(self, ref: DatasetRef) -> None:
        super().check_ref(ref)
        path = self._file(ref)
        if "file" in ref.param_dict and path is None:
            raise DataFileError(f"{ref}: parameter 'file' is empty; give the path of the dataset .json(.zip)")
        if path is not None and not path.is_file():
            raise DataFileError(
                f"{ref}: dataset file {path} does not exist or is not a file "
                f"(expected the JSON list that jarvis.db.figshare.data({ref.name!r}) returns, as .json or .json.zip)"
            )

    def fingerprint(self, ref: DatasetRef) -> str:
        path = self._file(ref)
        if path is not None:
            try:
                st = path.stat()
            except OSError as exc:
                raise DataFileError(f"{ref}: cannot stat dataset file {path} ({exc})") from None
            return f"file={path}|size={st.st_size}|mtime_ns={st.st_mtime_ns}"
        try:
            js_tag, url, _ref = _figshare_info(ref.name)
            return f"figshare={js_tag}|{url}"
        except Exception:
            return f"jarvis-tools={jarvis.__version__}"

    def _load(self, ref: DatasetRef, cache_dir: Path) -> tuple[list[Any], Path]:
        path = self._file(ref)
        if path is not None:
            member = ""
            with contextlib.suppress(Exception):
                member = _figshare_info(ref.name)[0]
            return read_entries(path, member), path
        return self._download(ref, cache_dir)

    def _download(self, ref: DatasetRef, cache_dir: Path) -> tuple[list[Any], Path]:
        try:
            from jarvis.db import figshare

            js_tag, url, _reference = _figshare_info(ref.name)
        except Exception as exc:  # e.g. a missing optional dependency of jarvis.db.figshare
            raise SourceUnavailableError(
                f"{ref}: cannot use jarvis.db.figshare ({type(exc).__name__}: {exc}); pass the dataset file "
                f"with '?file=/path/to/{ref.name}.json(.zip)'"
            ) from None
        zpath = Path(cache_dir) / f"{js_tag}.zip"
        _drop_partial(zpath)  # jarvis-tools trusts any file at this path, even a half-written one
        try:
            with contextlib.redirect_stdout(sys.stderr):  # jarvis prints progress to stdout
                data = figshare.data(ref.name, store_dir=str(cache_dir))
        except Exception as exc:
            _drop_partial(zpath)
            raise SourceUnavailableError(
                f"{ref}: downloading the JARVIS dataset {ref.name!r} from figshare ({url}) failed "
                f"({type(exc).__name__}: {exc}). Fix: download the file on a machine with internet and pass "
                f"it explicitly, e.g. 'jarvis:{ref.name}?file=/path/to/{js_tag}.zip' (a figshare .json.zip or "
                f"the unzipped .json), or run tlsearch once on a machine with internet and copy its cache "
                f"directory {cache_dir} (it then holds {js_tag}.zip) to the same place here"
            ) from None
        if not isinstance(data, list):
            raise DataFileError(f"{zpath}: expected a JSON list of entries, found {type(data).__name__}")
        return data, zpath

    def candidates(self, ref: DatasetRef, cache_dir: Path) -> Iterator[Candidate]:
        entries, path = self._load(ref, cache_dir)
        id_key = ref.param_dict.get("id_key") or _DATASETS[ref.name][1]
        first = next((e for e in entries if isinstance(e, dict)), None)
        if first is not None and id_key not in first:
            keys = sorted(k for k in first if not isinstance(first[k], (dict, list)))
            raise DataFileError(
                f"{path}: entries have no id key {id_key!r}; pass '?id_key=<key>' with one of {keys}"
            )
        for i, entry in enumerate(entries):
            if not isinstance(entry, dict):
                yield Candidate(f"<entry {i}>", None, {}, f"entry {i} is a {type(entry).__name__}, not a dict")
                continue
            targets: dict[str, float] = {}
            for key, value in entry.items():
                if key == id_key or key in _NOT_TARGETS:
                    continue
                num = _number(value)
                if num is not None and not math.isnan(num):
                    targets[key] = num
            if entry.get(id_key) in (None, ""):
                yield Candidate(f"<entry {i}>", None, targets, f"entry {i} has no {id_key!r}")
                continue
            atoms, error = _atoms(entry)
            yield Candidate(str(entry[id_key]), atoms, targets, error)

    def provenance(self, ref: DatasetRef, cache_dir: Path) -> dict[str, Any]:
        path = self._file(ref)
        out: dict[str, Any] = {"jarvis_tools_version": jarvis.__version__, "citation": CITATION}
        with contextlib.suppress(Exception):
            js_tag, url, reference = _figshare_info(ref.name)
            out.update(figshare_file=js_tag, figshare_url=url, dataset_reference=reference)
            if path is None:
                path = Path(cache_dir) / f"{js_tag}.zip"
        if path is not None and path.is_file():
            out.update(source_file=str(path), source_sha256=file_sha256(path))
        return out


def _atoms(entry: dict[str, Any]) -> tuple[Atoms | None, str]:
    """(atoms, "") or (None, error text); a missing ``props`` list is filled in, as Atoms() itself would."""
    raw = entry.get("atoms")
    if not isinstance(raw, dict):
        return None, f"'atoms' is missing or not a dict ({type(raw).__name__})"
    try:
        d = dict(raw)
        d.setdefault("props", None)
        d.setdefault("cartesian", False)
        return Atoms.from_dict(d), ""
    except Exception as exc:
        return None, f"Atoms.from_dict failed: {type(exc).__name__}: {exc}"


def _drop_partial(zpath: Path) -> None:
    if zpath.exists() and not zipfile.is_zipfile(zpath):
        with contextlib.suppress(OSError):
            zpath.unlink()
