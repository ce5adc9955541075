"""Warm start (issue 15.3): a new study imports the finished trials of an earlier real study that lie inside
its space (real Optuna journals), does not run them again, and says which it skipped and why."""

from __future__ import annotations

import json

import optuna
import polars as pl
import yaml

from tests.search.test_run import SMOKE, _env, _run_data
from tlsearch import remote
from tlsearch.search.experiment import Experiment
from tlsearch.search.spec import spec_from_dict
from tlsearch.search.warm_start import candidates


def _study(tmp_path, name: str, **search) -> dict:
    data = yaml.safe_load(SMOKE.read_text())
    data["name"] = name
    data["data"].pop("mpt_properties")
    data["search"].update({"strategy": ["scratch", "finetune"], "freeze": ["all_unfrozen"], "ft_lr": 0.002, **search})
    data["budget"] = {"trials": 2, "max_epochs": 2, "pt_epochs": 2, "repeats": 1}
    data["scheduler"] = {"type": "none"}
    return data


def test_warm_started_study_imports_finished_trials_and_runs_only_new_ones(tmp_path):
    env = _env(tmp_path)
    _run_data(tmp_path, env, _study(tmp_path, "earlier"))          # scratch and PT->FT, all layers: 2 finished trials
    earlier = tmp_path / "exp" / "earlier"
    old = pl.read_parquet(earlier / "trials.parquet")
    assert (old["state"] == "finished").all() and old.height == 2
    # the new space adds the 2B freeze; one new trial in the budget
    new = _study(tmp_path, "later", freeze=["all_unfrozen", "2b"])
    new["budget"]["trials"] = 1
    out = _run_data(tmp_path, env, new, "--warm-start", str(earlier))
    assert "warm start: 2 finished trial(s) imported from 1 earlier study" in out and "0 skipped" in out, out
    exp = tmp_path / "exp" / "later"
    trials = pl.read_parquet(exp / "trials.parquet").sort("trial")
    imported = trials.filter(pl.col("imported_from").is_not_null())
    assert imported.height == 2 and sorted(imported["imported_from"]) == [f"{earlier}#0", f"{earlier}#1"]
    # the recorded values, not retrained: the same validation and test MAEs as in the earlier study
    for r in imported.iter_rows(named=True):
        o = old.filter(pl.col("trial") == int(r["imported_from"].rsplit("#", 1)[1])).row(0, named=True)
        assert (r["val_mae"], r["test_mae"], r["strategy"]) == (o["val_mae"], o["test_mae"], o["strategy"])
    # the one trial it ran is the configuration the earlier study did not have
    ran = trials.filter(pl.col("imported_from").is_null())
    assert ran.height == 1 and ran.row(0, named=True)["freeze"] == "2b" and ran["state"].to_list() == ["finished"]
    assert len([d for d in (exp / "tune").glob("t*") if d.is_dir()]) == 1  # one Ray trial ran
    s = json.loads((exp / "summary.json").read_text())
    assert s["trials"]["finished"] == 3 and len(s["imported"]) == 2
    assert "imported from earlier studies" in (exp / "report.md").read_text()


def test_trials_outside_the_space_are_skipped_with_the_reason(tmp_path, s3, monkeypatch):
    """Imports are decided on the trial configs: another PT length, or a strategy the space does not have,
    keeps a trial out, and the reason names the difference. The earlier study may be on an object store,
    read from another machine's cache. No training here: the earlier study's trials are read, not rerun."""
    env = _env(tmp_path)
    _run_data(tmp_path, env, _study(tmp_path, "earlier"))
    earlier = tmp_path / "exp" / "earlier"
    later = _study(tmp_path, "later")
    later["budget"]["pt_epochs"] = 3
    imported, skipped = candidates(spec_from_dict(later), [earlier])
    assert [i.params.get("strategy") for i, _, _ in imported] == ["scratch"]
    (sk,) = skipped
    assert sk.reason == "pretrain.optim.epochs: 2 (earlier) vs 3 (this study)"
    only_scratch = _study(tmp_path, "later")
    only_scratch["search"]["strategy"] = ["scratch"]
    imported, skipped = candidates(spec_from_dict(only_scratch), [earlier])
    # the space fixes the strategy to scratch: the PT->FT trial's config is another mode
    assert len(imported) == 1 and skipped[0].reason.startswith("mode: 'finetune' (earlier) vs 'scratch' (this study)")
    names = [s.study_name for s in optuna.get_all_study_summaries(Experiment.open(earlier).optuna_storage())]
    assert names == ["earlier"]  # reading an earlier study changes nothing in it
    # the same study on an object store (s3://, a real S3-compatible server), read on a machine that never saw it
    uri = remote.join(s3, "exps", "earlier")
    remote.upload(earlier, uri)
    monkeypatch.setenv("TLSEARCH_CACHE", str(tmp_path / "other-machine"))
    imported, skipped = candidates(spec_from_dict(later), [uri])
    assert [(i.experiment, i.params.get("strategy")) for i, _, _ in imported] == [(uri, "scratch")]
    assert [(s.experiment, s.reason) for s in skipped] == [(uri, sk.reason)]
