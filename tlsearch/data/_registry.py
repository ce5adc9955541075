"""The source registry and :func:`load_dataset`, the one place where entries are validated and cached."""

from __future__ import annotations

import importlib
import math
import re
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from tlsearch import __version__
from tlsearch._io import stable_hash
from tlsearch.data._base import Candidate, Dataset, Record, Skipped, Source
from tlsearch.data._ref import DatasetRef
from tlsearch.data._structures import structure_problem
from tlsearch.data._table import read_table, write_table
from tlsearch.errors import CorruptEntryError, EmptyDatasetError, UnknownChoiceError
from tlsearch.paths import cache_root

_SOURCE_CLASSES = {
    "matminer2018": "tlsearch.data._matminer:Matminer2018",
    "jarvis": "tlsearch.data._jarvis:Jarvis",
    "folder": "tlsearch.data._folder:Folder",
    "emt": "tlsearch.data._emt:EMTAlloys",
}
_INSTANCES: dict[str, Source] = {}


def source_names() -> list[str]:
    return list(_SOURCE_CLASSES)


def get_source(name: str) -> Source:
    if name not in _SOURCE_CLASSES:
        raise UnknownChoiceError("source", name, _SOURCE_CLASSES)
    if name not in _INSTANCES:
        module, cls = _SOURCE_CLASSES[name].split(":")
        _INSTANCES[name] = getattr(importlib.import_module(module), cls)()
    return _INSTANCES[name]


def as_ref(ref: str | DatasetRef) -> DatasetRef:
    return ref if isinstance(ref, DatasetRef) else DatasetRef.parse(ref)


def _finite_targets(raw: dict) -> dict[str, float]:
    out = {}
    for k, v in raw.items():
        try:
            f = float(v)
        except (TypeError, ValueError):
            continue
        if math.isfinite(f):
            out[k] = f
    return out


def _values(targets: dict[str, float]) -> str:
    return "(" + ", ".join(f"{k}={v:g}" for k, v in targets.items()) + ")" if targets else "(no finite value)"


def validate(candidates: Iterable[Candidate], declared: Iterable[str] = ()) -> tuple[list[Record], list[Skipped], tuple[str, ...]]:
    """Turn candidates into records; every rejected entry is kept as a :class:`Skipped` with its reason."""
    records: list[Record] = []
    skipped: list[Skipped] = []
    seen: dict[str, dict[str, float]] = {}  # id -> its first entry's finite targets
    props: dict[str, None] = dict.fromkeys(declared)
    for c in candidates:
        if c.id in seen:
            first, this = seen[c.id], _finite_targets(dict(c.targets))
            if first != this:  # the same structure with two values: which one is right is the user's call
                skipped.append(Skipped(c.id, "duplicate id, values differ",
                                       f"kept the first entry {_values(first)}, dropped this one {_values(this)}"))
            else:
                skipped.append(Skipped(c.id, "duplicate id", "a record with this id came earlier"))
            continue
        seen[c.id] = _finite_targets(dict(c.targets))
        for k in c.targets:
            props.setdefault(k)
        if c.atoms is None:
            skipped.append(Skipped(c.id, c.reason or "unparsable structure", c.error))
            continue
        problem = structure_problem(c.atoms)
        if problem:
            skipped.append(Skipped(c.id, "bad structure", problem))
            continue
        targets = _finite_targets(dict(c.targets))
        if not targets:
            skipped.append(Skipped(c.id, "no finite target", "every property is missing or NaN"))
            continue
        records.append(Record(c.id, c.atoms, targets))
    return records, skipped, tuple(props)


def _cache_path(src: Source, ref: DatasetRef, root: Path) -> Path:
    key = stable_hash([str(ref), src.fingerprint(ref), "v2"], 16)  # v2: missing files, conflicting duplicates
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", ref.name)[-60:]
    return root / "datasets" / src.name / f"{safe}-{key}.parquet"


def load_dataset(
    ref: str | DatasetRef,
    cache: str | Path | None = None,
    refresh: bool = False,
    progress: Callable[[str], None] | None = None,
) -> Dataset:
    """Load a dataset by reference, parsing the source once and reusing the checksummed cache after that."""
    ref = as_ref(ref)
    src = get_source(ref.source)
    src.check_ref(ref)
    root = cache_root(cache)
    path = _cache_path(src, ref, root)
    if path.exists() and not refresh:
        try:
            return read_table(path, ref)
        except CorruptEntryError as exc:
            if progress:
                progress(f"rebuilding damaged dataset cache: {exc}")
    src_dir = root / "sources" / src.name
    src_dir.mkdir(parents=True, exist_ok=True)
    declared = src.datasets()[ref.name].properties if src.fixed_datasets else ()
    t0 = time.perf_counter()
    records, skipped, props = validate(src.candidates(ref, src_dir), declared)
    if not records:
        reasons = {s.reason for s in skipped}
        shown = "; ".join(f"{s.id}: {s.reason}" + (f" ({s.detail[:160]})" if s.detail else "")
                          for s in skipped[:3])
        more = f"; and {len(skipped) - 3} more" if len(skipped) > 3 else ""
        raise EmptyDatasetError(
            f"{ref}: no usable records ({len(skipped)} entries skipped: {sorted(reasons) or 'none found'})"
            + (f": {shown}{more}" if shown else "")
        )
    provenance = {
        "source": src.name,
        "dataset": ref.name,
        "ref": str(ref),
        "tlsearch_version": __version__,
        "parse_seconds": round(time.perf_counter() - t0, 3),
        **src.provenance(ref, src_dir),
    }
    ds = Dataset(ref, records, props, skipped, provenance)
    write_table(ds, path)
    return ds
