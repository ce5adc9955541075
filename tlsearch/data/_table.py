"""The parsed-dataset cache: records as one Parquet file plus a JSON sidecar holding its SHA-256.

Parsing a source (CSV with embedded POSCARs, JSON, folders of files) happens once; later loads read
the Parquet file (a few ms per thousand structures) after checking the sidecar's checksum.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import polars as pl

from tlsearch._io import file_sha256, write_atomic
from tlsearch.data._base import Dataset, Record, Skipped
from tlsearch.data._ref import DatasetRef
from tlsearch.data._structures import atoms_from_arrays
from tlsearch.errors import CorruptEntryError

FORMAT = "tlsearch-dataset-v1"


def _prop_column(prop: str) -> str:
    return f"target::{prop}"


def write_table(ds: Dataset, path: Path) -> None:
    cols: dict[str, object] = {
        "id": [r.id for r in ds.records],
        "lattice": [np.asarray(r.atoms.lattice_mat, dtype=float).ravel().tolist() for r in ds.records],
        "frac": [np.asarray(r.atoms.frac_coords, dtype=float).ravel().tolist() for r in ds.records],
        "elements": [list(r.atoms.elements) for r in ds.records],
    }
    for p in ds.properties:
        cols[_prop_column(p)] = [r.targets.get(p) for r in ds.records]
    schema = {"id": pl.String, "lattice": pl.List(pl.Float64), "frac": pl.List(pl.Float64),
              "elements": pl.List(pl.String)}
    schema.update({_prop_column(p): pl.Float64 for p in ds.properties})
    buf = io.BytesIO()
    pl.DataFrame(cols, schema=schema).write_parquet(buf)
    write_atomic(path, buf.getvalue())
    meta = {
        "format": FORMAT,
        "ref": str(ds.ref),
        "properties": list(ds.properties),
        "provenance": ds.provenance,
        "skipped": [[s.id, s.reason, s.detail] for s in ds.skipped],
        "sha256": file_sha256(path),
    }
    write_atomic(path.with_suffix(".json"), json.dumps(meta, indent=1).encode())


def read_table(path: Path, ref: DatasetRef) -> Dataset:
    meta_path = path.with_suffix(".json")
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError) as exc:
        raise CorruptEntryError(f"{meta_path}: unreadable dataset metadata ({exc})") from None
    if meta.get("format") != FORMAT or not path.exists() or file_sha256(path) != meta.get("sha256"):
        raise CorruptEntryError(f"{path}: checksum or format mismatch")
    df = pl.read_parquet(path)
    props = tuple(meta["properties"])
    targets = [df[_prop_column(p)].to_list() for p in props]
    records = []
    for i, (rid, lat, frac, els) in enumerate(
        zip(df["id"].to_list(), df["lattice"].to_list(), df["frac"].to_list(), df["elements"].to_list())
    ):
        t = {p: v[i] for p, v in zip(props, targets) if v[i] is not None}
        records.append(Record(rid, atoms_from_arrays(lat, frac, els), t))
    skipped = [Skipped(*s) for s in meta["skipped"]]
    return Dataset(ref, records, props, skipped, meta["provenance"])
