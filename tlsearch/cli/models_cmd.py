"""``tlsearch models list | show KEY | export KEY PATH | import PATH``: the pre-trained model store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from tlsearch.cli.pretrain_cmd import store_option

out = Console()
models_app = typer.Typer(help="The pre-trained (PT) model store: list, show, export and import entries.")


def _store(store: Optional[Path]) -> Any:
    from tlsearch.training.store import PretrainStore

    return PretrainStore(store)


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.3g} {unit}"
        n /= 1024
    return ""


def _age(s: float) -> str:
    for unit, span in (("d", 86400), ("h", 3600), ("min", 60)):
        if s >= span:
            return f"{s / span:.0f} {unit}"
    return f"{s:.0f} s"


def _num(x: Any) -> str:
    return f"{x:.4g}" if isinstance(x, float) else ("none" if x is None else str(x))


@models_app.command("list")
def list_cmd(store: Optional[Path] = store_option()) -> None:
    """Every entry: key, head, architecture, PT epochs, best validation MAE, size, age, sources."""
    from tlsearch.training._store_io import entries

    st = _store(store)
    found, bad = entries(st)
    if not found:
        out.print(f"the store {st.root} has no pre-trained models (make some with `tlsearch pretrain SPEC`)")
    else:
        table = Table(title=f"{len(found)} pre-trained model(s) in {st.root}", box=box.SIMPLE_HEAD)
        for col in ("key", "head", "architecture", "PT epochs", "val MAE", "size", "age"):
            table.add_column(col, justify="left" if col in ("key", "head", "architecture") else "right",
                             no_wrap=col in ("key", "head"), min_width=12 if col == "key" else None)
        table.add_column("sources", overflow="fold")
        for e in sorted(found, key=lambda e: -e.mtime):
            m = e.meta.get("material", {}).get("model", {})
            arch = (f"{m.get('alignn_layers')}+{m.get('gcn_layers')} layers h{m.get('hidden_features')} "
                    f"e{m.get('embedding_features')} {m.get('backend', 'pure')}") if m else "?"
            table.add_row(e.key[:12], e.head, arch, _num(e.meta.get("epochs")), _num(e.meta.get("best_val")),
                          _size(e.size), _age(e.age_s), escape("\n".join(e.sources)))
        out.print(table)
    for path in bad:
        out.print(f"[yellow]not an entry[/] {path} (damaged or foreign; a trial asking for its key retrains it)")


def _lines(prefix: str, value: Any) -> list[str]:
    if isinstance(value, dict) and value:
        return [line for k, v in value.items() for line in _lines(f"{prefix}.{k}" if prefix else str(k), v)]
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        return [f"{prefix}[{i}]: " + ", ".join(f"{k}={_num(x)}" for k, x in v.items()) for i, v in enumerate(value)]
    if isinstance(value, list) and value and all(isinstance(v, list) for v in value):
        return [f"{prefix}[{i}]: {' / '.join(map(str, v))}" for i, v in enumerate(value)]
    return [f"{prefix}: {_num(value) if not isinstance(value, (list, dict)) else json.dumps(value)}"]


@models_app.command("show")
def show_cmd(
    key: str = typer.Argument(..., help="An entry's key, or a unique prefix of it."),
    as_json: bool = typer.Option(False, "--json", help="Print the entry's metadata as JSON."),
    store: Optional[Path] = store_option(),
) -> None:
    """Everything an entry records (its metadata, not its weights), one field a line."""
    from tlsearch.training._store_io import find, key_matches

    e = find(_store(store), key)
    if as_json:
        typer.echo(json.dumps({"key": e.key, "path": str(e.path), "size": e.size, "meta": e.meta}, indent=1))
        return
    out.print(f"key: {e.key}\nfile: {e.path} ({_size(e.size)})\nhead: {e.head}\narchitecture: {e.architecture}")
    material = e.meta.get("material", {})
    shown = {**e.meta, "material": {**material, "exclude": f"{len(material.get('exclude', []))} structures (the FT "
                                                         "targets' held-out test sets; all of them: --json)"}}
    for line in _lines("", shown):
        out.print(escape(line), highlight=False, soft_wrap=True)
    if not key_matches(e.meta, e.key):
        out.print("[yellow]note[/]: this installation computes another key for this material (made by other "
                  "tlsearch/alignn/torch versions): trials will not reuse it")


@models_app.command("export")
def export_cmd(
    key: str = typer.Argument(..., help="An entry's key, or a unique prefix of it."),
    path: Path = typer.Argument(..., help="File to write (or a directory: <dir>/<key>.pt)."),
    store: Optional[Path] = store_option(),
) -> None:
    """Write one entry as a self-contained, checksummed file (for `tlsearch models import` or data.pretrained)."""
    from tlsearch.training._store_io import export_entry

    dest = export_entry(_store(store), key, path)
    out.print(f"exported {dest} ({_size(dest.stat().st_size)})")


@models_app.command("import")
def import_cmd(
    path: Path = typer.Argument(..., help="A file written by `tlsearch models export`."),
    store: Optional[Path] = store_option(),
) -> None:
    """Verify an exported entry (format, checksum, weights) and put it into the store under its key."""
    from tlsearch.training._store_io import import_entry

    st = _store(store)
    key, already = import_entry(st, path)
    out.print(f"{key} {'already in the store' if already else 'imported into ' + str(st.root)}")
    _warn_versions(st, key)


def _warn_versions(st: Any, key: str) -> None:
    from tlsearch.training._store_io import key_matches

    header_meta = st.load(key).meta
    if not key_matches(header_meta, key):
        made = header_meta.get("versions", "unknown versions")
        out.print(f"[yellow]note[/]: {key} was made by {made}; this installation ({st.versions()}) computes "
                  "another key for the same material, so trials here will not reuse it")
