"""GraphPack: many structures' graphs in a few flat arrays, stored as one checksummed file.

Loading a pack is one read, one CRC and zero-copy numpy views, which is what makes a cache hit far
cheaper than building. :meth:`GraphPack.batch` assembles a training batch (alignn ``TorchGraph`` pair)
with vectorised index arithmetic instead of per-graph Python loops.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from tlsearch._io import read_checksummed, write_checksummed
from tlsearch.errors import CorruptEntryError
from tlsearch.graphs._build import ARRAYS

FORMAT = "tlsearch-graphpack-v1"
_COUNTS = {"z": "n_nodes", "src": "n_edges", "dst": "n_edges", "r": "n_edges",
           "lg_src": "n_triplets", "lg_dst": "n_triplets", "h": "n_triplets"}


def _offsets(counts: np.ndarray) -> np.ndarray:
    off = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=off[1:])
    return off


def _ranges(starts: np.ndarray, lens: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(s, s + l)`` for each (s, l), vectorised."""
    total = int(lens.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    first = np.zeros(len(lens), dtype=np.int64)
    np.cumsum(lens[:-1], out=first[1:])
    return np.repeat(starts - first, lens) + np.arange(total, dtype=np.int64)


@dataclass
class GraphPack:
    keys: list[str]
    arrays: dict[str, np.ndarray]
    counts: dict[str, np.ndarray]  # n_nodes, n_edges, n_triplets per graph

    def __post_init__(self) -> None:
        self.off = {k: _offsets(v) for k, v in self.counts.items()}

    def __len__(self) -> int:
        return len(self.keys)

    @classmethod
    def from_graphs(cls, keys: Sequence[str], graphs: Sequence[dict[str, np.ndarray]]) -> "GraphPack":
        counts = {
            "n_nodes": np.array([len(g["z"]) for g in graphs], dtype=np.int64),
            "n_edges": np.array([len(g["src"]) for g in graphs], dtype=np.int64),
            "n_triplets": np.array([len(g["lg_src"]) for g in graphs], dtype=np.int64),
        }
        arrays = {}
        for name, dt in ARRAYS.items():
            parts = [g[name] for g in graphs]
            shape = (0, 3) if name == "r" else (0,)
            arrays[name] = np.concatenate(parts).astype(dt, copy=False) if parts else np.zeros(shape, dt)
        # local indices fit 16 bits for any ordinary crystal: a smaller file is a faster cache hit
        for name, bound in (("src", "n_nodes"), ("dst", "n_nodes"), ("lg_src", "n_edges"), ("lg_dst", "n_edges")):
            if len(counts[bound]) and counts[bound].max() <= np.iinfo(np.uint16).max:
                arrays[name] = arrays[name].astype(np.uint16)
        return cls(list(keys), arrays, counts)

    def graph(self, i: int) -> dict[str, np.ndarray]:
        return {name: self.arrays[name][self.off[c][i] : self.off[c][i + 1]] for name, c in _COUNTS.items()}

    def subset(self, rows: Sequence[int]) -> "GraphPack":
        return GraphPack.from_graphs([self.keys[i] for i in rows], [self.graph(i) for i in rows])

    # ---- storage -------------------------------------------------------------------------------
    def save(self, path: Path, extra: dict[str, Any] | None = None) -> None:
        blobs, layout, pos = [], {}, 0
        for name, arr in [*self.counts.items(), *self.arrays.items()]:
            b = np.ascontiguousarray(arr).tobytes()
            layout[name] = {"dtype": arr.dtype.str, "shape": list(arr.shape), "offset": pos}
            blobs.append(b)
            pos += len(b)
        meta = {"format": FORMAT, "keys": self.keys, "layout": layout, **(extra or {})}
        write_checksummed(path, b"".join(blobs), meta)

    @classmethod
    def load(cls, path: Path) -> tuple["GraphPack", dict[str, Any]]:
        header, payload = read_checksummed(path)
        if header.get("format") != FORMAT:
            raise CorruptEntryError(f"{path}: format {header.get('format')!r}, expected {FORMAT!r}")
        views = {}
        for name, spec in header["layout"].items():
            dt = np.dtype(spec["dtype"])
            count = int(np.prod(spec["shape"]))
            views[name] = np.frombuffer(payload, dtype=dt, count=count, offset=spec["offset"]).reshape(spec["shape"])
        counts = {k: views.pop(k) for k in ("n_nodes", "n_edges", "n_triplets")}
        return cls(header["keys"], views, counts), header

    # ---- batching ------------------------------------------------------------------------------
    def batch(self, rows: Sequence[int] | np.ndarray, atom_features: str = "cgcnn") -> tuple[Any, Any]:
        """An alignn ``(TorchGraph, TorchGraph)`` batch of the given rows (graph, line graph)."""
        import torch
        from alignn.torch_graph_builder import TorchGraph

        rows = np.asarray(rows, dtype=np.int64)
        nn, ne, nt = (self.counts[c][rows] for c in ("n_nodes", "n_edges", "n_triplets"))
        node_idx = _ranges(self.off["n_nodes"][rows], nn)
        edge_idx = _ranges(self.off["n_edges"][rows], ne)
        trip_idx = _ranges(self.off["n_triplets"][rows], nt)
        node_shift = np.repeat(_offsets(nn)[:-1], ne)
        edge_shift = np.repeat(_offsets(ne)[:-1], nt)
        a = self.arrays
        z = torch.from_numpy(a["z"][node_idx].astype(np.int64))
        r = torch.from_numpy(a["r"][edge_idx])
        g = TorchGraph(
            num_nodes=int(nn.sum()),
            src=torch.from_numpy(a["src"][edge_idx] + node_shift),
            dst=torch.from_numpy(a["dst"][edge_idx] + node_shift),
            ndata={"atom_features": feature_table(atom_features)[z], "Z": z},
            edata={"r": r},
            batch_num_nodes=torch.from_numpy(nn), batch_num_edges=torch.from_numpy(ne),
        )
        lg = TorchGraph(
            num_nodes=int(ne.sum()),
            src=torch.from_numpy(a["lg_src"][trip_idx] + edge_shift),
            dst=torch.from_numpy(a["lg_dst"][trip_idx] + edge_shift),
            ndata={"r": r},
            edata={"h": torch.from_numpy(a["h"][trip_idx])},
            batch_num_nodes=torch.from_numpy(ne), batch_num_edges=torch.from_numpy(nt),
        )
        return g, lg


@lru_cache(maxsize=8)
def feature_table(atom_features: str = "cgcnn") -> Any:
    """(120, F) float32 tensor of alignn's per-element node features, indexed by atomic number."""
    import torch
    from jarvis.core.specie import get_node_attributes
    from ase.data import chemical_symbols

    rows: dict[int, np.ndarray] = {}
    for z in range(1, min(len(chemical_symbols), 120)):
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # jarvis prints a warning per unknown element
                f = get_node_attributes(chemical_symbols[z], atom_features=atom_features)
        except Exception:
            continue
        if f is not None:
            rows[z] = np.asarray(f, dtype=np.float32).ravel()
    width = max(len(v) for v in rows.values())
    table = np.zeros((120, width), dtype=np.float32)
    for z, v in rows.items():
        if len(v) == width:
            table[z] = v
    return torch.from_numpy(table)
