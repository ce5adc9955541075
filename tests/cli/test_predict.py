"""`tlsearch predict` and `tlsearch export` on a real study (EMT data, real Ray, real training), run once for the
module: predictions for a folder of POSCARs with a broken file (listed with its reason, the rest predicted), CSV and
Parquet, the MAE from id_prop.csv; an export that reloads with one call and reproduces the study's test MAE; the same
predictions from the export as from the experiment; the report naming the selected model; bad inputs exit 2."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import yaml

from tests.search.test_run import SMOKE, _cli, _env, _ray_stop
from tlsearch.data.inputs import read_structures


FOLD_FILES = ["model_fold0.pt", "model_fold1.pt", "model_fold2.pt", "model_repeat1_fold0.pt", "model_repeat1_fold1.pt", "model_repeat1_fold2.pt"]


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """One smoke study (transfer strategies, no scheduler, 3 trials of 2 repeats, each cross-validated with 3
    folds: the delivered model is 6 fold models), about a minute on 2 cores."""
    tmp = tmp_path_factory.mktemp("predict")
    data = yaml.safe_load(SMOKE.read_text())
    data["search"]["strategy"] = ["finetune", "mpt"]  # the selected model has a PT lineage to export
    data["scheduler"] = {"type": "none"}
    data["budget"] = {"trials": 3, "max_epochs": 2, "pt_epochs": 2, "repeats": 2, "cv_folds": 3}
    spec = tmp / "space.yaml"
    spec.write_text(yaml.safe_dump(data))
    env = _env(tmp)
    try:
        proc = _cli("run", str(spec), "--storage", str(tmp / "exp"), env=env, timeout=1200)
    finally:
        _ray_stop(env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return {"exp": tmp / "exp" / "smoke", "env": env, "tmp": tmp, "cache": tmp / "cache"}


def _write(folder: Path, cache: Path, id_prop: bool) -> list[str]:
    """Six POSCARs of the target data and one broken file (and, with ``id_prop``, a row for a missing file)."""
    from tlsearch.data import load_dataset

    folder.mkdir()
    recs = load_dataset("emt:alloys?n=80&seed=0", cache=cache).records[:6]
    for r in recs:
        r.atoms.write_poscar(str(folder / f"{r.id}.vasp"))
    (folder / "broken.vasp").write_text("this is not a POSCAR\n1.0\n")
    (folder / "notes.txt").write_text("not a structure: ignored\n")
    if id_prop:
        rows = [f"{r.id}.vasp,{r.targets['bulk_modulus']}" for r in recs] + ["broken.vasp,1.0", "gone.vasp,2.0"]
        (folder / "id_prop.csv").write_text("\n".join(rows) + "\n")
    return [f"{r.id}.vasp" for r in recs]


@pytest.fixture(scope="module")
def folders(study):
    tmp = study["tmp"]
    ids = _write(tmp / "plain", study["cache"], id_prop=False)
    _write(tmp / "labelled", study["cache"], id_prop=True)
    return {"plain": tmp / "plain", "labelled": tmp / "labelled", "ids": ids}


@pytest.fixture(scope="module")
def exported(study):
    proc = _cli("export", str(study["exp"]), str(study["tmp"] / "models"), env=study["env"], timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return study["tmp"] / "models" / "smoke-ft40"


def _selected(study) -> dict:
    return json.loads((study["exp"] / "summary.json").read_text())["selected_models"][0]


def test_report_and_summary_name_the_selected_model_and_the_commands(study):
    s = json.loads((study["exp"] / "summary.json").read_text())
    t = pl.read_parquet(study["exp"] / "trials.parquet")
    sel, best = s["selected_models"], s["by_ft_size"][0]["best"]
    assert [m["ft_size"] for m in sel] == ["40"] and sel[0]["trial"] == best["trial"]
    row = t.filter(pl.col("trial") == best["trial"]).row(0, named=True)
    assert sel[0]["model_dir"] == row["model_dir"] and sel[0]["test_mae"] == row["test_mae"]
    for d in t.filter(pl.col("state") == "finished")["model_dir"]:  # every repeat's and fold's weights are kept
        assert sorted(p.name for p in Path(d).glob("model*.pt")) == FOLD_FILES
    assert sel[0]["pt"]["key"] == row["pt_key"] and sel[0]["pt"]["epochs"] == row["pt_epochs"]
    exp = str(study["exp"])
    assert sel[0]["commands"] == {"predict": f"tlsearch predict {exp} STRUCTURES --ft-size 40 --out predictions.csv",
                                  "export": f"tlsearch export {exp} OUT_DIR --ft-size 40"}
    md = (study["exp"] / "report.md").read_text()
    assert "## Selected models" in md and row["model_dir"] in md
    assert sel[0]["commands"]["predict"] in md and sel[0]["commands"]["export"] in md


def test_predict_a_folder_lists_the_broken_file_and_predicts_the_rest(study, folders):
    proc = _cli("predict", str(study["exp"]), str(folders["plain"]), env=study["env"], timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert re.search(r"broken\.vasp: unparsable structure", proc.stderr), proc.stderr
    assert "predicted 6 of 7 structure(s)" in proc.stderr and f"trial {_selected(study)['trial']}" in proc.stderr
    assert all(i in proc.stdout for i in folders["ids"]) and "notes.txt" not in proc.stdout + proc.stderr
    assert "MAE vs" not in proc.stderr  # no true values


def test_predict_writes_csv_and_parquet_with_the_mae_of_id_prop_values(study, folders):
    out = {}
    for ext in ("csv", "parquet"):
        path = study["tmp"] / f"pred.{ext}"
        proc = _cli("predict", str(study["exp"]), str(folders["labelled"]), "--ft-size", "40", "--out", str(path),
                    env=study["env"], timeout=300)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        out[ext] = (pl.read_csv(path) if ext == "csv" else pl.read_parquet(path), proc.stderr)
    csv, parquet = out["csv"][0], out["parquet"][0]
    members = [f"y_pred_repeat{r}_fold{f}" for r in range(2) for f in range(3)]
    assert csv.columns == parquet.columns == ["id", "y_pred", "y_std", "y_true", "abs_error", *members, "skipped"]
    assert np.allclose(csv["y_pred"].drop_nulls().to_numpy(), parquet["y_pred"].drop_nulls().to_numpy())
    done = parquet.filter(pl.col("skipped").is_null())
    assert done["id"].to_list() == folders["ids"]
    assert np.allclose(done["y_pred"], sum(done[c] for c in members) / 6)  # the fold ensemble of both repeats
    skipped = dict(parquet.filter(pl.col("skipped").is_not_null()).select("id", "skipped").iter_rows())
    assert skipped["broken.vasp"].startswith("unparsable structure") and skipped["gone.vasp"].startswith("missing file")
    mae = float((done["y_pred"] - done["y_true"]).abs().mean())
    line = next(x for x in out["parquet"][1].splitlines() if x.startswith("MAE"))
    assert "id_prop.csv column target, 6 structures" in line and f": {mae:.4g} (ensemble mean" in line


def test_export_reloads_with_one_call_and_reproduces_the_test_mae(study, exported):
    from tlsearch.prepared import prepare
    from tlsearch.training import load_model

    sel = _selected(study)
    model = load_model(exported)
    assert len(model.members) == 6 and model.property == "bulk_modulus"
    cfg = model.config
    prep = prepare(cfg.target.dataset, cfg.graph.params(), prop=cfg.target.property, test_fraction=cfg.test_fraction,
                   split_seed=cfg.split_seed, cache=study["cache"])
    test = prep.split.test
    pred = model.predict([prep.dataset.records[i].atoms for i in test], [prep.dataset.ids[i] for i in test],
                         cache=study["cache"], device="cpu")
    pred.y = prep.values(cfg.target.property)[test]
    assert len(pred.ids) == sel["n_test"] and not pred.skipped
    for m, expected in enumerate(sel["test_mae_per_fold"]):  # each fold model alone, as the trial scored it
        assert abs(pred.mae(m) - expected) < 1e-6, (m, pred.mae(m), expected)
    for r, expected in enumerate(sel["test_mae_per_repeat"]):  # each repeat's fold ensemble
        mean = pred.per_repeat[:, 3 * r : 3 * r + 3].mean(axis=1)
        assert abs(float(np.abs(mean - pred.y).mean()) - expected) < 1e-6, (r, expected)
    info = json.loads((exported / "model.json").read_text())
    assert info["trial"] == sel["trial"] and info["metrics"]["test_mae"] == sel["test_mae"]
    assert info["pt"]["key"] == sel["pt"]["key"] and info["pt"]["sources"] == sel["pt"]["sources"]
    assert info["graph"]["cutoff"] == cfg.graph.cutoff and [r["file"] for r in info["repeats"]] == FOLD_FILES
    assert all(set(r) >= {"scaler", "config", "sha256"} for r in info["repeats"])
    card = (exported / "README.md").read_text()
    assert "bulk_modulus" in card and f"{sel['test_mae']:.4g}" in card and sel["pt"]["key"] in card
    assert f"load_model({str(exported)!r})" in card and f"tlsearch predict {exported}" in card


def test_predict_from_the_export_equals_predict_from_the_experiment(study, folders, exported):
    frames = []
    for src in (study["exp"], exported):
        path = study["tmp"] / f"same-{len(frames)}.parquet"
        proc = _cli("predict", str(src), str(folders["labelled"]), "--out", str(path), env=study["env"], timeout=300)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        frames.append(pl.read_parquet(path))
    assert frames[0].equals(frames[1])


def test_read_structures_keeps_every_entry_with_a_reason(study, folders):
    got = read_structures(folders["labelled"], "bulk_modulus")
    assert got.ids == folders["ids"] and got.y is not None and np.isfinite(got.y).all()
    assert {s.id: s.reason for s in got.skipped} == {"broken.vasp": "unparsable structure", "gone.vasp": "missing file"}
    plain = read_structures(folders["plain"], "bulk_modulus")
    assert plain.ids == folders["ids"] and plain.y is None  # notes.txt is not a structure file


BAD = [
    (["predict", "{tmp}/nowhere", "{tmp}/plain"], "{tmp}/nowhere", "no such directory"),
    (["predict", "{tmp}/plain", "{tmp}/plain"], "{tmp}/plain", "neither an experiment directory"),
    (["predict", "{exp}", "{tmp}/plain", "--ft-size", "999"], "{exp}", "the study does not search this size"),
    (["predict", "{exp}", "{tmp}/empty"], "{tmp}/empty", "no structure files"),
    (["predict", "{exp}", "{tmp}/plain", "--out", "{tmp}/p.txt"], "{tmp}/p.txt", "unknown file type"),
    (["predict", "{exp}", "{tmp}/plain", "--threads", "0"], "--threads 0", "must be a whole number >= 1"),
    (["predict", "{exp}", "{tmp}/plain", "--batch-size", "-3"], "--batch-size -3", "must be a whole number >= 1"),
    (["export", "{tmp}/nowhere", "{tmp}/x"], "{tmp}/nowhere", "not a tlsearch experiment directory"),
    (["export", "{exp}", "{tmp}/models"], "{tmp}/models/smoke-ft40", "already exists"),
]


@pytest.mark.parametrize("args,path,reason", BAD, ids=[f"{a[0]}-{r}" for a, _, r in BAD])
def test_bad_input_exits_2_naming_the_path_and_the_reason(study, folders, exported, args, path, reason):
    (study["tmp"] / "empty").mkdir(exist_ok=True)
    fill = {"tmp": str(study["tmp"]), "exp": str(study["exp"])}
    proc = _cli(*[a.format(**fill) for a in args], env=study["env"], timeout=300)
    last = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else ""
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr and last.startswith("error: "), proc.stderr
    assert path.format(**fill) in last and reason in last and "fix:" in last, last


def test_an_exported_model_is_a_pt_source_of_another_study(study, exported, tmp_path):
    """issue 14.2: the exported directory is a checkpoint PT source as it is (its first repeat's model), and a
    fine-tuning trial starts from it."""
    from tlsearch.training import load_model, train_trial
    from tlsearch.training.config import config_from_dict
    from tlsearch.training.pt_checkpoint import read_checkpoint

    ckpt = read_checkpoint(exported)
    assert ckpt.kind == "tlsearch model" and ckpt.path == exported / "model_fold0.pt"  # repeat 0, fold 0
    cfg = load_model(exported).config.model_dump(mode="json")
    cfg.update(mode="finetune", output_dir=None, cache_dir=str(study["cache"]), store_dir=str(tmp_path / "store"),
               pretrain={"sources": [{"checkpoint": str(exported)}]})
    cfg["train"].update(sample_size=20, optim={**cfg["train"]["optim"], "epochs": 1})
    r = train_trial(config_from_dict(cfg))
    assert r.pretrain.key == ckpt.digest[:32] and r.test["mae"] > 0


def test_predict_says_when_structures_were_in_the_models_training_pool(study, folders):
    """The labelled folder holds six POSCARs written from the study's target dataset: outside its held-out test
    set the model may have trained on them, and `tlsearch predict` says so; new structures get no such note."""
    proc = _cli("predict", str(study["exp"]), str(folders["labelled"]), env={**study["env"], "COLUMNS": "400"},
                timeout=300)
    assert proc.returncode == 0, proc.stderr
    found = re.findall(r"(\d+) of these structures are in the (?:model's target dataset|held-out test set)", proc.stderr)
    assert found and sum(int(n) for n in found) == 6, proc.stderr
    assert "not a test of it" in proc.stderr or "never trained on" in proc.stderr
    new = _cli("predict", str(study["exp"]), "emt:alloys?n=10&seed=7", env=study["env"], timeout=300)
    assert new.returncode == 0 and "of these structures are in" not in new.stderr, new.stderr


FOLDER_TINY = {"alignn_layers": 1, "gcn_layers": 1, "hidden_features": 16, "embedding_features": 8,
               "edge_input_features": 16, "triplet_input_features": 8}


@pytest.fixture(scope="module")
def folder_model(tmp_path_factory):
    """A `folder:` target whose ids are file names (60 EMT POSCARs + id_prop.csv) and a tiny scratch model trained on
    it (one epoch, a few seconds): the setting of issue 26.2."""
    from tlsearch.data import load_dataset
    from tlsearch.training import config_from_dict, train_trial

    tmp = tmp_path_factory.mktemp("folder_target")
    folder = tmp / "crystals"
    folder.mkdir()
    recs = load_dataset("emt:alloys?n=60&seed=3", cache=tmp / "cache").records
    for r in recs:
        r.atoms.write_poscar(str(folder / f"{r.id}.vasp"))
    rows = [f"{r.id}.vasp,{r.targets['bulk_modulus']}" for r in recs]
    (folder / "id_prop.csv").write_text("file,bulk_modulus\n" + "\n".join(rows) + "\n")
    target = f"folder:{folder}"
    cfg = config_from_dict({"mode": "scratch", "target": {"dataset": target, "property": "bulk_modulus"},
                            "model": FOLDER_TINY, "cache_dir": str(tmp / "cache"), "output_dir": str(tmp / "model"),
                            "train": {"sample_size": 20, "optim": {"epochs": 1, "batch_size": 8}}})
    train_trial(cfg)
    return {"folder": folder, "target": target, "model": tmp / "model", "cache": tmp / "cache", "n": len(recs),
            "env": {**_env(tmp), "TLSEARCH_CACHE": str(tmp / "cache"), "COLUMNS": "400"}}


def _expected_split(folder_model) -> tuple[int, int]:
    """(held-out test structures, the rest) of the folder target, as training splits it."""
    from tlsearch.prepared import load_split

    ds, split = load_split(folder_model["target"], "bulk_modulus", cache=folder_model["cache"])
    assert ds.ids[0].endswith(".vasp")  # ids are file names
    return len(split.test), len(split.pool)


def test_overlap_note_counts_the_held_out_test_set_of_a_folder_target(folder_model):
    """issue 26.2: the held-out test set was compared as record indices against ids, so no structure was ever in it
    and every one of the target's structures was counted as "outside its held-out test set"."""
    from tlsearch.data.inputs import training_overlap

    n_test, n_pool = _expected_split(folder_model)
    assert n_test == 6 and n_pool == folder_model["n"] - 6
    found = read_structures(folder_model["folder"], "bulk_modulus")
    note = training_overlap(found.atoms, folder_model["target"], "bulk_modulus", 0.1, 0, folder_model["cache"])
    assert note is not None and f"{n_pool} of these structures are in the model's target dataset" in note, note
    assert f"{n_test} of these structures are in the held-out test set" in note, note


def test_predict_the_whole_folder_target_says_which_part_is_its_test_set(folder_model):
    """The CLI on the model's own target folder (the issue's command): the note splits it into the held-out test set
    and the rest, and the numbers add up to the folder."""
    n_test, n_pool = _expected_split(folder_model)
    proc = _cli("predict", str(folder_model["model"]), folder_model["target"], env=folder_model["env"], timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert f"note: {n_pool} of these structures are in the model's target dataset" in proc.stderr, proc.stderr
    assert f"{n_test} of these structures are in the held-out test set" in proc.stderr, proc.stderr


def test_predict_runs_every_repeat_on_one_batch_in_inference_mode_on_the_given_threads(folder_model, monkeypatch):
    """issue 26.1: inference on ``threads`` torch threads (the caller's setting restored afterwards), under
    torch.inference_mode, each batch of ``batch_size`` structures assembled once for every repeat; the numbers do not
    depend on either (the same as the training loop's own predictions at its batch size)."""
    import torch

    from tlsearch.training import load_model
    from tlsearch.training.engine import Stepper
    from tlsearch.training.tasks import Task

    model = load_model(folder_model["model"])
    model.members.append(model.members[0])  # two repeats: one batch must serve both
    seen: dict[str, list] = {"threads": [], "inference": [], "batches": []}
    model.members[0].model.register_forward_hook(
        lambda *_: seen["inference"].append(torch.is_inference_mode_enabled()))
    batch = Task.batch
    monkeypatch.setattr(Task, "batch", lambda self, idx: seen["batches"].append(len(idx)) or batch(self, idx))
    before = torch.get_num_threads()
    pred = model.predict_from(folder_model["folder"], cache=folder_model["cache"], threads=1, batch_size=7,
                              progress=lambda stage, *_: stage == "predict" and seen["threads"].append(
                                  torch.get_num_threads()))
    n = folder_model["n"]
    assert len(pred.ids) == n and torch.get_num_threads() == before
    assert seen["batches"] == [7] * (n // 7) + [n % 7] and set(seen["threads"]) == {1}
    assert seen["inference"] == [True] * 2 * len(seen["batches"])  # the hook is on both "repeats" (same model)
    again = model.predict_from(folder_model["folder"], cache=folder_model["cache"], threads=2, batch_size=64)
    assert np.allclose(again.per_repeat, pred.per_repeat, rtol=1e-5, atol=0)  # float32 sums in another order
    m = model.members[0]
    found = read_structures(folder_model["folder"], "bulk_modulus")
    from tlsearch.graphs import GraphCache

    gs = GraphCache(m.config.graph.params(), root=folder_model["cache"]).get(found.atoms)
    task = Task(gs.pack, gs.row, np.full((n, 1), np.nan), found.ids, ("bulk_modulus",), "cgcnn")
    ref = Stepper(m.model, task, m.scaler, "l1", m.config.train.optim.batch_size, torch.device("cpu")).predict(
        np.arange(n))[:, 0]
    assert np.allclose(pred.per_repeat[:, 0], ref, rtol=1e-5, atol=0)


def test_a_second_predict_of_a_folder_builds_no_graphs_and_the_first_builds_on_the_threads(folder_model, tmp_path):
    """Graphs of a folder are built once and kept in the graph cache: the second call builds none."""
    import torch

    from tlsearch.training import load_model

    model = load_model(folder_model["model"])
    plain = tmp_path / "plain"
    plain.mkdir()
    for f in sorted(folder_model["folder"].glob("*.vasp"))[:12]:
        (plain / f.name).write_text(f.read_text())
    runs: list[dict[str, set[int]]] = []
    for _ in range(2):
        stages: dict[str, set[int]] = {}
        model.predict_from(plain, cache=tmp_path / "cache", threads=1,
                           progress=lambda stage, *_: stages.setdefault(stage, set()).add(torch.get_num_threads()))
        runs.append(stages)
    assert "graphs" in runs[0] and "graphs" not in runs[1] and "predict" in runs[1], runs
    assert runs[0]["graphs"] == {1}, runs  # graphs are built with torch ops: on the threads asked for too


def test_bad_threads_and_batch_size_of_the_python_api_name_the_argument(folder_model):
    from tlsearch.errors import UserInputError
    from tlsearch.training import load_model

    model = load_model(folder_model["model"])
    for kw, name in (({"threads": 0}, "threads 0"), ({"batch_size": 0}, "batch_size 0"),
                     ({"threads": 1.5}, "threads 1.5")):
        with pytest.raises(UserInputError, match=f"^{name}: must be a whole number >= 1; fix: "):
            model.predict_from(folder_model["folder"], cache=folder_model["cache"], **kw)


def test_default_threads_fit_the_free_cpus_of_the_affinity(monkeypatch):
    import os

    from tlsearch.training.predict import default_threads

    cpus = len(os.sched_getaffinity(0))
    monkeypatch.setattr(os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    assert default_threads() == cpus  # an idle machine: every CPU this process may use
    monkeypatch.setattr(os, "getloadavg", lambda: (float(os.cpu_count()) + 3, 0.0, 0.0))
    assert default_threads() == 1  # every CPU busy elsewhere: one thread, never spinning against the others
    monkeypatch.setattr(os, "sched_getaffinity", lambda _: {0})
    monkeypatch.setattr(os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    assert default_threads() == 1  # taskset / a container's share: never more threads than CPUs


def test_progress_without_a_terminal_is_a_plain_line_every_few_seconds_with_the_rate():
    import io

    from rich.console import Console

    from tlsearch.cli.predict_cmd import StageProgress

    clock, buf = [100.0], io.StringIO()
    p = StageProgress(Console(file=buf, width=60), every=5.0, clock=lambda: clock[0])
    for done in range(0, 3001, 30):  # 300 structures a second
        p("predict", done, 3000)
        clock[0] += 0.1
    clock[0] -= 0.1
    assert buf.getvalue().splitlines() == [
        "predicting: 1530/3000 structures (51 %), 300.0 structures/s, elapsed 0.1 min, ETA 0.1 min",
        "predicting: 3000/3000 structures (100 %), 300.0 structures/s, elapsed 0.2 min"], buf.getvalue()
    assert p.summary(3, 2, 64) == ("inference: 3000 structure(s) x 3 repeat(s) in 10.0 s, 300.0 structures/s "
                                   "(2 torch thread(s), batch 64)")
    small = StageProgress(Console(file=buf), every=0.0, clock=lambda: clock[0])
    small("predict", 0, 10)
    small("predict", 10, 10)
    assert len(buf.getvalue().splitlines()) == 2  # fewer than PROGRESS_MIN structures: no progress lines


def test_predict_cli_prints_the_inference_rate_and_takes_threads_and_batch_size(folder_model):
    proc = _cli("predict", str(folder_model["model"]), str(folder_model["folder"]), "--threads", "1",
                "--batch-size", "7", env=folder_model["env"], timeout=300)
    assert proc.returncode == 0, proc.stderr
    n = folder_model["n"]
    assert re.search(rf"inference: {n} structure\(s\) x 1 repeat\(s\) in [\d.]+ s, [\d,.]+ structures/s \(1 torch "
                     r"thread\(s\), batch 7\)", proc.stderr), proc.stderr


def test_the_cli_batch_default_is_the_library_default():
    from tlsearch.cli.predict_cmd import BATCH
    from tlsearch.training.predict import DEFAULT_BATCH

    assert BATCH == DEFAULT_BATCH


_FAULTS = """
import resource, sys, torch
from tlsearch.training.predict import keep_freed_memory
applied = keep_freed_memory() if sys.argv[1] == "keep" else None
torch.ones(16 << 20).sum()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    torch.ones(16 << 20).sum()  # 64 MB, freed at once: an activation of a large batch
print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def test_keep_freed_memory_stops_page_faulting_every_large_activation_in_again():
    """issue 26.1's system time: glibc unmaps every freed block above its mmap threshold, so each batch's large
    tensors were page-faulted in (and zeroed by the kernel) again; `tlsearch predict` keeps them for reuse."""
    import subprocess
    import sys

    faults = {}
    for mode in ("default", "keep"):
        proc = subprocess.run([sys.executable, "-c", _FAULTS, mode], capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        applied, n = proc.stdout.split()
        faults[mode] = int(n)
    assert applied == "True"
    assert faults["default"] > 10 * 16000 and faults["keep"] < faults["default"] / 10, faults
