"""``tlsearch data list | prepare | describe``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.markup import escape
from rich.table import Table

from tlsearch import _progress
from tlsearch.data import get_source, load_dataset, source_names
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
    with _progress.status(out, f"loading {ref} ..."):
        ds = load_dataset(ref, cache=cache, refresh=refresh)
    out.print(f"[green]parsed[/] {ds.ref}: {len(ds)} records, {len(ds.skipped)} skipped")
    for s in ds.skipped[:10]:
        out.print(f"  skipped {s.id}: {s.reason}" + (f" ({s.detail})" if s.detail else ""), markup=False,
                  highlight=False)
    if len(ds.skipped) > 10:
        out.print(f"  ... and {len(ds.skipped) - 10} more (`tlsearch data describe` counts them by reason)")
    structures = [r.atoms for r in ds.records]
    if _progress.is_plain(out):  # a log: a line per 10 % (and one a minute) with the rate and ETA, not a bar
        gs = GraphCache(params, root=cache).get(structures, progress=_progress.CountProgress(out, "graphs"))
    else:
        with Progress(TextColumn("graphs"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=out) as bar:
            task = bar.add_task("graphs", total=len(ds))
            gs = GraphCache(params, root=cache).get(structures,
                                                    progress=lambda done, total: bar.update(task, completed=done))
    state = "cache hit" if gs.hit else "built"
    out.print(f"[green]graphs {state}[/]: {len(gs.pack)} ok, {len(gs.failures)} failed -> {gs.path}")
    for i, (reason, detail) in list(gs.failures.items())[:10]:
        out.print(f"  skipped {ds.records[i].id}: {reason} ({detail})")


@data_app.command("describe")
def describe_cmd(
    ref: str = typer.Argument(..., help=REF_HELP),
    test_fraction: float = typer.Option(0.1, help="Held-out test fraction."),
    split_seed: int = typer.Option(0, help="Seed of the held-out split."),
    graphs: bool = typer.Option(False, "--graphs", help="Also build the graphs (default graph settings, into the "
                                "cache) and list the structures whose graph fails: isolated atoms, too few neighbours."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
    cache: Optional[Path] = CacheOpt,
) -> None:
    """Counts, target statistics, every skipped entry with its id and reason, and split sizes."""
    from tlsearch.data.quality import count_reasons, dataset_entries, quality

    ds = load_dataset(ref, cache=cache)
    failed: dict[str, tuple[str, str]] | None = None  # not checked
    if graphs:
        from tlsearch.graphs import GraphCache

        with out.status(f"building the graphs of {len(ds)} structures ..."):
            gs = GraphCache(GraphParams(), root=cache).get([r.atoms for r in ds.records])
        failed = {ds.records[i].id: f for i, f in gs.failures.items()}
    per = {p: quality(ds, p, test_fraction, split_seed, failed) for p in ds.properties}
    entries = dataset_entries(ds, failed)
    info: dict = {"ref": str(ds.ref), "records": len(ds) - len(failed or {}), "skipped": len(entries),
                  "skipped_by_reason": count_reasons(entries), "skipped_entries": entries, "graphs_checked": graphs,
                  "provenance": ds.provenance,
                  "properties": {p: {**q["target"], "used": q["used"], "pool": q.get("pool", 0),
                                     "test": q.get("test", 0)} for p, q in per.items()}}
    if as_json:
        typer.echo(json.dumps(info, indent=1))
        return
    out.print(f"[bold]{info['ref']}[/]: {info['records']} records; {info['skipped']} skipped {info['skipped_by_reason']}"
              + ("" if graphs else " (graph-level failures: --graphs)"))
    for k, v in ds.provenance.items():
        out.print(f"  {k}: {v}")
    table = Table(title=f"targets (test fraction {test_fraction}, split seed {split_seed})")
    for col in ("property", "count", "mean", "std", "min", "median", "max", "FT pool", "test"):
        table.add_column(col, justify="right" if col != "property" else "left")
    for p, st in info["properties"].items():
        fmt = lambda k: f"{st[k]:.4g}" if k in st else "-"  # noqa: E731
        table.add_row(p, str(st["count"]), fmt("mean"), fmt("std"), fmt("min"), fmt("median"), fmt("max"),
                      str(st["pool"]), str(st["test"]))
    out.print(table)
    if entries:
        skipped = Table(title=f"skipped entries ({len(entries)})")
        for col in ("id", "reason", "detail"):
            skipped.add_column(col, overflow="fold")
        for e in entries:
            skipped.add_row(escape(e["id"]), escape(e["reason"]), escape(e["detail"]))
        out.print(skipped)
