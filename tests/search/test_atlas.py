"""A real study with two FT targets through the CLI (issue 15.1-2): each (target, FT size) gets its trials,
one PT model per source serves both targets, and the report states a transferability atlas with spreads."""

from __future__ import annotations

import json

import polars as pl
import yaml

from tests.search.test_run import SMOKE, _cli, _env, _ray_stop

A = {"dataset": "emt:alloys?n=80&seed=0", "property": "bulk_modulus", "label": "B (EMT)"}
B = {"dataset": "emt:alloys?n=80&seed=0", "property": "volume_per_atom"}
FE = {"dataset": "emt:alloys?n=120&seed=1", "property": "formation_energy_per_atom"}
LA, LB, LFE = (f"{d['dataset']}/{d['property']}" for d in (A, B, FE))


def test_two_target_study_reports_an_atlas(tmp_path):
    env = _env(tmp_path)
    data = yaml.safe_load(SMOKE.read_text())
    data["name"] = "atlas-smoke"
    data["data"] = {"targets": [A, B], "pretrain_sources": [FE, A, B]}
    data["search"].update(strategy=["scratch", "finetune"], freeze=["all_unfrozen"], ft_size=[30], ft_lr=0.002)
    data["budget"] = {"trials": 6, "max_epochs": 3, "pt_epochs": 2, "repeats": 2}
    data["scheduler"] = {"type": "none"}
    spec = tmp_path / "space.yaml"
    spec.write_text(yaml.safe_dump(data))
    val = _cli("validate", str(spec), env=env, timeout=120)
    assert val.returncode == 0 and "2 targets B (EMT) (emt:alloys?n=80&seed=0/bulk_modulus)" in val.stdout, val.stdout
    try:
        proc = _cli("run", str(spec), "--storage", str(tmp_path / "exp"), env=env, timeout=900)
    finally:
        _ray_stop(env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "data (targets.0): B (EMT): 80 used" in proc.stdout and "data (targets.1)" in proc.stdout
    exp = tmp_path / "exp" / "atlas-smoke"
    trials = pl.read_parquet(exp / "trials.parquet")
    # every target got its three trials: scratch and PT->FT from each of its two sources (never itself)
    got = sorted(trials.select("target", "strategy", "pt_source").iter_rows())
    assert got == sorted([(LA, "scratch", None), (LA, "finetune", LFE), (LA, "finetune", LB),
                          (LB, "scratch", None), (LB, "finetune", LFE), (LB, "finetune", LA)]), got
    assert (trials["state"] == "finished").all()
    # one PT model per source, shared by both targets: 3 sources -> 3 models, the FE one used by 2 trials
    keys = trials.filter(pl.col("strategy") == "finetune").group_by("pt_source").agg(pl.col("pt_key").n_unique())
    assert keys["pt_key"].to_list() == [1, 1, 1]
    fe = trials.filter(pl.col("pt_source") == LFE)
    assert fe.height == 2 and fe["pt_key"].n_unique() == 1
    s = json.loads((exp / "summary.json").read_text())
    assert s["targets"] == [LA, LB] and [z["target"] for z in s["by_ft_size"]] == [LA, LB]
    assert all(z["best_scratch"] and z["best_transfer"] for z in s["by_ft_size"])
    (atlas,) = s["atlas"]
    assert atlas["ft_size"] == "30" and atlas["sources"] == [LFE, LA, LB] and atlas["targets"] == [LA, LB]
    cells = {(c["source"], c["target"]): c for c in atlas["cells"]}
    assert "never a PT source for itself" in cells[(LA, LA)]["note"]
    for cell in (cells[(LFE, LA)], cells[(LB, LA)], cells[(LFE, LB)], cells[(LA, LB)]):
        g = cell["gain_pct"]
        assert g["n"] == 2 and g["std"] is not None and cell["freeze"] == "all_unfrozen"
        # the gain is the paired one against that target's scratch trial
        scratch = trials.filter((pl.col("target") == cell["target"]) & (pl.col("strategy") == "scratch")).row(
            0, named=True)
        ft = trials.filter(pl.col("trial") == cell["trial"]).row(0, named=True)
        paired = [100 * (b - c) / b for b, c in zip(scratch["test_mae_per_repeat"], ft["test_mae_per_repeat"])]
        assert abs(g["mean"] - sum(paired) / 2) < 1e-9
    report = (exp / "report.md").read_text()
    assert "Transferability atlas" in report and "(all_unfrozen)" in report.split("Transferability atlas")[1]
    assert (exp / "plots" / "atlas.png").exists() and (exp / "plots" / "learning_curves_1.png").exists()
    assert sum(c.startswith("B (EMT), 30 samples:") for c in s["conclusions"]) == 1
    st = _cli("status", str(exp), env={**env, "COLUMNS": "300"}, timeout=120)
    assert st.returncode == 0 and "best for B (EMT) at FT size 30" in st.stdout, st.stdout
    # the selected model of each target: predict needs --target, and exports are named by property
    pred = _cli("predict", str(exp), "emt:alloys?n=5&seed=9", env=env, timeout=300)
    assert pred.returncode == 2 and "--target with one of" in pred.stderr + pred.stdout
    exp_out = _cli("export", str(exp), str(tmp_path / "models"), env=env, timeout=300)
    assert exp_out.returncode == 0, exp_out.stdout + exp_out.stderr
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == [
        "atlas-smoke-bulk_modulus-ft30", "atlas-smoke-volume_per_atom-ft30"]
    pred = _cli("predict", str(exp), "emt:alloys?n=5&seed=9", "--target", "volume_per_atom", env=env, timeout=300)
    assert pred.returncode == 0 and "property volume_per_atom" in pred.stderr, pred.stderr
