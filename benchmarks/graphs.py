"""Graph construction: tlsearch (alignn's pure-torch builder + packed cache) vs alignn's DGL k-nearest builder.

Same real structures (the first N of matminer2018:dielectric_constant), same parameters (8 A cutoff,
12 neighbours, cgcnn features, line graph), one process, one thread each, run side by side:

  build   - tlsearch cold build per structure (GraphCache into an empty directory: build + pack + write)
  dgl     - alignn.graphs.Graph.atom_dgl_multigraph(neighbor_strategy="k-nearest") per structure
  hit     - tlsearch cache hit per structure (GraphCache.get on the same list: key, read, CRC, views)

Usage: python benchmarks/graphs.py [--n 1000] [--repeats 3]
Last lines: RATIO <name>=<value>.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time

os.environ.setdefault("DGLBACKEND", "pytorch")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    import torch

    torch.set_num_threads(1)
    from tlsearch.data import load_dataset
    from tlsearch.graphs import GraphCache, GraphParams, dgl_available

    atoms = [r.atoms for r in load_dataset("matminer2018:dielectric_constant").records[: args.n]]
    n = len(atoms)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch threads 1")
    print(f"structures: {n} (matminer2018:dielectric_constant), mean atoms {sum(a.num_atoms for a in atoms) / n:.1f}")
    params = GraphParams()

    def build_once() -> float:
        with tempfile.TemporaryDirectory() as d:
            cache = GraphCache(params, root=d, workers=1)
            t = time.perf_counter()
            cache.get(atoms)
            return time.perf_counter() - t

    def dgl_once() -> float:
        from alignn.graphs import Graph

        t = time.perf_counter()
        for a in atoms:
            Graph.atom_dgl_multigraph(a, neighbor_strategy="k-nearest", cutoff=params.cutoff,
                                      max_neighbors=params.max_neighbors, atom_features="cgcnn",
                                      compute_line_graph=True)
        return time.perf_counter() - t

    with tempfile.TemporaryDirectory() as d:
        warm = GraphCache(params, root=d, workers=1)
        warm.get(atoms)

        def hit_once() -> float:
            t = time.perf_counter()
            gs = warm.get(atoms)
            assert gs.hit
            return time.perf_counter() - t

        have_dgl = dgl_available()
        build, dgl, hit = [], [], []
        for _ in range(args.repeats):  # interleaved so machine noise hits all three alike
            build.append(build_once())
            if have_dgl:
                dgl.append(dgl_once())
            hit.append(hit_once())

    def per(ts: list[float]) -> float:
        return min(ts) / n * 1e3

    print(f"tlsearch build : {per(build):8.4f} ms/structure (best of {args.repeats})")
    if dgl:
        print(f"alignn DGL     : {per(dgl):8.4f} ms/structure (best of {args.repeats})")
    print(f"tlsearch hit   : {per(hit):8.4f} ms/structure (best of {args.repeats})")
    if dgl:
        print(f"RATIO build_speedup_vs_dgl={per(dgl) / per(build):.2f}")
    else:
        print("dgl not installed (pip install 'tlsearch[dgl]'): no DGL baseline")
    print(f"RATIO cache_hit_speedup_vs_build={per(build) / per(hit):.1f}")


if __name__ == "__main__":
    main()
