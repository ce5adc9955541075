"""Checkpoint PT sources: an ALIGNN checkpoint written by alignn's own trainer (train_for_folder, run here on
tiny data), a classic (dgl) ALIGNN checkpoint in the same layout, and tlsearch model files; architecture checks
at `validate`; bad checkpoints exit 2 with the path and the reason."""

import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import structures

from tlsearch.cli.main import main
from tlsearch.graphs import dgl_available
from tlsearch.search.spec import load_spec
from tlsearch.search.space import train_config
from tlsearch.training import config_from_dict, train_trial
from tlsearch.training.checkpoint import load_checkpoint
from tlsearch.training.pt_checkpoint import read_checkpoint

ARCH = {"alignn_layers": 1, "gcn_layers": 1, "hidden_features": 16, "embedding_features": 8}
TARGET = {"dataset": "emt:alloys?n=40&seed=0", "property": "bulk_modulus"}


def alignn_train_for_folder(root, name="alignn_atomwise_pure"):
    """What a user of alignn does: id_prop.json + config.json, then alignn's own train_for_folder (1 epoch)."""
    from alignn.train_alignn import train_for_folder

    data = root / "data"
    data.mkdir(parents=True)
    rows = [{"jid": f"s{i}", "atoms": a.to_dict(), "target": float(i % 5)} for i, a in enumerate(structures(20))]
    (data / "id_prop.json").write_text(json.dumps(rows))
    cfg = {"version": "test", "dataset": "user_data", "target": "target", "atom_features": "cgcnn",
           "neighbor_strategy": "radius_graph", "id_tag": "jid", "random_seed": 0, "n_train": 12, "n_val": 4,
           "n_test": 4, "epochs": 1, "batch_size": 4, "num_workers": 0, "use_lmdb": True,
           "output_dir": str(root / "run"),
           "model": {"name": name, "atom_input_features": 92, "calculate_gradient": False, "gradwise_weight": 0.0,
                     "atomwise_weight": 0.0, "stresswise_weight": 0.0, **ARCH}}
    (root / "config.json").write_text(json.dumps(cfg))
    train_for_folder(root_dir=str(data), config_name=str(root / "config.json"), output_dir=str(root / "run"),
                     target_key="target")
    return root / "run"


@pytest.fixture(scope="module")
def alignn_ckpt(tmp_path_factory):
    import os

    root = tmp_path_factory.mktemp("alignn")
    cwd = os.getcwd()
    os.chdir(root)  # it writes its LMDB cache into the working directory
    try:
        run = alignn_train_for_folder(root)
    finally:
        os.chdir(cwd)
    assert (run / "best_model.pt").is_file() and (run / "config.json").is_file()
    return run


def dgl_layout(root):
    """A classic ALIGNN checkpoint in the published layout (alignn's train_for_folder 2026.8.11 trains only
    'alignn_*' models: its loop skips the classic one), made with alignn's own classes."""
    from alignn.config import TrainingConfig
    from alignn.models.alignn import ALIGNN, ALIGNNConfig

    torch.manual_seed(1)
    model = ALIGNN(ALIGNNConfig(name="alignn", atom_input_features=92, **ARCH))
    root.mkdir()
    torch.save(model.state_dict(), root / "best_model.pt")
    cfg = TrainingConfig(model={"name": "alignn", "atom_input_features": 92, **ARCH}, epochs=3)
    (root / "config.json").write_text(json.dumps(cfg.model_dump(mode="json")))
    return root


def ft_cfg(checkpoint, backend="pure", **train):
    return config_from_dict({"mode": "finetune", "target": TARGET, "model": {"backend": backend, **ARCH},
                             "pretrain": {"sources": [{"checkpoint": str(checkpoint), "label": "alignn-tiny"}]},
                             "train": {"sample_size": 20, "freeze": "new_head",
                                       "optim": {"epochs": 1, "batch_size": 8}, **train}})


def body_equals(model, alignn_state):
    body = model.body.state_dict()
    assert set(body) == {k for k in alignn_state if not k.startswith("fc.")}
    return all(torch.equal(body[k], alignn_state[k]) for k in body)


def test_finetune_starts_from_alignn_train_for_folder_checkpoint(alignn_ckpt, tmp_path):
    ck = read_checkpoint(alignn_ckpt)
    assert ck.backend == "pure" and ck.arch["hidden_features"] == 16 and ck.head == "linear"
    shutil.make_archive(str(tmp_path / "published"), "zip", alignn_ckpt.parent, alignn_ckpt.name)  # zip/run/...
    assert read_checkpoint(tmp_path / "published.zip").digest == ck.digest
    saved = torch.load(alignn_ckpt / "best_model.pt", weights_only=True)
    for i, source in enumerate((alignn_ckpt, tmp_path / "published.zip")):
        out = tmp_path / f"out{i}"
        r = train_trial(ft_cfg(source).model_copy(update={"output_dir": str(out)}))
        assert r.pretrain.sources == ["alignn-tiny"] and r.pretrain.store_hit is False and np.isfinite(r.test["mae"])
        model, _, _ = load_checkpoint(out / "model.pt")
        assert body_equals(model, saved), "the frozen body must be alignn's trained weights"
    # all_unfrozen keeps alignn's fc as the head's starting point, then trains everything
    r = train_trial(ft_cfg(alignn_ckpt, freeze="all_unfrozen"))
    assert r.n_trainable == r.n_params


@pytest.mark.skipif(not dgl_available(), reason="dgl not installed")
def test_finetune_from_classic_dgl_alignn_checkpoint(tmp_path):
    folder = dgl_layout(tmp_path / "classic")
    ck = read_checkpoint(folder)
    assert ck.backend == "dgl" and ck.meta["epochs"] == 3
    r = train_trial(ft_cfg(folder, backend="dgl").model_copy(update={"output_dir": str(tmp_path / "o")}))
    model, _, _ = load_checkpoint(tmp_path / "o" / "model.pt")
    assert body_equals(model, torch.load(folder / "best_model.pt", weights_only=True))
    assert r.pretrain.sources == ["alignn-tiny"]


def test_tlsearch_model_file_as_source(tmp_path):
    scratch = config_from_dict({"target": {"dataset": "emt:alloys?n=40&seed=1", "property": "volume_per_atom"},
                                "model": ARCH, "output_dir": str(tmp_path / "pt"),
                                "train": {"sample_size": 20, "optim": {"epochs": 1, "batch_size": 8}}})
    train_trial(scratch)
    r = train_trial(ft_cfg(tmp_path / "pt" / "model.pt"))
    assert r.pretrain.sources == ["alignn-tiny"] and r.pretrain.key == read_checkpoint(tmp_path / "pt" / "model.pt").digest[:32]


def spec_file(tmp_path, checkpoint, **arch):
    data = {"name": "ck", "data": {"target": TARGET, "pretrain_sources": [
                {"checkpoint": str(checkpoint)},
                {"dataset": "emt:alloys?n=40&seed=1", "property": "formation_energy_per_atom"}]},
            "search": {"strategy": ["scratch", "finetune"], "ft_size": [20], "architecture": {**ARCH, **arch}},
            "budget": {"trials": 2, "max_epochs": 1, "pt_epochs": 1}}
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_spec_with_checkpoint_source_validates_and_labels_trials(alignn_ckpt, tmp_path, capsys):
    path = spec_file(tmp_path, alignn_ckpt)
    assert main(["validate", str(path), "--data"]) == 0  # the dataset check skips checkpoint sources
    spec = load_spec(path)
    assert [s.label for s in spec.data.pretrain_sources][0] == "run"  # the folder's name
    cfg = train_config(spec, {"strategy": "finetune", "pt_source": "run"})
    assert cfg.pretrain.sources[0].checkpoint == str(alignn_ckpt)
    capsys.readouterr()
    assert main(["pretrain", str(path)]) == 0  # only the dataset source pre-trains
    out = capsys.readouterr().out
    assert "1 PT model(s)" in out and "finetune: emt:alloys" in out


@pytest.mark.parametrize("arch, needles", [
    ({"hidden_features": 32}, ["hidden 16", "hidden 32", "does not match the study's"]),
    ({"hidden_features": [16, 32]}, ["searches search.architecture.hidden_features = [16, 32]"]),
])
def test_architecture_mismatch_is_exit_2_at_validate(alignn_ckpt, tmp_path, capsys, arch, needles):
    path = spec_file(tmp_path, alignn_ckpt, **arch)
    assert main(["validate", str(path)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert f"{path}: data.pretrain_sources.0:" in err and all(n in err for n in needles), err


def _truncate(p):
    p.write_bytes(p.read_bytes()[:200])


@pytest.mark.parametrize("damage, target, reason", [
    (lambda d: shutil.rmtree(d), "folder", "does not exist"),
    (lambda d: (d / "best_model.pt").unlink(), "folder", "no config.json next to a best_model.pt"),
    (lambda d: (d / "config.json").unlink(), "folder", "no config.json next to a best_model.pt"),
    (lambda d: _truncate(d / "best_model.pt"), "folder", "best_model.pt does not load as plain tensors"),
    (lambda d: (d / "config.json").write_text('{"model": {"name": "cgcnn"}}'), "folder", "model name 'cgcnn' is not supported"),
    (lambda d: (d / "config.json").write_text("{not json"), "folder", "config.json has no model section"),
    (None, "zip-truncated", "damaged zip"),
    (None, "bare", "a bare state dict"),
    (None, "text", "does not load as plain tensors"),
])
def test_bad_checkpoints_exit_2_with_path_and_reason(alignn_ckpt, tmp_path, capsys, damage, target, reason):
    folder = tmp_path / "ck"
    shutil.copytree(alignn_ckpt, folder)
    source = folder
    if damage:
        damage(folder)
    elif target == "zip-truncated":
        with zipfile.ZipFile(tmp_path / "ck.zip", "w") as z:
            for f in ("config.json", "best_model.pt"):
                z.write(folder / f, f)
        source = tmp_path / "ck.zip"
        _truncate(source)
    elif target == "bare":
        source = folder / "best_model.pt"
    else:
        source = folder / "notes.txt"
        source.write_text("hello")
    path = spec_file(tmp_path, source)
    assert main(["validate", str(path)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert f"data.pretrain_sources.0: {source}:" in err and reason in err, err


@pytest.mark.timeout(600)
def test_study_with_checkpoint_source_and_shipped_model_runs_on_ray(alignn_ckpt, tmp_path):
    """`tlsearch run`: the shipped PT model is imported before Ray starts and its trials hit the store; the
    checkpoint source's trials start from alignn's weights and show its label in the trials table."""
    import os
    import subprocess
    import sys
    import tempfile

    import polars as pl

    from benchmarks.load import stop_ray
    from tlsearch.search.pt_plan import plan
    from tlsearch.training.store import PretrainStore
    from tlsearch.training.trial import pretrained_entry

    shutil.copytree(alignn_ckpt, tmp_path / "ship" / "alignn-ck")
    path = spec_file(tmp_path / "ship", "alignn-ck")  # relative to the spec's folder
    data = yaml.safe_load(path.read_text())
    data["data"]["pretrain_sources"][0]["label"] = "alignn-tiny"
    data["search"]["strategy"] = ["finetune"]
    data["budget"]["trials"] = 4  # seeded sampler (seed 0): both sources are drawn
    data.update(scheduler={"type": "none"}, resources={"cpus_per_trial": 1, "max_concurrent": 1},
                tracking={"mode": "disabled"}, storage=str(tmp_path / "exp"))
    path.write_text(yaml.safe_dump(data))
    (model,) = plan(load_spec(path))  # the author pre-trains the dataset source and ships it
    entry = pretrained_entry(model.config)
    shutil.copyfile(entry.path, tmp_path / "ship" / "fe.pt")
    data["data"]["pretrained"] = ["fe.pt"]
    path.write_text(yaml.safe_dump(data))

    ray_tmp = tempfile.mkdtemp(prefix="tlsr", dir="/tmp")
    env = {**os.environ, "TLSEARCH_CACHE": str(tmp_path / "user-cache"), "HOME": str(tmp_path / "home"),
           "RAY_TMPDIR": ray_tmp, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(Path(__file__).resolve().parents[2])}  # this tree, in the driver and Ray's workers
    (tmp_path / "home").mkdir()
    try:
        proc = subprocess.run([sys.executable, "-m", "tlsearch.cli.main", "run", str(path)], env=env,
                              capture_output=True, text=True, timeout=540, cwd=tmp_path)
    finally:
        stop_ray(ray_tmp)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert f"data.pretrained.0: {entry.key[:12]} imported" in " ".join(proc.stdout.split())
    assert PretrainStore(tmp_path / "user-cache" / "pretrained").path(entry.key).is_file()
    trials = pl.read_parquet(tmp_path / "exp" / "ck" / "trials.parquet")
    by_source = {s: t for s, t in trials.filter(pl.col("strategy") == "finetune").group_by("pt_source")}
    assert set(by_source) <= {("alignn-tiny",), ("emt:alloys?n=40&seed=1/formation_energy_per_atom",)}
    for (source,), rows in by_source.items():
        if source == "alignn-tiny":
            assert rows["pt_seconds"].to_list() == [0.0] * rows.height
            assert rows["pt_key"].to_list() == [read_checkpoint(alignn_ckpt).digest[:32]] * rows.height
        else:
            assert rows["pt_store_hit"].all() and set(rows["pt_key"]) == {entry.key}
    assert len(by_source) == 2, "both sources ran"


def test_exported_mpt_entry_and_wrapped_alignn_state_as_sources(alignn_ckpt, tmp_path):
    from tlsearch.training.trial import pretrained_entry

    mpt = config_from_dict({"mode": "mpt", "target": TARGET, "model": ARCH, "pretrain": {
        "sources": [{"dataset": "emt:alloys?n=40&seed=1", "property": p} for p in ("volume_per_atom", "energy_per_atom")],
        "optim": {"epochs": 1}}})
    entry = pretrained_entry(mpt)
    ck = read_checkpoint(entry.path)  # the exported file format is the store's own
    assert ck.kind == "tlsearch pre-trained entry" and ck.head == "multi"
    r = train_trial(ft_cfg(entry.path, freeze="all_unfrozen"))  # body from the MPT model, a fresh linear head
    assert np.isfinite(r.test["mae"])

    wrapped = tmp_path / "wrapped"
    shutil.copytree(alignn_ckpt, wrapped)
    state = torch.load(wrapped / "best_model.pt", weights_only=True)
    torch.save({"model": state, "epoch": 1}, wrapped / "best_model.pt")  # ignite-era published layout
    assert read_checkpoint(wrapped).digest != read_checkpoint(alignn_ckpt).digest
    assert all(torch.equal(read_checkpoint(wrapped).state[k], v) for k, v in read_checkpoint(alignn_ckpt).state.items())


def test_train_config_file_with_relative_checkpoint(alignn_ckpt, tmp_path, capsys):
    shutil.copytree(alignn_ckpt, tmp_path / "cfgdir" / "ck")
    cfg = tmp_path / "cfgdir" / "t.yaml"
    cfg.write_text(yaml.safe_dump({"mode": "finetune", "target": TARGET, "model": ARCH,
                                   "pretrain": {"sources": [{"checkpoint": "ck"}]},
                                   "train": {"sample_size": 20, "optim": {"epochs": 1, "batch_size": 8}}}))
    assert main(["train", str(cfg)]) == 0
    assert f"checkpoint ck ({tmp_path / 'cfgdir' / 'ck'}" in " ".join(capsys.readouterr().out.split())
