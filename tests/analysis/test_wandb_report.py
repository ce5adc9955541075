"""The W&B report of an experiment: built offline from summary.json, checked on the exact spec that
``Report.save()`` uploads; publishing refuses without an API key; the module imports neither torch nor Ray."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from typing import Any

import pytest

from tlsearch.analysis.wandb_report import PARAMS, build_wandb_report, publish_wandb_report
from tlsearch.errors import UserInputError, WandbPublishError

pytestmark = pytest.mark.timeout(120)  # nothing here may wait on a network

SUMMARY: dict[str, Any] = {
    "experiment": "quickstart-20261126",
    "target": "matminer2018:dielectric_constant/n",
    "conclusions": [
        "dielectric_constant/n, 100 samples: PT on flla_2015/formation_energy_per_atom -> FT with 2B freezing "
        "beats scratch by 14 % +/- 3 % (2 repeats; test MAE 0.412 +/- 0.02 vs 0.479 +/- 0.01).",
        "dielectric_constant/n, all samples: training from scratch, lr 1.2e-03 is best (test MAE 0.301, 2 repeats).",
    ],
    "by_ft_size": [
        {"ft_size": "100", "n_train": 100, "finished_trials": 6,
         "best": {"family": "finetune", "trial": 4, "strategy": "finetune", "val_mae": 0.398, "test_mae": 0.412,
                  "test_mae_std": 0.02, "repeats": 2}},
        {"ft_size": "all", "n_train": 1056, "finished_trials": 5,
         "best": {"family": "scratch", "trial": 9, "strategy": "scratch", "val_mae": 0.288, "test_mae": 0.301,
                  "test_mae_std": 0.0, "repeats": 2}},
    ],
    "importance": {"all": {"strategy": 0.41, "ft_lr": 0.22, "ft_size": 0.2, "freeze": 0.1, "mpt_combo_5": 0.07},
                   "strategy=scratch": "too few trials with a value (2 < 4)",
                   "strategy=finetune": {"freeze": 0.6, "pt_source": 0.3, "ft_lr": 0.1}},
    "compute": {"ft_trial_epochs": 120, "pt_models": 2},
    "failed": [{"trial": 11, "family": "mpt", "params": {}, "error": "DivergenceError: loss is nan"}],
}


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """No W&B credentials (any W&B API call then fails at once with "No API key configured"), an unreachable
    W&B server, and any TCP connection from this process fails the test."""
    for var in ("WANDB_API_KEY", "NETRC"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc, no ~/.config/wandb
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")
    real = socket.socket.connect

    def guarded(self: socket.socket, address: Any) -> Any:
        if self.family in (socket.AF_INET, socket.AF_INET6):
            raise AssertionError(f"network access to {address!r}")
        return real(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)
    monkeypatch.setattr(socket.socket, "connect_ex", guarded)


def _spec(report: Any) -> dict[str, Any]:
    """What ``Report.save()`` uploads (offline when the runsets have no entity: no project-id lookup)."""
    return json.loads(report._to_model().spec.model_dump_json(by_alias=True, exclude_none=True))


def _grids(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [b["metadata"] for b in spec["blocks"] if b["type"] == "panel-grid"]


def _headings(spec: dict[str, Any]) -> list[str]:
    return [b["children"][0]["text"] for b in spec["blocks"] if b["type"] == "heading"]


def _panels(grid: dict[str, Any]) -> list[dict[str, Any]]:
    return grid["panelBankSectionConfig"]["panels"]


def test_report_sections_panels_and_filters(offline):
    report = build_wandb_report(SUMMARY, project="tlsearch-quickstart", entity=None, group="quickstart-20261126")
    spec = _spec(report)
    assert report.title == "tlsearch: quickstart-20261126" and report.project == "tlsearch-quickstart"
    assert _headings(spec) == ["Conclusions", "Search space", "FT size 100", "FT size all"]

    md = next(b["content"] for b in spec["blocks"] if b["type"] == "markdown-block")
    for c in SUMMARY["conclusions"]:
        assert f"- {c}" in md
    assert "| 100 | finetune | 4 | 0.398 | 0.412 +/- 0.02 |" in md and "| all | scratch | 9 | 0.288 | 0.301 |" in md
    assert "1 trial(s) failed" in md

    grids = _grids(spec)
    assert len(grids) == 3
    size_filters = [None, {"section": "config", "name": "ft_size", "op": "=", "value": 100},
                    {"section": "config", "name": "ft_size", "op": "=", "value": "all"}]
    for grid, size_filter in zip(grids, size_filters):
        (rs,) = grid["runSets"]
        assert rs["grouping"] == [{"section": "config", "name": "strategy.value"}]
        leaves = [{"op": f["op"], "value": f["value"], **f["key"]} for f in rs["filters"]["filters"]]
        assert leaves[0] == {"section": "run", "name": "group", "op": "=", "value": "quickstart-20261126"}
        assert leaves[1:] == ([size_filter] if size_filter else [])
        assert rs["sort"]["keys"] == [{"key": {"section": "summary", "name": "val_mae"}, "ascending": True}]

    pc, imp, scatter = _panels(grids[0])
    assert pc["viewType"] == "Parallel Coordinates Plot"
    # the searched parameters (named by the importance branches) in PARAMS order, extra keys after, then MAEs
    assert [c["accessor"] for c in pc["config"]["columns"]] == [
        "config:strategy.value", "config:pt_source.value", "config:freeze.value", "config:ft_size.value",
        "config:ft_lr.value", "config:mpt_combo_5.value", "summary:val_mae", "summary:test_mae"]
    assert imp["viewType"] == "Parameter Importance" and imp["config"]["targetKey"] == "val_mae"
    assert scatter["viewType"] == "Scatter Plot"
    assert (scatter["config"]["xAxis"], scatter["config"]["yAxis"]) == ("summary:n_train", "summary:test_mae")

    for grid in grids[1:]:
        bar_test, bar_val, curves = _panels(grid)
        assert [bar_test["viewType"], bar_val["viewType"]] == ["Bar Chart", "Bar Chart"]
        assert bar_test["config"]["metrics"] == ["test_mae"] and bar_val["config"]["metrics"] == ["val_mae"]
        assert curves["viewType"] == "Run History Line Plot"
        assert curves["config"]["xAxis"] == "epoch" and curves["config"]["metrics"] == ["val_mae"]
        for p in (bar_test, bar_val, curves):
            assert p["config"]["groupBy"] == "strategy.value" and p["config"]["aggregate"] is True
            assert p["config"]["groupArea"] == "minmax"


def test_panels_do_not_overlap():
    for grid in _grids(_spec(build_wandb_report(SUMMARY, project="p", entity=None, group="g"))):
        cells = set()
        for p in _panels(grid):
            lay = p["layout"]
            assert lay["x"] + lay["w"] <= 24
            mine = {(x, y) for x in range(lay["x"], lay["x"] + lay["w"]) for y in range(lay["y"], lay["y"] + lay["h"])}
            assert not cells & mine, p["viewType"]
            cells |= mine


def test_study_without_finished_trials(offline):
    """No importances and no FT sizes yet: every known parameter is an axis; one unfiltered FT section."""
    summary = {"experiment": "fresh", "target": "t", "conclusions": ["No trial has finished yet: nothing to conclude."],
               "by_ft_size": [], "importance": {"all": "the study has no trials"}, "compute": {}, "failed": []}
    spec = _spec(build_wandb_report(summary, project="p", entity=None, group="fresh"))
    assert _headings(spec) == ["Conclusions", "Search space", "FT size (all)"]
    grids = _grids(spec)
    assert [c["accessor"] for c in _panels(grids[0])[0]["config"]["columns"]][:-2] == [
        f"config:{p}.value" for p in PARAMS]
    assert [len(g["runSets"][0]["filters"]["filters"]) for g in grids] == [1, 1]


def test_single_unsearched_ft_size_is_not_filtered_on():
    """One FT size that the study did not search is not in the run config: filtering on it would hide every run."""
    summary = {**SUMMARY, "by_ft_size": SUMMARY["by_ft_size"][:1], "importance": {"all": {"ft_lr": 1.0}}}
    spec = _spec(build_wandb_report(summary, project="p", entity=None, group="g"))
    assert _headings(spec)[-1] == "FT size 100"
    assert len(_grids(spec)[-1]["runSets"][0]["filters"]["filters"]) == 1
    searched = {**summary, "importance": {"all": {"ft_lr": 0.5, "ft_size": 0.5}}}
    assert len(_grids(_spec(build_wandb_report(searched, project="p", entity=None, group="g")))[-1]
               ["runSets"][0]["filters"]["filters"]) == 2


def test_entity_goes_to_the_report_and_every_runset(offline):
    report = build_wandb_report(SUMMARY, project="tlsearch-quickstart", entity="materials-lab", group="g")
    runsets = [rs for b in report.blocks for rs in getattr(b, "runsets", [])]
    assert report.entity == "materials-lab" and len(runsets) == 3
    assert {(rs.entity, rs.project) for rs in runsets} == {("materials-lab", "tlsearch-quickstart")}


def test_publish_refuses_without_an_api_key(offline):
    report = build_wandb_report(SUMMARY, project="p", entity=None, group="g")
    with pytest.raises(WandbPublishError) as err:
        publish_wandb_report(report)
    assert isinstance(err.value, UserInputError) and err.value.exit_code == 2
    msg = str(err.value)
    assert "no W&B API key" in msg and "wandb login" in msg and "wandb sync" in msg and "--wandb" in msg
    assert report.id == ""  # nothing was saved


_IMPORT_CHECK = """
import json, sys
from tlsearch.analysis.wandb_report import build_wandb_report, publish_wandb_report
from tlsearch.errors import WandbPublishError
report = build_wandb_report(json.loads(sys.argv[1]), project="p", entity=None, group="g")
try:
    publish_wandb_report(report)
except WandbPublishError:
    pass
print(json.dumps(sorted(m for m in ("torch", "ray") if m in sys.modules)))
"""


def test_report_path_imports_neither_torch_nor_ray(tmp_path):
    """Import, build and the refused publish (no key) in a fresh interpreter: torch and Ray stay unloaded."""
    env = {k: v for k, v in os.environ.items() if k not in ("WANDB_API_KEY", "NETRC")}
    env["HOME"] = str(tmp_path)
    out = subprocess.run([sys.executable, "-c", _IMPORT_CHECK, json.dumps(SUMMARY)], capture_output=True,
                         text=True, timeout=90, env=env)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_two_targets_get_a_section_per_target_and_size_and_the_atlas_table(offline):
    """Issue 15.2: a study with several targets filters each section on its target too (the target is in every
    run's config), and the conclusions block holds the atlas as a table."""
    n, k = "matminer2018:dielectric_constant/n", "matminer2018:elastic_tensor/K_VRH"
    best = {"family": "scratch", "trial": 1, "strategy": "scratch", "val_mae": 0.4, "test_mae": 0.41,
            "test_mae_std": 0.01, "repeats": 2}
    cells = [{"source": k, "target": n, "trial": 3, "freeze": "2b", "gain_pct": {"mean": 12.5, "std": 3.25, "n": 2}},
             {"source": k, "target": k, "note": "the target itself (never a PT source for itself)"},
             {"source": n, "target": n, "note": "the target itself (never a PT source for itself)"},
             {"source": n, "target": k, "note": "no finished trial"}]
    summary = {**SUMMARY, "targets": [n, k], "labels": {k: "K (MP)"},
               "by_ft_size": [{"ft_size": "100", "target": n, "best": best}, {"ft_size": "100", "target": k,
                                                                                "best": best}],
               "atlas": [{"ft_size": "100", "sources": [k, n], "targets": [n, k], "cells": cells}]}
    spec = _spec(build_wandb_report(summary, project="p", entity=None, group="g"))
    assert _headings(spec)[2:] == ["FT size dielectric_constant/n, 100", "FT size K (MP), 100"]
    (rs,) = _grids(spec)[2]["runSets"]
    leaves = [{"op": f["op"], "value": f["value"], **f["key"]} for f in rs["filters"]["filters"]]
    assert leaves[2] == {"section": "config", "name": "target", "op": "=", "value": k}
    md = next(b["content"] for b in spec["blocks"] if b["type"] == "markdown-block")
    assert "| PT source | dielectric_constant/n | K (MP) |" in md
    assert "| K (MP) | +12.5 % +/- 3.2 (2b) | the target itself (never a PT source for itself) |" in md
    assert "| dielectric_constant/n | the target itself (never a PT source for itself) | no finished trial |" in md


def test_a_two_objective_study_gets_its_pareto_fronts_and_a_cost_section_per_ft_size(offline):
    """objectives: [val_mae, cost]: the Conclusions block holds each FT size's Pareto front (cost as the report
    computes it), and each size gets a scatter of validation MAE against the FT compute seconds the runs logged."""
    def point(trial: int, family: str, freeze: str | None, val: float, cost: float) -> dict[str, Any]:
        return {"trial": trial, "family": family, "freeze": freeze, "val_mae": val, "val_mae_std": 0.01,
                "test_mae": val + 0.02, "test_mae_std": 0.0, "cost": cost}

    a, b, c = point(0, "scratch", None, 0.45, 120.0), point(3, "finetune", "2b", 0.40, 300.0), \
        point(5, "finetune", "all_unfrozen", 0.47, 400.0)
    fronts = [{"target": SUMMARY["target"], "ft_size": "100", "points": [a, b, c], "front": [a, b],
               "conclusion": "FT size 100: the cheapest strategy within the best's validation spread is trial 0"},
              {"target": SUMMARY["target"], "ft_size": "all", "points": [], "front": [],
               "conclusion": "FT size all: no finished trial with a cost: no Pareto front."}]
    summary = {**SUMMARY, "pareto": fronts, "conclusions": [*SUMMARY["conclusions"], *(z["conclusion"] for z in fronts)]}
    spec = _spec(build_wandb_report(summary, project="p", entity=None, group="g"))
    assert _headings(spec) == ["Conclusions", "Search space", "FT size 100", "FT size all",
                               "Accuracy vs cost, FT size 100", "Accuracy vs cost, FT size all"]
    md = next(b["content"] for b in spec["blocks"] if b["type"] == "markdown-block")
    assert "Pareto front, FT size 100 (2 of 3 finished trials;" in md and "FT size all (" not in md
    assert "| 0 | scratch |  | 0.45 +/- 0.01 | 0.47 | 120 |" in md and "| 3 | finetune | 2b | 0.4 +/- 0.01" in md
    assert "| 5 |" not in md  # dominated: not on the front
    grids = _grids(spec)
    for grid, size in zip(grids[3:], (100, "all")):
        (scatter,) = _panels(grid)
        assert scatter["viewType"] == "Scatter Plot"
        assert (scatter["config"]["xAxis"], scatter["config"]["yAxis"]) == ("summary:ft_compute_seconds", "summary:val_mae")
        leaves = grid["runSets"][0]["filters"]["filters"]
        assert leaves[1]["value"] == size
