"""Plain progress lines for output that is not a terminal: a log file (``make run > log``), a pipe, ``ray job
logs -f``, nohup, a batch scheduler. Rich's live displays (``Live``, ``Progress``, ``Console.status``) draw
nothing there until they stop, so a long run's log stayed silent for its whole length. Here each event that
matters prints one whole line (never wrapped; Rich flushes every print), and at least one line a minute shows
the run is alive. A terminal keeps the live displays.

Clocks are injected (``clock=``) so that the every-minute rule is tested without sleeping.
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator

from rich.console import Console

EVERY_S = 60.0  # at least one line a minute while something runs


def is_plain(console: Console) -> bool:
    """True where a live display would show nothing until it ends: not a terminal, or a dumb one."""
    return not console.is_terminal or console.is_dumb_terminal


def say(console: Console, line: str) -> None:
    """One plain line, whole (no wrapping at the console width, no markup), flushed."""
    console.print(line, markup=False, highlight=False, soft_wrap=True)


def plain_text(markup: str) -> str:
    """Rich markup as the text it shows (a title built for the live display, for a plain line)."""
    from rich.text import Text

    return Text.from_markup(markup).plain


def minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min"


def eta(done: float, total: float, elapsed: float) -> str:
    """``ETA x min`` at the rate so far; ``ETA ?`` before anything is done; empty once all is done."""
    if done >= total:
        return ""
    if done <= 0 or elapsed <= 0:
        return "ETA ?"
    return f"ETA {minutes((total - done) * elapsed / done)}"


class Every:
    """The every-minute rule: :meth:`due` once ``seconds`` have passed since the last line (:meth:`mark`)."""

    def __init__(self, seconds: float = EVERY_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds, self.clock = seconds, clock
        self.last = clock()

    def due(self) -> bool:
        return self.clock() - self.last >= self.seconds

    def mark(self) -> None:
        self.last = self.clock()


@contextmanager
def heartbeat(tick: Callable[[], None], period: float = 1.0) -> Iterator[None]:
    """Call ``tick`` every ``period`` seconds on a daemon thread while the block runs (for work with no
    callback of its own: parsing a dataset, a long PT epoch); ``tick`` decides with an :class:`Every` whether
    a line is due."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(period):
            try:
                tick()
            except Exception:  # noqa: BLE001 - a progress line must never break the work it reports on
                pass

    thread = threading.Thread(target=loop, name="tlsearch-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)


@contextmanager
def status(console: Console, text: str, clock: Callable[[], float] = time.monotonic) -> Iterator[None]:
    """``console.status(text)`` on a terminal; elsewhere the text as a line, then ``... still running`` every
    minute until the block ends."""
    if not is_plain(console):
        with console.status(text):
            yield
        return
    t0, every = clock(), Every(clock=clock)
    say(console, text)

    def tick() -> None:
        if every.due():
            say(console, f"{text.rstrip(' .')}: still running, {minutes(clock() - t0)}")
            every.mark()

    with heartbeat(tick):
        yield


class CountProgress:
    """Plain lines for a count of items (structures): one at every ``step`` of the total (10 %) and at least
    one a minute, each with the count, the rate and the ETA; the last one at the end. Call with
    ``(done, total)`` as the work advances (GraphCache's ``progress``)."""

    def __init__(self, console: Console, label: str, unit: str = "structures", step: float = 0.1,
                 clock: Callable[[], float] = time.monotonic, every: float = EVERY_S) -> None:
        self.console, self.label, self.unit, self.step, self.clock = console, label, unit, step, clock
        self.t0 = clock()
        self.every = Every(every, clock)
        self.next_step = 0.0  # the fraction of the total the next step line waits for
        self.first: int | None = None  # items already done at the first call (reused from another pack)

    def __call__(self, done: int, total: int) -> None:
        if self.first is None:
            self.first = done
            self.next_step = (int(done / total / self.step) + 1) * self.step if total else 1.0
            if done < total:
                return  # the start: nothing built yet
        frac = done / total if total else 1.0
        if frac + 1e-9 < self.next_step and done < total and not self.every.due():
            return
        while self.next_step <= frac + 1e-9:
            self.next_step += self.step
        self.every.mark()
        elapsed = self.clock() - self.t0
        built = done - (self.first or 0)
        rate = f"{built / elapsed:.1f} {self.unit}/s" if elapsed > 0 else "-"
        left = eta(built, total - (self.first or 0), elapsed)
        say(self.console, f"{self.label}: {done}/{total} {self.unit} ({100 * frac:.0f} %), {rate}, "
                          f"elapsed {minutes(elapsed)}" + (f", {left}" if left else ""))


class EpochLines:
    """Plain lines for training epochs (``tlsearch pretrain``): one per epoch (:meth:`epoch`, an engine
    ``EpochMetrics``) with its losses, rate, the elapsed time and the ETA at the epochs' own pace (loading
    excluded), and, from :meth:`tick` (a :func:`heartbeat`), one a minute while an epoch or the loading before
    the first one runs."""

    def __init__(self, console: Console, title: str, epochs: int, clock: Callable[[], float] = time.monotonic,
                 every: float = EVERY_S) -> None:
        self.console, self.title, self.epochs, self.clock = console, title, epochs, clock
        self.t0, self.every = clock(), Every(every, clock)
        self.done, self.trained_s = 0, 0.0
        say(console, f"{title}: loading or pre-training {epochs} epochs")

    def epoch(self, em: Any) -> None:
        self.done = int(em.epoch)
        self.trained_s += float(em.seconds)
        left = eta(self.done, self.epochs, self.trained_s)
        say(self.console, f"{self.title}: PT epoch {self.done}/{self.epochs}  train loss {em.train_loss:.4f}  "
                          f"val MAE {em.val_mae:.4g}  {em.seconds:.1f} s/epoch, {em.structures_per_s:.1f} "
                          f"structures/s  elapsed {minutes(self.clock() - self.t0)}" + (f"  {left}" if left else ""))
        self.every.mark()

    def tick(self) -> None:
        if not self.every.due():
            return
        doing = (f"PT epoch {self.done + 1}/{self.epochs} running" if self.done else "loading or pre-training")
        say(self.console, f"{self.title}: {doing}, elapsed {minutes(self.clock() - self.t0)}")
        self.every.mark()
