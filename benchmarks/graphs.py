"""Graph construction: tlsearch (alignn's pure-torch builder + packed cache) vs alignn's DGL k-nearest builder.

Same real structures (the first N of matminer2018:dielectric_constant), same parameters (8 A cutoff,
12 neighbours, cgcnn features, line graph), one process, one thread each, run side by side:

  build   - tlsearch cold build per structure (GraphCache into an empty directory: build + pack + write)
  dgl     - alignn.graphs.Graph.atom_dgl_multigraph(neighbor_strategy="k-nearest") per structure
  hit     - tlsearch cache hit per structure (GraphCache.get on the same list: key, read, CRC, views)
  3body   - tlsearch cold build with graph.three_body_cutoff (--three-body, default 3.0 A): only bonds up to it
            form triplets; issue 17 saw `data prepare` 4-9x slower with it on 61-atom band-gap cells
  and, with --large N, the same default/3body pair on N cells of about 60 atoms (flla_2015 supercells)

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
    ap.add_argument("--three-body", type=float, default=3.0)
    ap.add_argument("--large", type=int, default=100, help="cells of ~60 atoms for the three-body pair (0: none)")
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

    three = GraphParams(three_body_cutoff=args.three_body)

    def build_once(p: GraphParams = params, structures: list = atoms) -> float:
        with tempfile.TemporaryDirectory() as d:
            cache = GraphCache(p, root=d, workers=1)
            t = time.perf_counter()
            cache.get(structures)
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
        build, dgl, hit, tb = [], [], [], []
        for _ in range(args.repeats):  # interleaved so machine noise hits all alike
            build.append(build_once())
            tb.append(build_once(three))
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
    print(f"tlsearch 3body : {per(tb):8.4f} ms/structure (three_body_cutoff {args.three_body} A, best of "
          f"{args.repeats})")
    ratio = min(build) / min(tb)
    if args.large:
        large = _large_cells(args.large)
        big, big_tb = [], []
        for _ in range(args.repeats):
            big.append(build_once(params, large))
            big_tb.append(build_once(three, large))
        na = sum(a.num_atoms for a in large) / len(large)
        print(f"large cells    : {len(large)} flla_2015 supercells, mean {na:.1f} atoms: default "
              f"{min(big) / len(large) * 1e3:.3f}, three-body {min(big_tb) / len(large) * 1e3:.3f} ms/structure")
        ratio = min(ratio, min(big) / min(big_tb))
    print(f"RATIO cache_hit_speedup_vs_build={per(build) / per(hit):.1f}")
    print(f"RATIO three_body_build_vs_default={ratio:.2f}")


def _large_cells(n: int) -> list:
    """flla_2015 structures made into supercells of about 60 atoms (the cells of the slow report)."""
    from tlsearch.data import load_dataset

    out = []
    for r in load_dataset("matminer2018:flla_2015").records:
        m = max(1, round((60 / r.atoms.num_atoms) ** (1 / 3)))
        out.append(r.atoms.make_supercell_matrix([m, m, m]) if m > 1 else r.atoms)
        if len(out) == n:
            break
    return out


if __name__ == "__main__":
    main()
