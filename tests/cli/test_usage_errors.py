"""Usage mistakes, run as a user runs them (a subprocess with the installed typer and click): each prints
one line naming the command, the problem and what to do, exits 2, and shows no traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest

CASES = [
    ([], "tlsearch: no command given; commands: train, validate, run, resume, status, report, pretrain, predict, "
         "export, data, models"),
    (["nope"], "tlsearch: No such command 'nope'; commands: train,"),
    (["run"], "tlsearch run: Missing argument 'spec'; usage: tlsearch run [OPTIONS] SPEC; see 'tlsearch run --help'"),
    (["run", "x.yaml", "--bogus"], "tlsearch run: No such option: --bogus; usage: tlsearch run [OPTIONS] SPEC"),
    (["resume"], "tlsearch resume: Missing argument 'experiment'"),
    (["report", "a", "b"], "tlsearch report: Got unexpected extra argument(s) (b)"),
    (["data"], "tlsearch data: no command given; commands: list, prepare, describe"),
    (["data", "nope"], "tlsearch data: No such command 'nope'; commands: list, prepare, describe"),
    (["data", "describe", "x", "--test-fraction", "abc"], "tlsearch data describe: Invalid value for '--test-fraction'"),
    (["models"], "tlsearch models: no command given; commands: list, show, export, import"),
    (["models", "show"], "tlsearch models show: Missing argument 'key'"),
    (["pretrain"], "tlsearch pretrain: Missing argument"),
    (["train", "--epochs", "3"], "tlsearch train: No such option: --epochs"),
    (["predict", "exp"], "tlsearch predict: Missing argument 'structures'; usage: tlsearch predict [OPTIONS] PATH "
                         "STRUCTURES"),
    (["export", "exp"], "tlsearch export: Missing argument 'out_dir'"),
]


def _tlsearch(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tlsearch.cli.main", *args], capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize("args,line", CASES, ids=[" ".join(a) or "(none)" for a, _ in CASES])
def test_usage_mistake_is_one_line_and_exit_2(args, line):
    proc = _tlsearch(args)
    out = (proc.stdout + proc.stderr).strip()
    assert proc.returncode == 2, out
    assert "Traceback" not in out and len(out.splitlines()) == 1, out
    assert out.startswith("error: " + line), out


def test_help_and_version_still_work():
    assert _tlsearch(["--version"]).stdout.startswith("tlsearch ")
    proc = _tlsearch(["run", "--help"])
    assert proc.returncode == 0 and "Run a study" in proc.stdout
