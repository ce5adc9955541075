"""``tlsearch pretrain SPEC.yaml``: train every PT model a study's trials would ask for into the store, ahead.

Each model goes through the trials' own code path (:func:`tlsearch.training.trial.pretrained_entry` on the
trial's own config), so a trial of the study finds it under the same key and reuses it.
"""

from __future__ import annotations

import os
import time
from enum import Enum
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)

from tlsearch import _progress

out = Console()


class Only(str, Enum):
    finetune = "finetune"
    mpt = "mpt"


def store_option() -> Any:
    return typer.Option(None, "--store", help="Pre-trained model store directory "
                        "(default: $TLSEARCH_CACHE/pretrained, else ~/.cache/tlsearch/pretrained).")


def pretrain_cmd(
    spec: Path = typer.Argument(..., help="space.yaml of the study (see docs/pretrained.md)."),
    only: Optional[Only] = typer.Option(None, "--only", help="Only the PT models of this strategy."),
    store: Optional[Path] = store_option(),
) -> None:
    """Pre-train, into the store, every PT model the study's finetune / mpt trials would ask for."""
    from tlsearch.search.pt_plan import plan
    from tlsearch.search.checks import check_datasets
    from tlsearch.search.spec import load_spec
    from tlsearch.training.store import PretrainStore

    s = load_spec(spec)
    models = plan(s, only.value if only else None, str(spec), cache_dir=os.environ.get("TLSEARCH_CACHE"),
                  store_dir=str(store) if store else None)
    root = PretrainStore(store).root
    from tlsearch.cli.search_cmd import import_pretrained

    import_pretrained(s, str(spec), store)
    if not models:
        out.print(f"nothing to pre-train: every PT source of {spec} is a checkpoint")
        return
    with _progress.status(out, "checking the datasets ..."):
        check_datasets(s, str(spec))
    out.print(f"{len(models)} PT model(s) for study {s.name!r} into {root}")
    keys = [_one(i, len(models), m) for i, m in enumerate(models, 1)]
    out.print("keys:")
    for m, (key, how) in zip(models, keys):
        out.print(f"  {key}  {m.strategy}: {escape(m.label)} ({how})")


def _arch(cfg: Any) -> str:
    m = cfg.model
    return f"{m.alignn_layers}+{m.gcn_layers} layers, hidden {m.hidden_features}, embedding {m.embedding_features}"


def _one(i: int, n: int, m: Any) -> tuple[str, str]:
    from tlsearch.training.trial import pretrained_entry

    cfg = m.config
    epochs = cfg.pretrain.optim.epochs
    title = f"[{i}/{n}] {m.strategy}: {escape(m.label)} ({_arch(cfg)})"
    t0 = time.perf_counter()
    if _progress.is_plain(out):  # a log: a line per PT epoch (and one a minute), not a bar drawn at the end
        entry = _plain_pretrain(cfg, title, epochs)
    else:
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("epochs"),
                      TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TextColumn("ETA"),
                      TimeRemainingColumn(), console=out, transient=True) as bar:
            task = bar.add_task(f"{title}: loading or pre-training", total=epochs, info="")

            def on_epoch(em: Any, _trainer: Any) -> None:
                bar.update(task, completed=em.epoch, description=f"{title}: pre-training",
                           info=f"train loss {em.train_loss:.4f}  val MAE {em.val_mae:.4g}")

            entry = pretrained_entry(cfg, on_epoch)
    secs = time.perf_counter() - t0
    if entry.hit:
        waited = f" after waiting {entry.wait_seconds:.0f}s for another process" if entry.wait_seconds > 1 else ""
        out.print(f"{title}: already in the store{waited} (key {entry.key[:12]})")
        return entry.key, "already in the store"
    meta = entry.meta
    out.print(f"{title}: trained {meta['epochs']} epochs on {meta['n_train']} structures in {secs:.1f}s, "
              f"best val MAE {meta['best_val']:.4g} (key {entry.key[:12]})")
    return entry.key, "trained"


def _plain_pretrain(cfg: Any, title: str, epochs: int) -> Any:
    """``pretrained_entry`` with plain progress lines (output that is not a terminal): one per PT epoch with its
    losses, rate, elapsed time and ETA, and one a minute while an epoch (or the loading before the first) runs."""
    from tlsearch.training.trial import pretrained_entry

    lines = _progress.EpochLines(out, _progress.plain_text(title), epochs)
    with _progress.heartbeat(lines.tick):
        return pretrained_entry(cfg, lambda em, _trainer: lines.epoch(em))
