"""``tlsearch predict PATH STRUCTURES`` and ``tlsearch export EXPERIMENT_DIR OUT_DIR``: use a study's winner.

PATH is an experiment directory (its selected model at ``--ft-size``: the one the report names) or a model
directory (``tlsearch export`` wrote it, or a finished trial's ``model_dir`` in trials.parquet). Predictions are the
mean and spread over the model's repeats, one row per structure; structures that cannot be used are listed with
their reason, the rest are predicted.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from tlsearch import _progress
from tlsearch.errors import UserInputError

out = Console()
err = Console(stderr=True)
FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
PROGRESS_MIN = 50  # structures: below this, no progress bar
PLAIN_EVERY_S = 5.0  # stderr not a terminal: a progress line per stage this often
BATCH = 64  # = tlsearch.training.predict.DEFAULT_BATCH (not imported here: that module imports torch)
_WORDS = {"read": "reading structures", "graphs": "building graphs", "predict": "predicting"}
_WHAT = ("give an experiment directory (the one `tlsearch run` printed) or a model directory (`tlsearch export` "
         "writes them; a finished trial's model_dir in trials.parquet is one too)")


def resolve_model(path: Path | str, ft_size: str | None,
                  target: str | None = None) -> tuple[Path, dict[str, Any] | None]:
    """(model directory, the analysis' selection entry when ``path`` is an experiment, also one on an object
    store)."""
    from tlsearch import remote
    from tlsearch.training.predict import model_files

    if remote.is_remote(path):
        from tlsearch.analysis.selected import choose
        from tlsearch.search.experiment import Experiment

        sel = choose(Experiment.open(str(path)), ft_size, target)
        return Path(sel["model_dir"]), sel
    p = Path(path).expanduser().resolve()
    if not p.exists():
        raise UserInputError(f"{p}: no such directory; fix: {_WHAT}")
    if (p / "spec.json").exists():
        from tlsearch.analysis.selected import choose
        from tlsearch.search.experiment import Experiment

        sel = choose(Experiment.open(p), ft_size, target)
        return Path(sel["model_dir"]), sel
    if not model_files(p):
        inside = sorted(d.name for d in p.iterdir() if model_files(d)) if p.is_dir() else []
        hint = f"it holds model directories: {', '.join(inside)}; give one of them" if inside else _WHAT
        raise UserInputError(f"{p}: neither an experiment directory (no spec.json) nor a model directory (no "
                             f"model.pt); fix: {hint}")
    if ft_size is not None or target is not None:
        opt = "--ft-size" if ft_size is not None else "--target"
        raise UserInputError(f"{p}: {opt} chooses among an experiment's models, and this is one model directory; "
                             f"fix: drop {opt}")
    return p, None


class _Rate(ProgressColumn):
    """Structures per second of a progress bar's task."""

    def render(self, task: Any) -> Text:
        speed = task.finished_speed or task.speed
        return Text("" if speed is None else f"{speed:,.1f} structures/s")


class StageProgress:
    """Progress of ``predict``'s stages (reading, graphs, inference) on ``console``: a bar with the rate
    (structures/s) on a terminal; elsewhere (a log, a pipe) plain lines (:class:`tlsearch._progress.CountProgress`)
    with the count, rate and ETA, one every ``every`` seconds and one at the end of the stage. A stage of fewer than
    ``PROGRESS_MIN`` structures shows nothing. Afterwards :meth:`summary` gives the inference stage's rate."""

    def __init__(self, console: Console, every: float = PLAIN_EVERY_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.console, self.every, self.clock = console, every, clock
        self.bar = None if _progress.is_plain(console) else Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), _Rate(), TimeElapsedColumn(),
            console=console, transient=True)
        self.shown: dict[str, Any] = {}  # stage -> its bar task id (terminal) or its CountProgress (plain)
        self.started: dict[str, float] = {}
        self.last: dict[str, tuple[int, float]] = {}  # stage -> (done, time) of its latest update

    def __call__(self, stage: str, done: int, total: int) -> None:
        now = self.clock()
        self.started.setdefault(stage, now)
        self.last[stage] = (done, now)
        if total < PROGRESS_MIN:
            return
        if self.bar is None:
            if stage not in self.shown:  # step=1.0: lines by time (and the last one), not per 10 %
                self.shown[stage] = _progress.CountProgress(self.console, _WORDS.get(stage, stage), step=1.0,
                                                            clock=self.clock, every=self.every)
            self.shown[stage](done, total)
            return
        if stage not in self.shown:
            if not self.shown:
                self.bar.start()  # only once a stage is large enough: a small input prints no bar at all
            self.shown[stage] = self.bar.add_task(_WORDS.get(stage, stage), total=total)
        self.bar.update(self.shown[stage], completed=done, total=total)

    def summary(self, repeats: int, threads: int, batch_size: int) -> str | None:
        """One line on the inference stage: structures, repeats, seconds, rate, threads and batch size."""
        done, now = self.last.get("predict", (0, 0.0))
        if not done:
            return None
        secs = now - self.started["predict"]
        rate = f", {done / secs:,.1f} structures/s" if secs > 0 else ""
        return (f"inference: {done} structure(s) x {repeats} repeat(s) in {secs:.1f} s{rate} ({threads} torch "
                f"thread(s), batch {batch_size})")

    def stop(self) -> None:
        if self.bar is not None and self.bar.live.is_started:
            self.bar.stop()


def _print_table(frame: Any) -> None:
    cols = [c for c in ("id", "y_pred", "y_std", "y_true", "abs_error", "skipped") if c in frame.columns]
    table = Table(box=None)
    for c in cols:
        table.add_column(c, justify="left" if c in ("id", "skipped") else "right")
    for row in frame.select(cols).iter_rows():
        table.add_row(*[("" if v is None else f"{v:.6g}" if isinstance(v, float) else escape(str(v))) for v in row])
    out.print(table)


def _describe(model_dir: Path, sel: dict[str, Any] | None, ens: Any) -> str:
    n = len(ens.members)
    if sel is not None:
        return (f"model: study {sel['experiment']}, FT size {sel['ft_size']}, trial {sel['trial']} "
                f"({sel['configuration']}), {n} repeat(s), test MAE {sel['test_mae']:.4g}: {model_dir}")
    info = ens.info
    what = f"study {info['experiment']}, FT size {info['ft_size']}, trial {info['trial']}, " if info else ""
    return f"model: {what}{n} repeat(s) predicting {ens.property}: {model_dir}"


def predict_cmd(
    path: str = typer.Argument(..., help="An experiment directory or s3:// URI (its selected model) or a model "
                                         "directory."),
    structures: str = typer.Argument(..., help="A folder of POSCAR/CIF/XYZ files (with or without id_prop.csv), one "
                                               "structure file, or a dataset reference (emt:..., folder:...)."),
    ft_size: Optional[str] = typer.Option(None, "--ft-size", help="The FT size whose selected model predicts "
                                                                  "(default: the largest with a finished trial)."),
    target: Optional[str] = typer.Option(None, "--target", help="A study with several FT targets: which target's "
                                                                "model (dataset/property, its label or property)."),
    out_file: Optional[Path] = typer.Option(None, "--out", "-o", help="Write the predictions to FILE.csv or "
                                                                      "FILE.parquet (default: a table on stdout)."),
    threads: Optional[int] = typer.Option(None, "--threads", help="Torch threads for inference (default: the CPUs "
                                                                  "this process may use, its CPU affinity, less those "
                                                                  "other work keeps busy; at least 1)."),
    batch_size: int = typer.Option(BATCH, "--batch-size", help="Structures per inference batch (default 64)."),
) -> None:
    """Predict a property for new structures with a study's selected model (mean and spread over its repeats)."""
    from tlsearch.training.predict import default_threads, keep_freed_memory, positive

    threads = positive(threads, "--threads", default_threads()) if threads is not None else default_threads()
    batch_size = positive(batch_size, "--batch-size", BATCH)
    fmt = FORMATS.get(out_file.suffix.lower()) if out_file is not None else None
    if out_file is not None and fmt is None:
        raise UserInputError(f"--out {out_file}: unknown file type {out_file.suffix or '(none)'!r}; fix: end the "
                             "name in .csv or .parquet")
    model_dir, sel = resolve_model(path, ft_size, target)
    from tlsearch.training.predict import load_model

    ens = load_model(model_dir)
    err.print(escape(_describe(model_dir, sel, ens)), highlight=False, soft_wrap=True)
    keep_freed_memory()  # this process ends after predicting: freed activations stay in the heap for reuse
    progress = StageProgress(err)
    try:
        pred = ens.predict_from(structures, progress=progress, threads=threads, batch_size=batch_size)
    finally:
        progress.stop()
    line = progress.summary(len(ens.members), threads, batch_size)
    if line:
        err.print(line, highlight=False, soft_wrap=True)
    for note in pred.notes:
        err.print(f"note: {escape(note)}", highlight=False, soft_wrap=True)
    if pred.skipped:
        err.print(f"{len(pred.skipped)} structure(s) skipped:", highlight=False)
        for s in pred.skipped:
            err.print(f"  {escape(s.id)}: {escape(s.reason)}" + (f" ({escape(s.detail)})" if s.detail else ""),
                      highlight=False, soft_wrap=True)
    if not pred.ids:
        raise UserInputError(f"{structures}: none of its {len(pred.skipped)} structure(s) could be used (reasons "
                             "above); fix: give parsable POSCAR/CIF/XYZ files of sensible crystals")
    frame = pred.to_frame()
    if out_file is None:
        _print_table(frame)
    else:
        out_file.parent.mkdir(parents=True, exist_ok=True)
        frame.write_csv(out_file) if fmt == "csv" else frame.write_parquet(out_file)
    err.print(f"predicted {len(pred.ids)} of {len(pred.ids) + len(pred.skipped)} structure(s)"
              + (f": {out_file}" if out_file else ""), highlight=False, soft_wrap=True)
    mae = pred.mae()
    if mae is not None:
        per = ", ".join(f"{pred.mae(r):.4g}" for r in range(pred.per_repeat.shape[1]))
        err.print(f"MAE vs the true values ({escape(pred.value_source)}, {pred.n_true()} structures): {mae:.4g} "
                  f"(ensemble mean; per {'model (repeat x fold)' if any('fold' in m for m in pred.members) else 'repeat'}: "
                  f"{per})", highlight=False, soft_wrap=True)


def export_cmd(
    experiment: str = typer.Argument(..., help="Experiment directory (or s3:// URI) printed by `tlsearch run`."),
    out_dir: Path = typer.Argument(..., help="Directory to write into: one <experiment>-ft<size> folder per model."),
    ft_size: Optional[str] = typer.Option(None, "--ft-size", help="Export only the model selected at this FT size "
                                                                  "(default: the selected model of every size)."),
    target: Optional[str] = typer.Option(None, "--target", help="A study with several FT targets: which target's "
                                                                "model (dataset/property, its label or property)."),
) -> None:
    """Write the selected model (per FT size) as a self-contained directory with a model card."""
    from tlsearch.analysis.selected import choose, selected_models
    from tlsearch.search.experiment import Experiment
    from tlsearch.training.export import export_model

    exp = Experiment.open(experiment)
    if out_dir.exists() and not out_dir.is_dir():
        raise UserInputError(f"{out_dir}: exists and is not a directory; fix: give a directory to export into")
    if ft_size is not None:
        models = [choose(exp, ft_size, target)]
    else:
        every = [m for m in selected_models(exp) if target is None or target in (m["target"], m["target_name"])
                 or m["target"].rsplit("/", 1)[-1] == target]
        if target is not None and not every:
            choose(exp, None, target)  # says which targets there are
        for m in every:
            if not m["model_dir"]:
                out.print(f"FT size {m['ft_size']}: trial {m['trial']} kept no model files (an older tlsearch): "
                          "not exported", highlight=False)
        models = [m for m in every if m["model_dir"]]
        if not models:
            choose(exp, None)  # says why there is nothing to export
    for m in models:
        dest = export_model(m, out_dir)
        out.print(f"FT size {m['ft_size']}: trial {m['trial']} ({escape(m['configuration'])}, test MAE "
                  f"{m['test_mae']:.4g}) -> {dest}", highlight=False, soft_wrap=True)
        out.print(f"  use it: tlsearch predict {dest} STRUCTURES; in Python: see {dest / 'README.md'}",
                  highlight=False, soft_wrap=True)
