"""``tlsearch train CONFIG.yaml``: one training run (scratch, finetune or mpt) with a progress bar."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

out = Console()


def result_to_dict(result: Any) -> dict[str, Any]:
    def conv(x: Any) -> Any:
        if isinstance(x, Path):
            return str(x)
        if isinstance(x, dict):
            return {k: conv(v) for k, v in x.items()}
        if isinstance(x, list):
            return [conv(v) for v in x]
        return x

    return conv(dataclasses.asdict(result))


def train_cmd(
    config: Path = typer.Argument(..., help="Training config YAML (see docs/spec.md and examples/train_*.yaml)."),
    output_dir: Optional[Path] = typer.Option(None, "--output-dir", "-o", help="Where predictions and result.json go."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Train one model: scratch, PT->FT (finetune) or multi-property PT->FT (mpt)."""
    from tlsearch.training import load_config, train_trial

    cfg = load_config(config)
    if output_dir is not None:
        cfg = cfg.model_copy(update={"output_dir": str(output_dir)})
    epochs = cfg.train.optim.epochs
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TextColumn("{task.fields[info]}"), console=out, disable=as_json) as bar:
        label = "pre-training (or loading from the store), then training" if cfg.pretrain else "training"
        task = bar.add_task(label, total=epochs, info="")

        def on_epoch(m: Any, _trainer: Any) -> None:
            bar.update(task, completed=m.epoch, description=f"{cfg.mode} epochs",
                       info=f"train loss {m.train_loss:.4f}  val MAE {m.val_mae:.4g}  {m.seconds:.1f}s/epoch")

        result = train_trial(cfg, callback=on_epoch)
    data = result_to_dict(result)
    if cfg.output_dir:
        Path(cfg.output_dir).mkdir(parents=True, exist_ok=True)
        (Path(cfg.output_dir) / "result.json").write_text(json.dumps(data, indent=1))
    if as_json:
        typer.echo(json.dumps(data, indent=1))
        return
    table = Table(title=f"{cfg.name}: {cfg.mode} on {cfg.target.label}")
    for col in ("set", "n", "MAE", "RMSE", "R2"):
        table.add_column(col, justify="right" if col != "set" else "left")
    rows = [("validation", result.val), ("held-out test", result.test), *result.eval_sets.items()]
    for name, m in rows:
        table.add_row(name, str(m["n"]), f"{m['mae']:.4g}", f"{m['rmse']:.4g}", f"{m['r2']:.3f}")
    out.print(table)
    if result.pretrain and cfg.pretrain and getattr(cfg.pretrain.sources[0], "checkpoint", None):
        out.print(f"pre-trained weights: checkpoint {result.pretrain.sources[0]} "
                  f"({cfg.pretrain.sources[0].checkpoint}, sha256 {result.pretrain.key[:12]})")
    elif result.pretrain:
        p = result.pretrain
        out.print(f"pre-training: {', '.join(p.sources)}; {'reused from store' if p.store_hit else 'trained'} "
                  f"({p.pt_seconds:.1f}s, {p.epochs} epochs, {p.n_train} structures, key {p.key[:12]})")
    out.print(f"train/val structures {result.n_train}/{result.n_val}; best epoch {result.best_epoch} of "
              f"{len(result.history)}; parameters {result.n_trainable:,} trainable of {result.n_params:,}; "
              f"{result.seconds:.1f}s")
