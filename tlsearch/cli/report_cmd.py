"""``tlsearch report EXPERIMENT_DIR [--wandb]``: the study's conclusions with their evidence."""

from __future__ import annotations

from typing import Any

import typer
from rich.console import Console
from rich.markup import escape

out = Console()


def print_report(experiment: Any, console: Console = out) -> None:
    """Build the report and print its conclusions (also called at the end of ``tlsearch run`` / ``resume``).
    ``experiment``: an Experiment (one on an object store is named by its URI), or its directory."""
    from tlsearch.analysis import build_report

    rep = build_report(experiment)
    console.print()
    console.rule("[bold]Conclusions")
    for line in rep.conclusions:
        console.print(f"- {escape(line)}", highlight=False, soft_wrap=True)  # a data label may hold [brackets]
    failed = rep.summary["failed"]
    if failed:
        console.print(f"{len(failed)} trial(s) failed; reasons in the report.")
    console.print(f"report: {rep.html}  (also {rep.markdown.name}, {rep.summary_json.name}, "
                  f"{rep.trials.name} in the same directory)", highlight=False, soft_wrap=True)


def report_cmd(
    experiment: str = typer.Argument(..., help="Experiment directory (or s3:// URI) printed by `tlsearch run`."),
    wandb: bool = typer.Option(False, "--wandb", help="Also build the W&B Report and push it (needs an API key)."),
) -> None:
    """Write report.md, report.html, summary.json and trials.parquet into the experiment directory."""
    from tlsearch.search.experiment import Experiment

    exp = Experiment.open(experiment)
    print_report(exp)
    exp.push()  # an experiment on an object store gets its report there too
    if wandb:
        import json

        from tlsearch.analysis.wandb_report import build_wandb_report, publish_wandb_report

        spec = exp.spec()
        summary = json.loads((exp.root / "summary.json").read_text())
        rep = build_wandb_report(summary, project=spec.tracking.project, entity=spec.tracking.entity, group=spec.name)
        out.print(f"W&B report: {publish_wandb_report(rep)}")
