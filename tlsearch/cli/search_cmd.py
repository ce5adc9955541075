"""``tlsearch validate | run | resume | status``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape

from tlsearch import _progress, remote
from tlsearch.search.checks import check_datasets, check_environment, check_storage
from tlsearch.search.spec import load_spec

out = Console()


def validate_cmd(
    spec: Path = typer.Argument(..., help="space.yaml"),
    data: bool = typer.Option(False, "--data", help="Also load every dataset the spec names and check its "
                              "properties (downloads and parses into the cache; `run` always does this)."),
) -> None:
    """Check a space.yaml; print a summary or every mistake (exit code 2)."""
    s = load_spec(spec)
    from tlsearch.search.pt_files import check_checkpoints, check_pretrained

    check_pretrained(s, str(spec))
    check_checkpoints(s, str(spec))
    check_environment(s, str(spec))
    check_storage(s, str(spec))
    if data:
        with _progress.status(out, "checking the datasets ..."):
            check_datasets(s, str(spec))
    d = s.data
    named = [f"{t.name} ({t.label})" if t.name else t.label for t in d.ft_targets]
    target = f"target {named[0]}" if len(named) == 1 else f"{len(named)} targets {', '.join(named)}"
    out.print(f"[green]ok[/] {spec}: study {s.name!r}: {escape(target)}; strategies {s.search.strategy}; "
              f"{s.budget.trials} trials x {s.budget.repeats} repeat(s), <= {s.budget.max_epochs} FT epochs; "
              f"scheduler {s.scheduler.type}; objectives {', '.join(s.objectives)}; "
              f"{s.resources.max_concurrent} concurrent trials, "
              f"{s.resources.cpus_per_trial} CPU / {s.resources.gpus_per_trial} GPU each")


def run_cmd(
    spec: Path = typer.Argument(..., help="space.yaml (see search_spaces/ and docs/spec.md)"),
    name: Optional[str] = typer.Option(None, help="Experiment name (default: the spec's name)."),
    storage: Optional[str] = typer.Option(None, help="Experiments directory or object-store URI (s3://BUCKET/PATH) "
                                          "(default: the spec's storage)."),
    address: Optional[str] = typer.Option(None, help="Join a Ray cluster: 'auto' or HOST:PORT (default: local)."),
    warm_start: Optional[list[str]] = typer.Option(None, "--warm-start", help="Experiment directory (or s3:// URI) "
                                                   "of an earlier study: its finished trials inside this space start "
                                                   "the search "
                                                    "(not retrained); repeat for several; adds to the spec's "
                                                    "warm_start."),
) -> None:
    """Run a study: Optuna define-by-run search over TL strategies, trials on Ray, each logged to W&B."""
    from tlsearch.search.experiment import Experiment
    from tlsearch.search.runner import run_study

    s = load_spec(spec).renamed(name)
    dirs = [p if remote.is_remote(p) else Path(p).expanduser().resolve()
            for p in [*s.warm_start, *(warm_start or [])]]
    for d in dirs:  # before anything is created: a wrong path is a clear error, not a half-made experiment
        Experiment.open(d)
    check_environment(s, str(spec), address)
    check_storage(s, str(spec), storage)
    import_pretrained(s, str(spec))
    with _progress.status(out, "checking the datasets and building their graphs ..."):
        # before Ray starts: a typo must not fail every trial; the graphs (the trials find them in the cache)
        # because a structure whose graph fails is skipped by every trial, and the data line says so
        data = check_datasets(s, str(spec), graphs=True)
    exp = Experiment.create(s, storage)
    _print_data(data, exp)
    if dirs:
        _warm_start(s, exp, dirs)
    run_study(s, exp, out, address=address)
    _print_status(exp)
    _report(exp)


def _warm_start(s, exp, dirs: list[str | Path]) -> None:  # noqa: ANN001
    """Import the earlier studies' finished trials that lie inside this space; say what was skipped and why."""
    from tlsearch.search.warm_start import import_trials

    with _progress.status(out, "warm start: reading the earlier studies ..."):
        imported, skipped = import_trials(s, exp, dirs)
    out.print(f"warm start: {len(imported)} finished trial(s) imported from {len(dirs)} earlier stud"
              f"{'y' if len(dirs) == 1 else 'ies'} (not retrained; the search starts from them), {len(skipped)} "
              "skipped", highlight=False, soft_wrap=True)
    for sk in skipped[:20]:
        out.print(f"  skipped {sk.experiment} trial {sk.trial}: {sk.reason}", markup=False, highlight=False,
                  soft_wrap=True)
    if len(skipped) > 20:
        out.print(f"  ... {len(skipped) - 20} more skipped", highlight=False)


def _print_data(data: list[dict], exp) -> None:  # noqa: ANN001
    """One line per dataset the study uses (what is used, what is skipped and why); kept as data.json for the
    report."""
    import json

    from tlsearch.data.quality import line

    exp.data_path.write_text(json.dumps(data, indent=1))
    for q in data:
        role = q["role"].removeprefix("data.")
        out.print(f"data ({role}): " + line(q, q["label"]) + (" (ids and reasons: report, data.json)"
                                                              if q["skipped"] else ""), markup=False, highlight=False,
                  soft_wrap=True)


def resume_cmd(
    experiment: str = typer.Argument(..., help="Experiment directory (or s3:// URI) printed by `tlsearch run`."),
    address: Optional[str] = typer.Option(None, help="Join a Ray cluster: 'auto' or HOST:PORT."),
) -> None:
    """Continue an interrupted study: restores the Tuner and the Optuna searcher, finishes the planned trials."""
    from tlsearch.search.experiment import Experiment
    from tlsearch.search.runner import run_study

    exp = Experiment.open(experiment)
    check_environment(exp.spec(), str(exp.root / "spec.json"), address)
    run_study(exp.spec(), exp, out, address=address, restore=True)
    _print_status(exp)
    _report(exp)


def status_cmd(experiment: str = typer.Argument(..., help="Experiment directory (or s3:// URI).")) -> None:
    """Trials with state, strategy, validation metric and the best so far."""
    from tlsearch.search.experiment import Experiment

    _print_status(Experiment.open(experiment))


def _report(exp) -> None:  # noqa: ANN001
    """The report ends every run; a failure to write it never loses the study (it is rebuilt any time with
    `tlsearch report`)."""
    from tlsearch.cli.report_cmd import print_report

    try:
        print_report(exp, out)
    except Exception as exc:  # noqa: BLE001 - the trials are safe on disk; say so and how to retry
        out.print(f"[red]report failed[/] ({type(exc).__name__}: {exc}); the trials are intact: "
                  f"retry with `tlsearch report {exp.where}`")
    if exp.uri:
        exp.push()
        out.print(f"uploaded to {exp.uri} (journal, W&B runs, report)", highlight=False)


def _print_status(exp) -> None:  # noqa: ANN001
    from tlsearch.search.status import best_lines, failures, offline_wandb, study_rows, trials_table

    rows = study_rows(exp)
    spec = exp.spec()
    imported = sum(r["state"] == "imported" for r in rows)
    more = f" + {imported} imported" if imported else ""
    out.print(trials_table(rows, f"{spec.name}: {len(rows) - imported} of {spec.budget.trials} trials{more} (val MAE, "
                                 "lower is better)"))
    for line in best_lines(rows):
        out.print(escape(line))
    for name, err in failures(exp):
        out.print(f"[red]failed[/] {name}: {err}")
    runs = offline_wandb(exp)
    if runs:
        out.print(f"W&B offline runs: {len(runs)} (upload: wandb sync {exp.root}/wandb/offline-run-*)")


def import_pretrained(s, where: str, store: Optional[Path] = None) -> None:  # noqa: ANN001
    """Check the checkpoint PT sources and import the shipped PT models (data.pretrained) into the store the
    trials use, before anything trains."""
    from tlsearch.search.pt_files import check_checkpoints, import_pretrained as _import
    from tlsearch.training.store import PretrainStore

    check_checkpoints(s, where)
    st = PretrainStore(store or s.cluster.pt_store)
    for i, key, already in _import(s, st, where):
        out.print(f"data.pretrained.{i}: {key[:12]} " + ("already in the store" if already else f"imported into {st.root}"))
