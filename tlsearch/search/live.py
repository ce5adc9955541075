"""A compact live view of a running study (trials done / running / failed, best so far, ETA), in place of
Ray's wall of text (the final per-trial table is status.trials_table: `tlsearch status` must not load Ray)."""

from __future__ import annotations

import time
from typing import Any

from ray.tune import Callback
from rich.console import Console
from rich.live import Live
from rich.text import Text


class LiveView(Callback):
    def __init__(self, total: int, metric: str, console: Console | None = None) -> None:
        self.total, self.metric = total, metric
        self.console = console or Console()
        self.t0 = time.time()
        self.state: dict[str, str] = {}
        self.last: dict[str, dict[str, Any]] = {}
        self.best: dict[str, float] = {}  # FT size -> best validation MAE of a finished trial (the table's rule)
        self.live: Live | None = None
        self.paused: frozenset[str] = frozenset()  # successive halving: waiting at a rung for the bracket

    # Ray pickles the run config (callbacks included) into the experiment state: keep the terminal out of it
    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in ("live", "console")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update({"paused": frozenset()}, **state)  # no paused set in a view pickled by an older tlsearch
        if not isinstance(self.best, dict):  # an older tlsearch kept (value, Ray trial id) of any epoch
            self.best = {}
        self.__dict__.update(live=None, console=Console())

    def setup(self, **info: Any) -> None:
        self.t0 = time.time()
        self.live = Live(self._render(), console=self.console, refresh_per_second=2, transient=False)
        self.live.start()

    def _render(self) -> Text:
        done = sum(1 for s in self.state.values() if s == "done")
        failed = sum(1 for s in self.state.values() if s == "failed")
        running = sum(1 for k, s in self.state.items() if s == "running" and k not in self.paused)
        paused = f", paused {len(self.paused)}" if self.paused else ""
        elapsed = time.time() - self.t0
        finished = done + failed
        left = self.total - finished
        eta = ("" if left <= 0 or not running + len(self.paused) else
               f"  ETA {left * elapsed / finished / 60:.1f} min" if finished else "  ETA ?")
        # validation MAEs of different FT sizes are not comparable: the best finished trial per size, as the table
        best = ", ".join(f"{size}: {v:.4g}" for size, v in sorted(self.best.items(), key=lambda kv: _size_order(kv[0])))
        return Text(f"trials {finished}/{self.total} (done {done}, running {running}{paused}, failed {failed})  "
                    f"best finished val MAE {'per FT size ' + best if best else '-'}  "
                    f"elapsed {elapsed / 60:.1f} min{eta}")

    def _update(self) -> None:
        if self.live is not None:
            self.live.update(self._render())

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.state[trial.trial_id] = "running"
        self._update()

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        self.last[trial.trial_id] = result
        value = result.get(self.metric)
        if result.get("final") and value is not None:  # a finished trial's summary (mean over its repeats)
            size = str(trial.config.get("ft_size", ""))
            self.best[size] = min(float(value), self.best.get(size, float("inf")))
        self._update()

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        paused = frozenset(t.trial_id for t in trials if t.status == "PAUSED")
        if paused != self.paused:
            self.paused = paused
            self._update()

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.state[trial.trial_id] = "done"
        self._update()

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.state[trial.trial_id] = "failed"
        self.console.print(f"[red]trial {trial.trial_id} failed[/] (its error is in {trial.path}/error.txt)")
        self._update()

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        self._update()
        self.stop()

    def stop(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None
            self.console.print()


def _size_order(size: str) -> tuple[int, float, str]:
    return (0, float(size), "") if size.isdigit() else (1, 0.0, size)
