"""Plain progress lines where stdout is not a terminal (issue 26.3): `tlsearch data prepare` and `tlsearch
pretrain` under `> log`, nohup, a scheduler or `ray job logs` printed nothing until they ended (Rich's bars draw
nothing there; pretrain's bar was transient, so not even then). The every-minute rule runs on an injected clock."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from types import SimpleNamespace

import yaml
from rich.console import Console

from tlsearch._progress import CountProgress, EpochLines, is_plain


class _Clock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


def _log() -> tuple[Console, io.StringIO]:
    buf = io.StringIO()
    return Console(file=buf, width=40), buf


def test_is_plain_for_files_and_dumb_terminals_not_for_terminals():
    assert is_plain(Console(file=io.StringIO()))
    assert not is_plain(Console(file=io.StringIO(), force_terminal=True))
    assert is_plain(Console(file=io.StringIO(), force_terminal=True, _environ={"TERM": "dumb"}))


def test_structures_a_line_per_tenth_and_one_a_minute_with_rate_and_eta():
    clock, (console, buf) = _Clock(), _log()
    lines = lambda: buf.getvalue().splitlines()  # noqa: E731
    progress = CountProgress(console, "graphs", clock=clock)
    progress(0, 10_000)  # the start: nothing built yet
    assert lines() == []
    for done in range(256, 1024, 256):  # 2.6 % a chunk, 10 s a chunk: below 10 % and a minute, no line
        clock.now += 10
        progress(done, 10_000)
    assert lines() == []
    clock.now += 10
    progress(1024, 10_000)  # past 10 %
    assert lines() == ["graphs: 1024/10000 structures (10 %), 25.6 structures/s, elapsed 0.7 min, ETA 5.8 min"]
    clock.now += 59
    progress(1280, 10_000)
    assert len(lines()) == 1
    clock.now += 1  # a minute since the last line, still below 20 %
    progress(1536, 10_000)
    assert len(lines()) == 2 and lines()[1].startswith("graphs: 1536/10000 structures (15 %)"), lines()
    clock.now += 5
    progress(2048, 10_000)  # 20 %
    assert len(lines()) == 3 and "(20 %)" in lines()[2], lines()
    clock.now += 5
    progress(10_000, 10_000)  # the end: a line, no ETA, never wrapped at the console width (40)
    assert len(lines()) == 4 and lines()[3].startswith("graphs: 10000/10000 structures (100 %)"), lines()
    assert "ETA" not in lines()[3]


def test_a_pack_found_whole_is_one_line():
    clock, (console, buf) = _Clock(), _log()
    CountProgress(console, "graphs", clock=clock)(30, 30)
    assert buf.getvalue().splitlines() == ["graphs: 30/30 structures (100 %), -, elapsed 0.0 min"]


def test_pretrain_a_line_per_epoch_and_one_a_minute_while_an_epoch_runs():
    clock, (console, buf) = _Clock(), _log()
    lines = lambda: buf.getvalue().splitlines()  # noqa: E731
    pt = EpochLines(console, "[1/1] finetune: FE", 3, clock=clock)
    assert lines() == ["[1/1] finetune: FE: loading or pre-training 3 epochs"]
    clock.now += 59
    pt.tick()
    assert len(lines()) == 1
    clock.now += 1
    pt.tick()
    assert lines()[1] == "[1/1] finetune: FE: loading or pre-training, elapsed 1.0 min"
    clock.now += 100
    pt.epoch(SimpleNamespace(epoch=1, train_loss=0.5, val_mae=0.1234, seconds=90.0, structures_per_s=40.0))
    assert lines()[2] == ("[1/1] finetune: FE: PT epoch 1/3  train loss 0.5000  val MAE 0.1234  90.0 s/epoch, "
                          "40.0 structures/s  elapsed 2.7 min  ETA 3.0 min"), lines()
    clock.now += 59.5
    pt.tick()
    assert len(lines()) == 3
    clock.now += 0.5
    pt.tick()
    assert lines()[3] == "[1/1] finetune: FE: PT epoch 2/3 running, elapsed 3.7 min"
    pt.epoch(SimpleNamespace(epoch=3, train_loss=0.4, val_mae=0.1, seconds=90.0, structures_per_s=40.0))
    assert "PT epoch 3/3" in lines()[4] and "ETA" not in lines()[4]


def _to_file(tmp_path, *args: str) -> str:
    """The CLI with stdout a file, as under `> log` (no PYTHONUNBUFFERED: each line is flushed by itself)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    log = tmp_path / "out.log"
    with open(log, "w") as fh:
        proc = subprocess.run([sys.executable, "-m", "tlsearch.cli.main", *args], stdout=fh,
                              stderr=subprocess.PIPE, text=True, timeout=600, env=env)
    text = log.read_text()
    assert proc.returncode == 0, text + proc.stderr
    return text


def test_data_prepare_to_a_file_logs_its_steps(tmp_path):
    text = _to_file(tmp_path, "data", "prepare", "emt:alloys?n=30&seed=3")
    lines = text.splitlines()
    assert lines[0] == "loading emt:alloys?n=30&seed=3 ...", text
    assert re.search(r"^graphs: 30/30 structures \(100 %\), [\d.]+ structures/s, elapsed [\d.]+ min$", text, re.M), text


def test_pretrain_to_a_file_logs_each_epoch(tmp_path):
    spec = {"name": "pt",
            "data": {"target": {"dataset": "emt:alloys?n=40&seed=0", "property": "bulk_modulus"},
                     "pretrain_sources": [{"dataset": "emt:alloys?n=40&seed=1",
                                           "property": "formation_energy_per_atom"}]},
            "search": {"strategy": ["scratch", "finetune"], "freeze": ["all_unfrozen"], "ft_size": [20],
                       "architecture": {"alignn_layers": 1, "gcn_layers": 1, "hidden_features": 16,
                                        "embedding_features": 8}},
            "budget": {"trials": 2, "max_epochs": 1, "pt_epochs": 2}}
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(spec))
    text = _to_file(tmp_path, "pretrain", str(path))
    lines = text.splitlines()
    epochs = [i for i, x in enumerate(lines) if re.search(r": PT epoch \d/2  train loss [\d.]+  val MAE ", x)]
    assert len(epochs) == 2, text
    assert "ETA " in lines[epochs[0]] and "structures/s" in lines[epochs[0]], text
    trained = next(i for i, x in enumerate(lines) if "trained 2 epochs" in x)
    assert epochs[-1] < trained, text
