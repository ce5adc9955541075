"""Experiment on an object store (moto's S3 server on 127.0.0.1): create uploads the spec, the name is taken once
a journal is there, open on another machine (another cache) copies it down without the training state, and push
sends the journal and only what changed."""

from __future__ import annotations

import pytest
import yaml

from tests.search.test_run import SMOKE
from tlsearch import remote
from tlsearch.errors import UserInputError
from tlsearch.search.experiment import Experiment
from tlsearch.search.spec import SearchSpec


def test_create_open_push_pull(s3, tmp_path, monkeypatch):
    spec = SearchSpec.model_validate(yaml.safe_load(SMOKE.read_text()))
    monkeypatch.setenv("TLSEARCH_CACHE", str(tmp_path / "a"))
    exp = Experiment.create(spec, remote.join(s3, "exps"))
    assert exp.uri == remote.join(s3, "exps", "smoke") and exp.where == exp.uri
    assert exp.root.is_relative_to(tmp_path / "a") and exp.tune_location == remote.join(exp.uri, "tune")
    assert remote.read_bytes(remote.join(exp.uri, "spec.json")) == exp.spec_path.read_bytes()
    exp.journal.write_text("journal v1\n")
    ckpt = exp.tune_dir / "t00001" / "checkpoint_000003"
    ckpt.mkdir(parents=True)
    for f in ("state.pt", "model.pt", "predictions.parquet"):  # as Tune's workers upload them
        (ckpt / f).write_bytes(b"x")
        remote.write_bytes(remote.join(exp.tune_location, "t00001", "checkpoint_000003", f), b"x")
    sent: dict = {}
    assert exp.push(sent=sent) == 2  # the journal and spec.json; Tune's directory is Tune's to upload
    assert exp.push(sent=sent) == 0  # nothing changed
    with exp.journal.open("a") as fh:  # Optuna appends
        fh.write("journal v2\n")
    assert exp.push(sent=sent) == 1
    assert remote.read_bytes(remote.join(exp.uri, "optuna.journal")) == b"journal v1\njournal v2\n"
    with pytest.raises(UserInputError, match=r"an experiment of this name already exists; fix: continue it with "
                                             r"`tlsearch resume s3://"):
        Experiment.create(spec, remote.join(s3, "exps"))
    monkeypatch.setenv("TLSEARCH_CACHE", str(tmp_path / "b"))  # another machine
    there = Experiment.open(exp.uri + "/")
    assert there.uri == exp.uri and there.root.is_relative_to(tmp_path / "b")
    assert there.journal.read_text() == "journal v1\njournal v2\n" and there.spec().name == "smoke"
    got = there.tune_dir / "t00001" / "checkpoint_000003"
    assert sorted(p.name for p in got.iterdir()) == ["model.pt", "predictions.parquet"]  # no training state
    assert there.pull() == 0  # nothing changed since
    local = Experiment.create(spec, tmp_path / "local")
    assert local.uri is None and local.push() == 0 and local.pull() == 0 and local.where == str(local.root)
    # the user is told where a file of the experiment is: its URI, not one machine's mirror
    assert there.location(got) == remote.join(exp.uri, "tune", "t00001", "checkpoint_000003")
    assert there.location(tmp_path / "elsewhere") == str(tmp_path / "elsewhere")
    assert local.location(local.tune_dir / "t00001") == str(local.tune_dir / "t00001")
