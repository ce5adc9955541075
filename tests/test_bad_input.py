"""Bad input through the real command line (``python -m tlsearch.cli.main`` in a subprocess, as a user runs it):
every mistake exits with code 2, names the field or the file, gives the fix hint where the code has one, and
never prints a traceback.

The full table of spec mistakes (45 cases) and a hypothesis fuzz run against ``load_spec`` in
tests/search/test_spec.py (``BAD``, ``test_fuzz_*``); the data sources' own checks are in tests/data/ and
tests/cli/test_data_cmd.py. Here one representative per kind of spec mistake goes through the CLI, plus what
only the CLI sees: paths that are not spec files, directories that are not experiments, broken datasets,
and datasets a spec names that do not exist (``tlsearch validate`` does not resolve datasets; ``tlsearch run``
must reject them before it starts Ray).

The CLI calls are independent, so the module runs the selected ones concurrently before the first test.
"""

from __future__ import annotations

import copy
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tlsearch import errors

ROOT = Path(__file__).resolve().parents[1]
SMOKE = yaml.safe_load((ROOT / "search_spaces" / "smoke.yaml").read_text())

CU_POSCAR = "Cu\n1.0\n0.0 1.805 1.805\n1.805 0.0 1.805\n1.805 1.805 0.0\nCu\n1\ndirect\n0.0 0.0 0.0\n"
SI_POSCAR = ("Si\n1.0\n0.0 2.715 2.715\n2.715 0.0 2.715\n2.715 2.715 0.0\nSi\n2\ndirect\n"
             "0.0 0.0 0.0\n0.25 0.25 0.25\n")
GARBAGE_POSCAR = "this is not a POSCAR\n"
BINARY = bytes(range(256)) * 4
# a spec that passes `validate` and needs almost no data: `run` cases change one field of it
TINY = {"name": "tiny", "data": {"target": {"dataset": "emt:alloys?n=12&seed=0", "property": "bulk_modulus"}},
        "search": {"strategy": ["scratch"], "ft_size": [8]}, "budget": {"trials": 1, "max_epochs": 1},
        "tracking": {"mode": "disabled"}}
NOT_EXPERIMENT = ("not a tlsearch experiment directory (no spec.json)",
                  "fix: pass the directory that `tlsearch run` printed")


# ---------------------------------------------------------------------------------------------------------
# building the inputs: each returns the CLI arguments; "{d}" in a needle is the case's directory


def smoke_with(**changes) -> dict:
    d = copy.deepcopy(SMOKE)
    for key, value in changes.items():
        section, _, field = key.partition("__")
        d[section][field] = value
    return d


def tiny_with(section: str, **kv) -> dict:
    d = copy.deepcopy(TINY)
    d.setdefault(section, {}).update(kv)
    return d


def spec_file(content: dict | str | bytes, name: str = "space.yaml") -> Callable[[Path], Path]:
    def make(d: Path) -> Path:
        path = d / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content if isinstance(content, str) else yaml.safe_dump(content, sort_keys=False))
        return path
    return make


def folder(csv: str | bytes | None, files: dict[str, str | bytes], name: str = "crystals") -> Callable[[Path], Path]:
    """An ALIGNN-layout directory: structure files plus id_prop.csv (None: no id_prop.csv at all)."""
    def make(d: Path) -> Path:
        root = d / name
        root.mkdir()
        for file, text in files.items():
            (root / file).write_bytes(text if isinstance(text, bytes) else text.encode())
        if csv is not None:
            (root / "id_prop.csv").write_bytes(csv if isinstance(csv, bytes) else csv.encode())
        return root
    return make


def validate(make):
    return lambda d: ["validate", str(make(d))]


def run(make):
    return lambda d: ["run", str(make(d)), "--storage", str(d / "exp")]


def data(command: str, make):
    return lambda d: ["data", command, f"folder:{make(d)}"]


def run_on_folder(csv: str, files: dict[str, str], prop: str):
    """`tlsearch run` with a spec whose target is a folder dataset."""
    def args(d: Path) -> list[str]:
        root = folder(csv, files)(d)
        spec = tiny_with("data", target={"dataset": f"folder:{root}", "property": prop})
        return run(spec_file(spec))(d)
    return args


def experiment_dir(files: dict[str, str | bytes]):
    def make(d: Path) -> Path:
        root = d / "exp" / "study"
        root.mkdir(parents=True)
        for name, text in files.items():
            (root / name).write_bytes(text if isinstance(text, bytes) else text.encode())
        return root
    return make


def cli(command: str, make):
    return lambda d: [command, str(make(d))]


def existing_experiment(d: Path) -> list[str]:
    (d / "exp" / "tiny").mkdir(parents=True)
    (d / "exp" / "tiny" / "optuna.journal").write_text("")
    return run(spec_file(TINY))(d)


# ---------------------------------------------------------------------------------------------------------
# the table


@dataclass(frozen=True)
class Case:
    id: str
    args: Callable[[Path], list[str]]
    needles: tuple[str, ...]  # must all be in stderr (whitespace-normalised); "{d}" = the case directory
    code: int = 2
    stdout: tuple[str, ...] = ()  # must all be in stdout


GOOD = {"a.vasp": CU_POSCAR, "b.vasp": SI_POSCAR}
CASES = [
    # --- spec files (one per kind; the full table is tests/search/test_spec.py::BAD)
    Case("validate-malformed-yaml", validate(spec_file("name: x\ndata: {target: [unclosed\n")),
         ("{d}/space.yaml: not valid YAML", "line 2")),
    Case("validate-wrong-type", validate(spec_file(smoke_with(budget__trials="many"))),
         ("{d}/space.yaml: budget.trials:", "valid integer", "'many'")),
    Case("validate-out-of-range", validate(spec_file(smoke_with(resources__max_concurrent=0))),
         ("{d}/space.yaml: resources.max_concurrent:", "greater than or equal to 1")),
    Case("validate-unknown-key", validate(spec_file(smoke_with(search__colour="red"))),
         ("{d}/space.yaml: search.colour: Extra inputs are not permitted",)),
    Case("validate-missing-file", lambda d: ["validate", str(d / "nope.yaml")],
         ("{d}/nope.yaml: cannot read (No such file or directory)", "fix: give the path of a space.yaml")),
    Case("validate-directory", lambda d: ["validate", str(d)],
         ("{d}: cannot read (Is a directory)", "fix: give the path of a space.yaml")),
    Case("validate-binary-file", validate(spec_file(BINARY)),
         ("{d}/space.yaml: not a text file", "fix: give the path of a space.yaml")),
    Case("run-malformed-yaml", run(spec_file("name: [x\n")), ("{d}/space.yaml: not valid YAML",)),
    # --- experiment directories
    Case("status-empty-dir", cli("status", experiment_dir({})), ("{d}/exp/study:", *NOT_EXPERIMENT)),
    Case("resume-dir-without-spec", cli("resume", experiment_dir({"notes.txt": "hello"})),
         ("{d}/exp/study:", *NOT_EXPERIMENT)),
    Case("status-on-a-file", cli("status", spec_file(TINY)), ("{d}/space.yaml:", *NOT_EXPERIMENT)),
    Case("status-spec-json-not-json", cli("status", experiment_dir({"spec.json": "garbage\n"})),
         ("{d}/exp/study/spec.json:", "not a valid experiment spec", "fix:")),
    Case("resume-spec-json-wrong-fields", cli("resume", experiment_dir({"spec.json": '{"name": 3}'})),
         ("{d}/exp/study/spec.json:", "name", "data", "fix:")),
    Case("status-spec-json-binary", cli("status", experiment_dir({"spec.json": BINARY})),
         ("{d}/exp/study/spec.json:", "fix:")),
    # --- folder datasets
    # (a missing id_prop.csv; rich prints the message: text in [brackets] must reach the terminal as written)
    Case("data-dir-name-with-brackets", data("describe", folder(None, GOOD, name="set[v2]")),
         ("{d}/set[v2]/id_prop.csv not found", "expected layout")),
    Case("data-id-prop-empty", data("describe", folder("", GOOD)),
         ("{d}/crystals/id_prop.csv: id_prop file is empty", "expected layout")),
    Case("data-id-prop-header-only", data("describe", folder("file,band_gap\n", GOOD)),
         ("folder:{d}/crystals: no usable records", "0 entries")),
    Case("data-id-prop-binary", data("prepare", folder(BINARY, GOOD)),
         ("{d}/crystals/id_prop.csv: cannot read id_prop file", "expected layout")),
    Case("data-all-structures-garbage",
         data("prepare", folder("a.vasp,1.0\nb.vasp,2.0\n", {"a.vasp": GARBAGE_POSCAR, "b.vasp": BINARY})),
         ("folder:{d}/crystals: no usable records", "unparsable structure", "a.vasp", "b.vasp")),
    Case("data-all-targets-nan", data("describe", folder("a.vasp,nan\nb.vasp,NaN\n", GOOD)),
         ("folder:{d}/crystals: no usable records", "no finite target", "a.vasp")),
    Case("data-all-files-missing", data("describe", folder("x.vasp,1\ny.vasp,2\n", GOOD)),
         ("folder:{d}/crystals: no usable records", "x.vasp", "not found")),
    # one garbage POSCAR among good ones: the dataset is used, the bad file is skipped and named
    Case("data-one-garbage-poscar",
         data("prepare", folder("a.vasp,1.0\nb.vasp,2.0\nbad.vasp,3.0\n", {**GOOD, "bad.vasp": GARBAGE_POSCAR})),
         (), code=0, stdout=("2 records, 1 skipped", "bad.vasp: unparsable structure")),
    # --- datasets a spec names: `validate` does not load data, `run` must reject them before Ray starts
    Case("run-unknown-dataset",
         run(spec_file(tiny_with("search", strategy=["scratch", "finetune"]) | {"data": {
             **TINY["data"], "pretrain_sources": [{"dataset": "emt:alloyz", "property": "bulk_modulus"}]}})),
         ("{d}/space.yaml: data.pretrain_sources.0:", "unknown dataset 'alloyz'", "valid datasets: alloys")),
    Case("run-unknown-property",
         run(spec_file(tiny_with("data", target={"dataset": "emt:alloys?n=12", "property": "bulk_modulu"}))),
         ("{d}/space.yaml: data.target:", "unknown property 'bulk_modulu'", "valid properties:", "bulk_modulus")),
    Case("run-unknown-source",
         run(spec_file(tiny_with("data", eval_sets=[{"dataset": "emt:alloys?n=12", "property": "bulk_modulus"},
                                                    {"dataset": "mp:2024", "property": "band_gap"}]))),
         ("{d}/space.yaml: data.eval_sets.1:", "unknown source 'mp'", "valid sources:")),
    Case("run-target-column-all-nan",
         run_on_folder("file,gap,volume\na.vasp,nan,1.0\nb.vasp,,2.0\n", GOOD, "gap"),
         ("{d}/space.yaml: data.target:", "no record has a finite value of 'gap'")),
    Case("run-target-all-structures-garbage",
         run_on_folder("a.vasp,1.0\nb.vasp,2.0\n", {"a.vasp": GARBAGE_POSCAR, "b.vasp": GARBAGE_POSCAR}, "target"),
         ("{d}/space.yaml: data.target:", "no usable records", "a.vasp")),
    Case("run-missing-folder",
         run(spec_file(tiny_with("data", target={"dataset": "folder:/no/such/crystals", "property": "target"}))),
         ("{d}/space.yaml: data.target:", "/no/such/crystals does not exist", "expected layout")),
    Case("run-experiment-exists", existing_experiment,
         ("{d}/exp/tiny: an experiment of this name already exists", "fix: continue it with `tlsearch resume")),
]
BY_ID = {c.id: c for c in CASES}
assert len(BY_ID) == len(CASES), "case ids must be unique"


# ---------------------------------------------------------------------------------------------------------
# running them


@dataclass
class Outcome:
    dir: Path
    ray_tmp: Path
    proc: subprocess.CompletedProcess


def _run_case(case: Case, base: Path, ray_base: Path) -> Outcome:
    d = base / case.id
    d.mkdir()
    ray_tmp = ray_base / str(CASES.index(case))
    ray_tmp.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "RAY_"))}
    env.update(TLSEARCH_CACHE=str(d / "cache"), HOME=str(d / "home"), RAY_TMPDIR=str(ray_tmp),
               PYTHONUNBUFFERED="1", WANDB_MODE="disabled")
    (d / "home").mkdir()
    args = case.args(d)
    proc = subprocess.run([sys.executable, "-m", "tlsearch.cli.main", *args], env=env, capture_output=True,
                          text=True, timeout=240, cwd=d)
    return Outcome(d, ray_tmp, proc)


@pytest.fixture(scope="module")
def outcomes(request, tmp_path_factory):
    """Run every selected case's CLI call concurrently (each in its own directory, cache and HOME)."""
    wanted = [item.callspec.params["case"] for item in request.session.items
              if item.module is request.module and "case" in getattr(getattr(item, "callspec", None), "params", {})]
    base = tmp_path_factory.mktemp("bad")
    ray_base = Path(tempfile.mkdtemp(prefix="tlsbad", dir="/tmp"))  # short: Ray's socket paths are limited
    try:
        with ThreadPoolExecutor(max_workers=3) as pool:
            yield dict(zip([c.id for c in wanted], pool.map(lambda c: _run_case(c, base, ray_base), wanted)))
    finally:
        shutil.rmtree(ray_base, ignore_errors=True)


def _flat(text: str) -> str:
    return " ".join(text.split())


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in CASES])
def test_bad_input_exits_cleanly(outcomes, case):
    out = outcomes[case.id]
    proc = out.proc
    shown = f"exit {proc.returncode}\n--- stdout\n{proc.stdout[-3000:]}\n--- stderr\n{proc.stderr[-3000:]}"
    assert proc.returncode == case.code, shown
    assert "Traceback" not in proc.stdout and "Traceback" not in proc.stderr, shown
    err, stdout = _flat(proc.stderr), _flat(proc.stdout)
    for needle in case.needles:
        assert needle.replace("{d}", str(out.dir)) in err, f"{needle!r} not in stderr\n{shown}"
    for needle in case.stdout:
        assert needle.replace("{d}", str(out.dir)) in stdout, f"{needle!r} not in stdout\n{shown}"
    if case.code == 2:
        assert proc.stderr.lstrip().startswith("error:") and "errors.pydantic.dev" not in proc.stderr, shown
    if case.id.startswith("run-"):
        # rejected before Ray: no Ray session, no dashboard, and no experiment directory left behind
        assert not list(out.ray_tmp.glob("*/session_*")) and not list(out.ray_tmp.glob("session_*")), shown
        assert "Ray dashboard" not in proc.stdout, shown
        if case.id != "run-experiment-exists":
            assert not (out.dir / "exp").exists(), shown


# ---------------------------------------------------------------------------------------------------------
# errors cross process boundaries: Ray pickles a trial's exception to the driver and copies it to re-raise
# it; an error class that cannot be rebuilt turns "unknown property 'x'" into "TypeError: __init__() missing
# 2 required positional arguments" in `tlsearch status`


ERRORS = [
    errors.UserInputError("space.yaml: budget.trials: bad"),
    errors.UnknownChoiceError("property", "gapp", ["band_gap", "e_form"], where="emt:alloys"),
    errors.UnknownChoiceError("source", "mp", ["emt", "folder"]),
    errors.BadReferenceError("dataset reference 'x' must look like 'source:dataset'"),
    errors.EmptyDatasetError("folder:/d: no usable records"),
    errors.DataFileError("/d/id_prop.csv: id_prop file is empty"),
    errors.SourceUnavailableError("could not download; fix: ..."),
    errors.SampleSizeError("sample of 10 from a pool of 5"),
]


@pytest.mark.parametrize("exc", ERRORS, ids=lambda e: f"{type(e).__name__}-{str(e)[:12]}")
@pytest.mark.parametrize("rebuild", [lambda e: pickle.loads(pickle.dumps(e)), copy.copy, copy.deepcopy],
                         ids=["pickle", "copy", "deepcopy"])
def test_user_errors_survive_pickle_and_copy(exc, rebuild):
    again = rebuild(exc)
    assert type(again) is type(exc) and str(again) == str(exc)
    assert again.exit_code == 2 and vars(again) == vars(exc)


def test_unknown_choice_message_lists_the_choices():
    msg = str(errors.UnknownChoiceError("property", "gapp", ["e_form", "band_gap"], where="emt:alloys"))
    assert msg == "emt:alloys: unknown property 'gapp'; valid properties: band_gap, e_form"
    assert str(errors.UnknownChoiceError("source", "mp", [])) == "unknown source 'mp'; valid sources: (none)"


def test_validate_with_data_names_an_unknown_property(tmp_path):
    spec = yaml.safe_load((ROOT / "search_spaces" / "smoke.yaml").read_text())
    spec["data"]["target"]["property"] = "bulk_modulus_typo"
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(spec))
    env = dict(os.environ, TLSEARCH_CACHE=str(tmp_path / "cache"))
    plain = subprocess.run([sys.executable, "-m", "tlsearch.cli.main", "validate", str(path)], env=env,
                           capture_output=True, text=True, timeout=120)
    assert plain.returncode == 0  # the spec itself is well formed; the data is only checked with --data
    proc = subprocess.run([sys.executable, "-m", "tlsearch.cli.main", "validate", str(path), "--data"], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "data.target" in proc.stderr and "bulk_modulus_typo" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout


@pytest.mark.parametrize("size,strategy,field", [(200, ["scratch", "finetune"], "data.pretrain_sources.0"),
                                                 (200, ["scratch", "mpt"], "all of data.mpt_properties"),
                                                 (50, ["scratch", "finetune", "mpt"], None)])
def test_validate_with_data_checks_the_pt_sample_against_each_source(tmp_path, size, strategy, field):
    """A PT sample larger than a source's structures outside its test set failed every transfer trial at PT
    time (atlas_quickstart's first run: 1500 of eij_max's 948); `validate --data` says so before the study."""
    spec = yaml.safe_load((ROOT / "search_spaces" / "smoke.yaml").read_text())
    spec["data"]["pt_sample_size"] = size  # the EMT PT set has 120 structures, ~96 outside its test split
    spec["search"]["strategy"] = strategy
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(spec))
    env = dict(os.environ, TLSEARCH_CACHE=str(tmp_path / "cache"))
    proc = subprocess.run([sys.executable, "-m", "tlsearch.cli.main", "validate", str(path), "--data"], env=env,
                          capture_output=True, text=True, timeout=300)
    if field is None:
        assert proc.returncode == 0, proc.stderr
        return
    assert proc.returncode == 2 and "Traceback" not in proc.stderr + proc.stdout, proc.stderr
    assert f"data.pt_sample_size: {size} is more than the" in proc.stderr and field in proc.stderr, proc.stderr
    assert "fix: data.pt_sample_size: all" in proc.stderr
