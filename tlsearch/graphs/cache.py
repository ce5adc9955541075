"""Content-addressed on-disk graph cache.

Every structure has a key: SHA-256 of its content (lattice, wrapped fractional coordinates, species)
and of the graph parameters, builder and version. A request for a list of structures is stored as one
:class:`GraphPack` named by the hash of its keys, so loading a whole dataset is one file read. Building a
new pack first reuses any graph already present in other packs of the same parameters (a grown or
re-ordered dataset rebuilds only what is new), builds the rest in parallel across cores, and writes the
pack atomically under a file lock (concurrent requesters wait and reuse). A pack that fails its checksum
is rebuilt.

Where packs live: the graph store (``store``, else ``$TLSEARCH_GRAPH_STORE``, which a study sets on every
worker from ``cluster.graph_store``) or ``<cache>/graphs``. A directory may be on a filesystem every node
mounts. An object-store URI (``s3://bucket/graphs``) is a shared tier: each node keeps a mirror, asks the
store before it builds, and coordinates through claims with heartbeats (``tlsearch/_remote_tier.py``), so a
pack is built once for all nodes and a node that dies while it builds is taken over once its lease runs out.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
from filelock import FileLock

from tlsearch import remote
from tlsearch._io import read_header, stable_hash
from tlsearch.data._structures import atoms_from_arrays, structure_digest
from tlsearch.errors import CorruptEntryError
from tlsearch.graphs._build import GraphBuildError, build_arrays
from tlsearch.graphs._pack import GraphPack
from tlsearch.graphs._params import GraphParams
from tlsearch.paths import GRAPH_STORE_ENV as STORE_ENV, cache_root

Progress = Callable[[int, int], None]
PARALLEL_MIN = 5000  # below this, spawning workers (each imports torch + alignn, ~3 s) costs more than it saves
log = logging.getLogger(__name__)


@dataclass
class GraphSet:
    """Graphs for a requested list of structures: ``row[i]`` is structure i's row in ``pack`` or -1
    when it failed, with ``failures[i] = (reason, detail)``."""

    pack: GraphPack
    row: np.ndarray
    failures: dict[int, tuple[str, str]] = field(default_factory=dict)
    path: Path | None = None
    hit: bool = False


def _worker_init() -> None:
    import torch

    torch.set_num_threads(1)  # one thread per worker process; never changed in the caller's process


def _build_chunk(params: GraphParams, items: list[tuple[Any, Any, list[str]]]) -> list[Any]:
    out: list[Any] = []
    for lattice, frac, elements in items:
        try:
            out.append(build_arrays(atoms_from_arrays(lattice, frac, elements), params))
        except GraphBuildError as exc:
            out.append((exc.reason, exc.detail))
    return out


class GraphCache:
    def __init__(self, params: GraphParams | None = None, root: str | Path | None = None, workers: int | None = None,
                 parallel_min: int = PARALLEL_MIN, store: str | Path | None = None) -> None:
        self.params = params or GraphParams()
        self._phash = stable_hash(self.params.key_material())
        store = store or os.environ.get(STORE_ENV) or None
        self.shared = None
        if remote.is_remote(store):
            from tlsearch._remote_tier import RemoteTier

            self.shared = RemoteTier(remote.join(str(store), self._phash[:16]), ".tlg")
            base = remote.mirror(str(store))
        else:
            base = Path(store).expanduser() if store else cache_root(root) / "graphs"
        self.dir = base / self._phash[:16]
        self.workers = workers if workers is not None else (os.cpu_count() or 1)
        self.parallel_min = parallel_min

    def key(self, atoms: Any) -> str:
        return hashlib.sha256(structure_digest(atoms) + self._phash.encode()).hexdigest()[:32]

    def pack_path(self, keys: Sequence[str]) -> Path:
        return self.dir / f"{hashlib.sha256(''.join(keys).encode()).hexdigest()[:32]}.tlg"

    def get(self, structures: Sequence[Any], progress: Progress | None = None) -> GraphSet:
        keys = [self.key(a) for a in structures]
        path = self.pack_path(keys)
        found = self._try_load(path, keys) or self._from_store(path, keys)
        if found is not None:
            return found
        self.dir.mkdir(parents=True, exist_ok=True)
        with FileLock(str(path) + ".lock"):  # one process per node builds or fetches it
            found = self._try_load(path, keys) or self._from_store(path, keys)  # made while we waited
            if found is not None:
                return found
            if self.shared is None:
                return self._build(structures, keys, path, progress)
            return self._build_shared(structures, keys, path, progress)

    def _from_store(self, path: Path, keys: list[str]) -> GraphSet | None:
        """The pack from the object store, verified like a local one (a damaged one is removed there)."""
        if self.shared is None or not self.shared.fetch(path.stem, path):
            return None
        found = self._try_load(path, keys)
        if found is None:
            self.shared.discard(path.stem)
        return found

    def _build_shared(self, structures: Sequence[Any], keys: list[str], path: Path,
                      progress: Progress | None) -> GraphSet:
        """Wait while another node builds the pack; else claim it, build, and publish it to the store."""
        def note() -> None:
            log.warning("graph pack %s: waiting for %s", path.stem[:12], self.shared.holder_of(path.stem))

        while self.shared.wait_or_claim(path.stem, path, note=note):
            found = self._try_load(path, keys)
            if found is not None:
                return found
            self.shared.discard(path.stem)  # damaged on the store: build it here
        with self.shared.holding(path.stem):
            built = self._build(structures, keys, path, progress)
            self.shared.publish(path.stem, path)
        return built

    # -------------------------------------------------------------------------------------------
    def _try_load(self, path: Path, keys: list[str]) -> GraphSet | None:
        if not path.exists():
            return None
        try:
            pack, header = GraphPack.load(path)
        except (CorruptEntryError, OSError, ValueError, KeyError):
            path.unlink(missing_ok=True)  # damaged: rebuild
            return None
        failures = {int(i): (r, d) for i, r, d in header.get("failed", [])}
        row = np.full(len(keys), -1, dtype=np.int64)
        ok = [i for i in range(len(keys)) if i not in failures]
        if len(ok) != len(pack) or [keys[i] for i in ok] != pack.keys:
            return None
        row[ok] = np.arange(len(ok))
        return GraphSet(pack, row, failures, path, hit=True)

    def _reusable(self, wanted: set[str], exclude: Path) -> dict[str, dict[str, np.ndarray]]:
        """Graphs for ``wanted`` keys already stored in other packs with the same parameters."""
        found: dict[str, dict[str, np.ndarray]] = {}
        for other in sorted(self.dir.glob("*.tlg")):
            if other == exclude or len(found) == len(wanted):
                continue
            try:
                header, _ = read_header(other)
                if not wanted.intersection(header.get("keys", [])):
                    continue
                pack, _ = GraphPack.load(other)
            except (CorruptEntryError, OSError, ValueError, KeyError):
                continue
            for i, k in enumerate(pack.keys):
                if k in wanted and k not in found:
                    found[k] = {n: v.copy() for n, v in pack.graph(i).items()}
        return found

    def _build(self, structures: Sequence[Any], keys: list[str], path: Path, progress: Progress | None) -> GraphSet:
        results: list[Any] = [None] * len(keys)
        reuse = self._reusable(set(keys), path)
        todo = [i for i, k in enumerate(keys) if k not in reuse]
        for i, k in enumerate(keys):
            if k in reuse:
                results[i] = reuse[k]
        done = len(keys) - len(todo)
        if progress:
            progress(done, len(keys))
        items = [(np.asarray(structures[i].lattice_mat), np.asarray(structures[i].frac_coords),
                  list(structures[i].elements)) for i in todo]
        chunk = 256
        chunks = [items[j : j + chunk] for j in range(0, len(items), chunk)]
        if self.workers > 1 and len(todo) >= self.parallel_min:
            with ProcessPoolExecutor(self.workers, mp_context=get_context("spawn"), initializer=_worker_init) as ex:
                outs = ex.map(_build_chunk, [self.params] * len(chunks), chunks)
                for j, out in enumerate(outs):
                    for t, res in zip(todo[j * chunk : j * chunk + len(out)], out):
                        results[t] = res
                    done += len(out)
                    if progress:
                        progress(done, len(keys))
        else:
            for j, c in enumerate(chunks):
                for t, res in zip(todo[j * chunk : j * chunk + len(c)], _build_chunk(self.params, c)):
                    results[t] = res
                done += len(c)
                if progress:
                    progress(done, len(keys))
        failures = {i: r for i, r in enumerate(results) if isinstance(r, tuple)}
        ok = [i for i in range(len(keys)) if i not in failures]
        pack = GraphPack.from_graphs([keys[i] for i in ok], [results[i] for i in ok])
        pack.save(path, {"params": self.params.key_material(),
                         "failed": [[i, r, d] for i, (r, d) in sorted(failures.items())]})
        row = np.full(len(keys), -1, dtype=np.int64)
        row[ok] = np.arange(len(ok))
        return GraphSet(pack, row, failures, path, hit=False)
