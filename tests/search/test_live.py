"""The live line follows the final table's rule: finished trials only, per FT size, no ETA once nothing is left."""

from __future__ import annotations

import io
import re
from types import SimpleNamespace

from rich.console import Console

from tlsearch.search.live import LiveView


def _trial(tid: str, size: int) -> SimpleNamespace:
    return SimpleNamespace(trial_id=tid, config={"ft_size": size}, path="/tmp")


def test_best_is_a_finished_trial_per_size_and_eta_goes_once_nothing_runs():
    view = LiveView(total=3, metric="val_mae", console=Console(file=io.StringIO()))
    a, b, c = _trial("a", 100), _trial("b", 800), _trial("c", 800)
    for t in (a, b):
        view.on_trial_start(0, [], t)
    view.on_trial_result(0, [], b, {"val_mae": 0.1515, "epoch": 1})  # an unfinished trial's epoch: not "best"
    line = view._render().plain
    assert "best finished val MAE -" in line and "0.1515" not in line and "ETA ?" in line, line
    view.on_trial_result(0, [], a, {"val_mae": 0.41, "final": True})
    view.on_trial_complete(0, [], a)
    view.on_trial_result(0, [], b, {"val_mae": 0.2807, "final": True})
    view.on_trial_complete(0, [], b)
    view.on_trial_start(0, [], c)
    line = view._render().plain
    assert "best finished val MAE per FT size 100: 0.41, 800: 0.2807" in line and "ETA" in line, line
    view.on_trial_result(0, [], c, {"val_mae": 0.35, "final": True})
    view.on_trial_complete(0, [], c)
    line = view._render().plain
    assert "800: 0.2807" in line and "ETA" not in line and "trials 3/3" in line, line


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _plain_view(total: int, clock: _Clock, names: dict | None = None) -> tuple[LiveView, io.StringIO]:
    buf = io.StringIO()  # not a terminal: a log file
    view = LiveView(total=total, metric="val_mae", console=Console(file=buf, width=60), names=names, clock=clock)
    view.setup()
    return view, buf


def test_not_a_terminal_prints_a_line_at_start_each_trial_end_and_every_minute_with_an_injected_clock():
    """Issue 26.3: a log (file, pipe, `ray job logs`) gets plain lines, never a live display that draws nothing
    until the end; between trial ends at least one line a minute, never more often than that."""
    clock = _Clock()
    view, buf = _plain_view(3, clock)
    lines = lambda: buf.getvalue().splitlines()  # noqa: E731
    assert len(lines()) == 1 and "progress: started: trials 0/3" in lines()[0], lines()
    a, b = _trial("a", 100), _trial("b", 800)
    for t in (a, b):
        view.on_trial_start(0, [], t)
    for step in range(59):  # Tune steps every 0.1-1 s: nothing new within the minute
        clock.now += 1
        view.on_step_end(step, [])
    assert len(lines()) == 1, lines()
    clock.now += 1  # a minute since the last line
    view.on_step_end(60, [])
    assert len(lines()) == 2 and "trials 0/3 (done 0, running 2, failed 0)" in lines()[1], lines()
    assert "elapsed 1.0 min" in lines()[1] and "ETA ?" in lines()[1], lines()
    clock.now += 30
    view.on_step_end(61, [])
    assert len(lines()) == 2, lines()  # 30 s since the last line
    # a trial's end: a line at once, whatever the clock; and the minute counts from it
    view.on_trial_result(0, [], a, {"val_mae": 0.41, "final": True})
    view.on_trial_complete(0, [], a)
    assert len(lines()) == 3, lines()
    assert "trial a ended (FT size 100; val MAE 0.41)" in lines()[2], lines()
    assert "trials 1/3 (done 1, running 1, failed 0)" in lines()[2] and "per FT size 100: 0.41" in lines()[2]
    assert "ETA 3.0 min" in lines()[2], lines()  # 2 left at 1.5 min per ended trial
    clock.now += 59
    view.on_step_end(62, [])
    assert len(lines()) == 3, lines()
    clock.now += 1
    view.on_step_end(63, [])
    assert len(lines()) == 4, lines()
    # a trial the scheduler stopped early, one that failed: a line each
    view.on_trial_result(0, [], b, {"val_mae": 0.5, "epoch": 2})
    view.on_trial_complete(0, [], b)
    assert "trial b ended (FT size 800; stopped at epoch 2, val MAE 0.5)" in lines()[4], lines()
    c = _trial("c", 800)
    view.on_trial_start(0, [], c)
    view.on_trial_error(0, [], c)
    assert any("trial c failed (FT size 800)" in x and "trials 3/3" in x for x in lines()[5:]), lines()
    view.on_experiment_end([])
    assert "progress: ended: trials 3/3 (done 2, running 0, failed 1)" in lines()[-1], lines()
    # every line whole: never wrapped at the console width (60 here)
    whole = [x for x in lines() if not x.startswith("trial c failed (its error is in")]
    assert all(re.match(r"\d\d:\d\d:\d\d progress: ", x) for x in whole), lines()


def test_several_targets_the_best_is_per_target_and_size_named_as_status_names_them():
    clock = _Clock()
    ref_a, ref_b = "emt:alloys?n=80&seed=0/bulk_modulus", "emt:alloys?n=80&seed=0/volume_per_atom"
    view, buf = _plain_view(4, clock, names={ref_a: "B (EMT)"})
    trials = [SimpleNamespace(trial_id=f"t{i}", config={"target": ref, "ft_size": 30}, path="/tmp")
              for i, ref in enumerate([ref_a, ref_a, ref_b])]
    for t, v in zip(trials, (0.5, 0.4, 0.02)):
        view.on_trial_start(0, [], t)
        view.on_trial_result(0, [], t, {"val_mae": v, "final": True})
        view.on_trial_complete(0, [], t)
    last = buf.getvalue().splitlines()[-1]
    assert "trial t2 ended (volume_per_atom, FT size 30; val MAE 0.02)" in last, last
    # one best per (target, size): B (EMT)'s 0.4 is not hidden behind volume_per_atom's smaller error
    assert "best finished val MAE per target and FT size B (EMT) at 30: 0.4, volume_per_atom at 30: 0.02" in last


def test_a_terminal_keeps_the_live_display_and_the_view_pickles_without_console_or_clock():
    import pickle

    view = LiveView(total=2, metric="val_mae", console=Console(file=io.StringIO(), force_terminal=True),
                    clock=_Clock())
    view.setup()
    assert view.live is not None and view.plain is None
    view.on_trial_result(0, [], _trial("a", 100), {"val_mae": 0.3, "final": True})
    view.stop()
    back = pickle.loads(pickle.dumps(view))
    assert back.rows == view.rows and "per FT size 100: 0.3" in back._render().plain
    # a view pickled by an older tlsearch (best: FT size -> value) restores its best
    old = {k: v for k, v in view.__getstate__().items() if k not in ("rows", "names", "every")}
    old["best"] = {"800": 0.25}
    restored = LiveView.__new__(LiveView)
    restored.__setstate__(old)
    assert "per FT size 800: 0.25" in restored._render().plain


def test_a_real_study_logging_to_a_file_prints_progress_between_the_start_and_the_final_table(tmp_path):
    """Issue 26.3: `tlsearch run > log` (and `ray job logs`, nohup, a scheduler) got nothing between the start
    lines and the final table. A real two-target study, stdout a file (no PYTHONUNBUFFERED: each line must be
    flushed by itself): a line as it starts, one per trial end, naming the target, the best per (target, size)."""
    import subprocess
    import sys
    import time

    import yaml

    from tests.search.test_atlas import A, B
    from tests.search.test_run import SMOKE, _env, _ray_stop

    env = _env(tmp_path)
    env.pop("PYTHONUNBUFFERED", None)
    data = yaml.safe_load(SMOKE.read_text())
    data["name"] = "live-log"
    data["data"] = {"targets": [A, B]}
    data["search"].update(strategy=["scratch"], ft_size=[30])  # (a range of FT lr: 4 distinct trials)
    data["budget"] = {"trials": 4, "max_epochs": 2, "pt_epochs": 1, "repeats": 1}
    data["scheduler"] = {"type": "none"}
    spec = tmp_path / "space.yaml"
    spec.write_text(yaml.safe_dump(data))
    log, err = tmp_path / "run.log", tmp_path / "run.err"
    seen_while_running = False
    try:
        with open(log, "w") as out, open(err, "w") as errors:
            proc = subprocess.Popen([sys.executable, "-m", "tlsearch.cli.main", "run", str(spec), "--storage",
                                     str(tmp_path / "exp")], stdout=out, stderr=errors, env=env)
            deadline = time.time() + 900
            while proc.poll() is None and time.time() < deadline:
                seen_while_running = seen_while_running or " progress: trial " in log.read_text()
                time.sleep(0.5)
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=60)
    finally:
        _ray_stop(env)
    text = log.read_text()
    assert proc.returncode == 0, text[-3000:] + err.read_text()[-3000:]
    lines = text.splitlines()
    start = next(i for i, x in enumerate(lines) if x.startswith("experiment: "))
    table = next(i for i, x in enumerate(lines) if "live-log: 4 of 4 trials" in x)
    progress = [x for x in lines if re.match(r"\d\d:\d\d:\d\d progress: ", x)]
    between = [x for x in lines[start:table] if re.match(r"\d\d:\d\d:\d\d progress: ", x)]
    assert progress == between and "progress: started: trials 0/4" in between[0], text
    assert "progress: ended: trials 4/4 (done 4, running 0, failed 0)" in between[-1], text
    ended = [x for x in between if " progress: trial " in x]
    assert len(ended) == 4 and all(" ended (" in x for x in ended), text
    # each names its condition (target label as `tlsearch status` names it, or the property), and the best is per
    # (target, size)
    assert sum("ended (B (EMT), FT size 30; val MAE " in x for x in ended) == 2, text
    assert sum("ended (volume_per_atom, FT size 30; val MAE " in x for x in ended) == 2, text
    assert re.search(r"best finished val MAE per target and FT size B \(EMT\) at 30: [\d.e-]+, "
                     r"volume_per_atom at 30: [\d.e-]+", between[-1]), between[-1]
    assert seen_while_running, "the first trial's line reached the file only when the run ended (not flushed)"
