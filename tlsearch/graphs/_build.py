"""Build one structure's ALIGNN graph and line graph as compact numpy arrays.

Both builders produce the same layout, so the cache, batching and models do not care which ran:
``z`` (N,) atomic numbers; ``src``/``dst`` (E,) bonds; ``r`` (E, 3) bond vectors; ``lg_src``/``lg_dst`` (T,)
pairs of bonds sharing an atom (line-graph edges, indices into the bonds); ``h`` (T,) bond-angle cosines.
Atom features are looked up from ``z`` at batch time, so the cache does not store them per atom.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from tlsearch.graphs._params import GraphParams

ARRAYS = {"z": np.int16, "src": np.int32, "dst": np.int32, "r": np.float32,
          "lg_src": np.int32, "lg_dst": np.int32, "h": np.float32}
MIN_BOND = 0.1  # A; shorter bonds mean overlapping atoms


class GraphBuildError(ValueError):
    """A structure cannot give a usable graph; ``reason`` is a short tag for the skipped-entries report."""

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason, self.detail = reason, detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


def dgl_available() -> bool:
    os.environ.setdefault("DGLBACKEND", "pytorch")
    try:
        import dgl  # noqa: F401
    except Exception:
        return False
    return True


def _pure(atoms: Any, p: GraphParams) -> dict[str, np.ndarray]:
    import torch
    from alignn.torch_graph_builder import build_pure_torch_graph

    with torch.no_grad():
        g, lg = build_pure_torch_graph(
            atoms, two_body_cutoff=p.cutoff, three_body_cutoff=p.effective_three_body_cutoff,
            max_neighbors=p.max_neighbors, atom_features=p.atom_features, use_matscipy_topology=False,
        )
    return {"src": g.src.numpy(), "dst": g.dst.numpy(), "r": g.edata["r"].numpy(),
            "lg_src": lg.src.numpy(), "lg_dst": lg.dst.numpy(), "h": lg.edata["h"].numpy()}


def _dgl(atoms: Any, p: GraphParams) -> dict[str, np.ndarray]:
    if not dgl_available():
        raise RuntimeError("graph builder 'dgl' needs the dgl extra: pip install -c constraints.txt 'tlsearch[dgl]'")
    from alignn.graphs import Graph

    g, lg = Graph.atom_dgl_multigraph(
        atoms, neighbor_strategy="k-nearest", cutoff=p.cutoff, max_neighbors=p.max_neighbors,
        atom_features=p.atom_features, compute_line_graph=True,
    )
    src, dst = (t.numpy() for t in g.edges())
    lsrc, ldst = (t.numpy() for t in lg.edges())
    return {"src": src, "dst": dst, "r": g.edata["r"].numpy(), "lg_src": lsrc, "lg_dst": ldst,
            "h": lg.edata["h"].reshape(-1).numpy()}


def build_arrays(atoms: Any, params: GraphParams) -> dict[str, np.ndarray]:
    """Graph arrays for one structure; raises :class:`GraphBuildError` for structures that cannot be used."""
    try:
        out = (_pure if params.builder == "pure" else _dgl)(atoms, params)
    except RuntimeError:
        raise
    except Exception as exc:  # the builders raise assorted errors on pathological cells
        raise GraphBuildError("graph build failed", f"{type(exc).__name__}: {exc}"[:200]) from None
    n = int(atoms.num_atoms)
    out["z"] = np.asarray(atoms.atomic_numbers)
    touched = np.zeros(n, dtype=bool)
    touched[out["src"]] = True
    touched[out["dst"]] = True
    if not touched.all():
        raise GraphBuildError("isolated atom", f"{int((~touched).sum())} atom(s) without a neighbour within {params.cutoff} A")
    lengths = np.linalg.norm(out["r"], axis=1)
    if len(lengths) and lengths.min() < MIN_BOND:
        raise GraphBuildError("overlapping atoms", f"bond of {lengths.min():.3g} A")
    if not (np.isfinite(out["r"]).all() and np.isfinite(out["h"]).all()):
        raise GraphBuildError("non-finite geometry", "bond vectors or angles are NaN/inf")
    return {k: np.ascontiguousarray(out[k], dtype=dt) for k, dt in ARRAYS.items()}
