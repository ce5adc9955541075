"""``tlsearch data list | prepare | describe``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import numpy as np
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from tlsearch.data import get_source, load_dataset, source_names
from tlsearch.data.splits import split_pool
from tlsearch.graphs import GraphParams

data_app = typer.Typer(help="Datasets: list sources, prepare (parse + graphs), describe.")
out = Console()

REF_HELP = ("Dataset reference 'source:dataset[?key=value&...]', e.g. matminer2018:dielectric_constant, "
            "emt:alloys?n=500&seed=0, jarvis:dft_3d?file=/data/dft_3d.json, folder:/data/my_crystals")
CacheOpt = typer.Option(None, "--cache", help="Cache directory (default $TLSEARCH_CACHE or ~/.cache/tlsearch).")


@data_app.command("list")
def list_cmd() -> None:
    """Sources, their datasets and properties."""
    for name in source_names():
        src = get_source(name)
        out.print(f"[bold]{name}[/]: {src.description}", highlight=False)
        for key, meaning in src.params.items():
            out.print(f"    ?{key}=  {meaning}", highlight=False)
        infos = src.datasets()
        if not infos:
            out.print(f"  [cyan]{name}:<path>[/]  properties come from the files", highlight=False)
        for info in infos.values():
            size = f" ({info.size} structures)" if info.size else ""
            out.print(f"  [cyan]{name}:{info.name}[/]{size}  {info.description}", highlight=False)
            out.print(f"      properties: {', '.join(info.properties)}", highlight=False)
    out.print("\nParameters go after '?', joined by '&': e.g. emt:alloys?n=500&seed=0")


def _graph_params(builder: str, cutoff: float, max_neighbors: int, three_body_cutoff: Optional[float]) -> GraphParams:
    return GraphParams(builder=builder, cutoff=cutoff, max_neighbors=max_neighbors,  # type: ignore[arg-type]
                       three_body_cutoff=three_body_cutoff)


@data_app.command("prepare")
def prepare_cmd(
    ref: str = typer.Argument(..., help=REF_HELP),
    builder: str = typer.Option("pure", help="Graph builder: pure (alignn pure-torch) or dgl (needs the dgl extra)."),
    cutoff: float = typer.Option(8.0, help="Neighbour cutoff, Angstrom."),
    max_neighbors: int = typer.Option(12, help="Neighbours kept per atom."),
    three_body_cutoff: Optional[float] = typer.Option(None, help="Bond length limit for triplets (default: cutoff)."),
    refresh: bool = typer.Option(False, help="Re-parse the source even if cached."),
    cache: Optional[Path] = CacheOpt,
) -> None:
    """Download (if needed), parse and validate a dataset, then build its graphs into the cache."""
    from tlsearch.graphs import GraphCache

    params = _graph_params(builder, cutoff, max_neighbors, three_body_cutoff)
    with out.status(f"loading {ref} ..."):
        ds = load_dataset(ref, cache=cache, refresh=refresh)
    out.print(f"[green]parsed[/] {ds.ref}: {len(ds)} records, {len(ds.skipped)} skipped")
    for s in ds.skipped[:10]:
        out.print(f"  skipped {s.id}: {s.reason}" + (f" ({s.detail})" if s.detail else ""), markup=False,
                  highlight=False)
    if len(ds.skipped) > 10:
        out.print(f"  ... and {len(ds.skipped) - 10} more (`tlsearch data describe` counts them by reason)")
    with Progress(TextColumn("graphs"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=out) as bar:
        task = bar.add_task("graphs", total=len(ds))
        gs = GraphCache(params, root=cache).get([r.atoms for r in ds.records],
                                                progress=lambda done, total: bar.update(task, completed=done))
    state = "cache hit" if gs.hit else "built"
    out.print(f"[green]graphs {state}[/]: {len(gs.pack)} ok, {len(gs.failures)} failed -> {gs.path}")
    for i, (reason, detail) in list(gs.failures.items())[:10]:
        out.print(f"  skipped {ds.records[i].id}: {reason} ({detail})")


def _stats(v: np.ndarray) -> dict[str, float]:
    v = v[np.isfinite(v)]
    if not len(v):
        return {"count": 0}
    q = np.percentile(v, [0, 50, 100])
    return {"count": int(len(v)), "mean": float(v.mean()), "std": float(v.std()), "min": float(q[0]),
            "median": float(q[1]), "max": float(q[2])}


@data_app.command("describe")
def describe_cmd(
    ref: str = typer.Argument(..., help=REF_HELP),
    test_fraction: float = typer.Option(0.1, help="Held-out test fraction."),
    split_seed: int = typer.Option(0, help="Seed of the held-out split."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
    cache: Optional[Path] = CacheOpt,
) -> None:
    """Counts, target statistics, skipped entries by reason, and split sizes."""
    ds = load_dataset(ref, cache=cache)
    info: dict = {"ref": str(ds.ref), "records": len(ds), "skipped": len(ds.skipped),
                  "skipped_by_reason": ds.skipped_by_reason(), "provenance": ds.provenance, "properties": {}}
    for p in ds.properties:
        vals = ds.values(p)
        n_ok = int(np.isfinite(vals).sum())
        split = split_pool([r.id for r, v in zip(ds.records, vals) if np.isfinite(v)], test_fraction, split_seed) \
            if n_ok else None
        info["properties"][p] = {**_stats(vals), "pool": len(split.pool) if split else 0,
                                 "test": len(split.test) if split else 0}
    if as_json:
        typer.echo(json.dumps(info, indent=1))
        return
    out.print(f"[bold]{info['ref']}[/]: {info['records']} records; {info['skipped']} skipped {info['skipped_by_reason']}")
    for k, v in ds.provenance.items():
        out.print(f"  {k}: {v}")
    table = Table(title=f"targets (test fraction {test_fraction}, split seed {split_seed})")
    for col in ("property", "count", "mean", "std", "min", "median", "max", "FT pool", "test"):
        table.add_column(col, justify="right" if col != "property" else "left")
    for p, s in info["properties"].items():
        fmt = lambda k: f"{s[k]:.4g}" if k in s else "-"  # noqa: E731
        table.add_row(p, str(s["count"]), fmt("mean"), fmt("std"), fmt("min"), fmt("median"), fmt("max"),
                      str(s["pool"]), str(s["test"]))
    out.print(table)
