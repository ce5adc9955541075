"""A compact live view of a running study (trials done / running / failed, best so far, ETA), in place of
Ray's wall of text (the final per-trial table is status.trials_table: `tlsearch status` must not load Ray).

On a terminal it is one line redrawn in place. Where stdout is not a terminal (``make run > log``, ``ray job
logs -f``, nohup, a scheduler) a live display draws nothing until it stops, so there the same line is printed,
timestamped and flushed, when the study starts, at each trial's end and at least once a minute
(``tlsearch._progress``)."""

from __future__ import annotations

import time
from typing import Any, Callable

from ray.tune import Callback
from rich.console import Console
from rich.live import Live
from rich.text import Text

from tlsearch._progress import EVERY_S, Every, is_plain, say
from tlsearch.search.status import _short, best_by_condition


class LiveView(Callback):
    def __init__(self, total: int, metric: str, console: Console | None = None,
                 names: dict[str, str] | None = None, ft_size: Any = "", *,
                 clock: Callable[[], float] = time.monotonic, every: float = EVERY_S) -> None:
        """``names``: ``dataset/property`` -> label (``DataSpec.names``), to name the targets of a study with
        several as `tlsearch status` does; ``ft_size``: the FT size of a trial whose config has none (a study
        with one); ``clock`` and ``every``: the plain lines' every-minute rule."""
        self.total, self.metric = total, metric
        self.console = console or Console()
        self.names, self.ft_size = dict(names or {}), ft_size
        self.clock, self.every = clock, every
        self.t0 = clock()
        self.state: dict[str, str] = {}
        self.last: dict[str, dict[str, Any]] = {}
        # finished trials as status rows (condition and validation MAE): the best per condition, (target, FT
        # size), is status.best_by_condition's, the final table's rule
        self.rows: dict[str, dict[str, Any]] = {}
        self.live: Live | None = None
        self.plain: Every | None = None  # not a terminal: when the last plain line was printed
        self.paused: frozenset[str] = frozenset()  # successive halving: waiting at a rung for the bracket

    # Ray pickles the run config (callbacks included) into the experiment state: keep the terminal out of it
    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in ("live", "console", "clock", "plain")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        # defaults for a view pickled by an older tlsearch: no paused set, names or clock; its best was a dict
        # FT size -> value (older still: (value, Ray trial id) of any epoch)
        self.__dict__.update({"paused": frozenset(), "names": {}, "ft_size": "", "every": EVERY_S, "rows": {}}, **state)
        best = self.__dict__.pop("best", None)
        if isinstance(best, dict) and not self.rows:
            self.rows = {f"size {size}": _row(None, size, value) for size, value in best.items()}
        # (t0 was wall time in an older view; setup() starts it again)
        self.__dict__.update(live=None, console=Console(), clock=time.monotonic, plain=None, t0=time.monotonic())

    def setup(self, **info: Any) -> None:
        self.t0 = self.clock()
        if is_plain(self.console):  # a log: lines, not a live display that shows nothing until the end
            self.plain = Every(self.every, self.clock)
            self._say("started")
            return
        self.live = Live(self._render(), console=self.console, refresh_per_second=2, transient=False)
        self.live.start()

    def _render(self) -> Text:
        done = sum(1 for s in self.state.values() if s == "done")
        failed = sum(1 for s in self.state.values() if s == "failed")
        running = sum(1 for k, s in self.state.items() if s == "running" and k not in self.paused)
        paused = f", paused {len(self.paused)}" if self.paused else ""
        elapsed = self.clock() - self.t0
        finished = done + failed
        left = self.total - finished
        eta = ("" if left <= 0 or not running + len(self.paused) else
               f"  ETA {left * elapsed / finished / 60:.1f} min" if finished else "  ETA ?")
        return Text(f"trials {finished}/{self.total} (done {done}, running {running}{paused}, failed {failed})  "
                    f"best finished val MAE {self._best() or '-'}  "
                    f"elapsed {elapsed / 60:.1f} min{eta}")

    def _best(self) -> str:
        """Validation MAEs of different conditions are not comparable: the best finished trial per FT size, and
        per target too in a study with several, as the final table and `tlsearch status` group them."""
        best = best_by_condition(list(self.rows.values()))
        order = sorted(best, key=lambda c: (c[0], _size_order(str(c[1]))))
        if not order:
            return ""
        if not any(target for target, _ in order):
            return "per FT size " + ", ".join(f"{size}: {best[(t, size)]['value']:.4g}" for t, size in order)
        return "per target and FT size " + ", ".join(f"{t} at {size}: {best[(t, size)]['value']:.4g}"
                                                     for t, size in order)

    def _update(self) -> None:
        if self.live is not None:
            self.live.update(self._render())

    def _say(self, event: str = "") -> None:
        """A plain line (not a terminal): the time, what happened, the view's line."""
        if self.plain is None:
            return
        say(self.console, f"{time.strftime('%H:%M:%S')} progress: {event + ': ' if event else ''}"
                          f"{self._render().plain}")
        self.plain.mark()

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.state[trial.trial_id] = "running"
        self._update()

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        self.last[trial.trial_id] = result
        value = result.get(self.metric)
        if result.get("final") and value is not None:  # a finished trial's summary (mean over its repeats)
            config = trial.config or {}
            target = config.get("target")
            row = _row(_short(target, self.names) if target else None, config.get("ft_size", self.ft_size),
                       float(value))
            old = self.rows.get(trial.trial_id)
            if old is None or row["value"] < old["value"]:
                self.rows[trial.trial_id] = row
        self._update()

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        paused = frozenset(t.trial_id for t in trials if t.status == "PAUSED")
        if paused != self.paused:
            self.paused = paused
            self._update()
        if self.plain is not None and self.plain.due():  # Tune steps every 0.1-1 s: at least a line a minute
            self._say()

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.state[trial.trial_id] = "done"
        self._update()
        row, last = self.rows.get(trial.trial_id), self.last.get(trial.trial_id, {})
        if row is not None:
            ended = f"val MAE {row['value']:.4g}"
        else:  # the scheduler stopped it (its last epoch's value stands)
            epoch, value = last.get("epoch", last.get("training_iteration")), last.get(self.metric)
            ended = "stopped" + (f" at epoch {epoch}" if epoch is not None else "") + (
                f", val MAE {value:.4g}" if isinstance(value, (int, float)) else "")
        self._say(f"trial {trial.trial_id} ended ({self._condition(trial)}; {ended})")

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.state[trial.trial_id] = "failed"
        self.console.print(f"[red]trial {trial.trial_id} failed[/] (its error is in {trial.path}/error.txt)")
        self._update()
        self._say(f"trial {trial.trial_id} failed ({self._condition(trial)})")

    def _condition(self, trial: Any) -> str:
        config = getattr(trial, "config", None) or {}
        target = config.get("target")
        return (f"{_short(target, self.names)}, " if target else "") + f"FT size {config.get('ft_size', self.ft_size)}"

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        self._update()
        self._say("ended")
        self.stop()

    def stop(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None
            self.console.print()


def _row(target: str | None, size: Any, value: float) -> dict[str, Any]:
    """A finished trial as the status rows hold it, for status.best_by_condition."""
    return {"target": target, "ft_size": size, "value": value, "state": "complete"}


def _size_order(size: str) -> tuple[int, float, str]:
    return (0, float(size), "") if size.isdigit() else (1, 0.0, size)
