"""Help screens as a user sees them (a subprocess with the installed typer, which bundles its own click): a flag
shows as a flag, never with a value type as if it took one (issue 26.6: `tlsearch --help` showed
`--version <bool>`)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest


def _help(*args: str) -> str:
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"}
    proc = subprocess.run([sys.executable, "-m", "tlsearch.cli.main", *args, "--help"], capture_output=True,
                          text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def _row(text: str, option: str) -> str:
    (row,) = [line for line in text.splitlines() if re.search(rf"(^|[\s│|]){re.escape(option)}(\s|$)", line)]
    return row


@pytest.mark.parametrize("args, flags, valued", [
    ((), ["--version", "--help"], []),
    (("validate",), ["--data", "--help"], []),
    (("data", "describe"), ["--graphs", "--json"], [("--test-fraction", "<float>"), ("--cache", "<path>")]),
    (("run",), ["--help"], [("--name", "<str>"), ("--address", "<str>")]),
])
def test_a_flag_shows_no_value_type_and_an_option_with_a_value_keeps_its_type(args, flags, valued):
    text = _help(*args)
    assert "<bool>" not in text, text
    for flag in flags:
        assert re.search(rf"{re.escape(flag)}\s+[A-Z]", _row(text, flag)), _row(text, flag)  # then its help
    for option, kind in valued:
        assert kind in _row(text, option), _row(text, option)


def test_version_flag_prints_the_version():
    proc = subprocess.run([sys.executable, "-m", "tlsearch.cli.main", "--version"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0 and re.fullmatch(r"tlsearch \S+\n", proc.stdout), proc.stdout + proc.stderr
