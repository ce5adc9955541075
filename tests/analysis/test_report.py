"""The report of a small real study (EMT data, real Ray, real training, W&B offline): its tables agree with a
computation by hand on trials.parquet, its conclusions trace back to trials.parquet, a diverging trial is
reported as failed with its reason, and report.html renders in real headless Chromium."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
import yaml

from tests.search.test_run import _env, _ray_stop
from tlsearch.analysis._schema import HISTORY, TRIALS

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """One real study, run once for the module through the CLI (about 1-2 minutes on 2 cores)."""
    tmp = tmp_path_factory.mktemp("report")
    data = yaml.safe_load((ROOT / "search_spaces" / "smoke.yaml").read_text())
    data["search"].update(strategy=["scratch", "finetune"], freeze=["all_unfrozen", "last_layer"],
                          reinit_head=[False, True], ft_size=[24, 48], sampling=["random", "stratified"])
    data["budget"] = {"trials": 10, "max_epochs": 4, "pt_epochs": 2, "repeats": 2}
    data["name"] = "rep"
    spec = tmp / "space.yaml"
    spec.write_text(yaml.safe_dump(data))
    env = _env(tmp)
    env["TLSEARCH_FAILPOINT"] = "nan:reinit_head=True"  # those trials diverge (weights poisoned after epoch 1)
    try:
        proc = subprocess.run([sys.executable, "-m", "tlsearch.cli.main", "run", str(spec), "--storage", str(tmp / "exp")],
                              env=env, capture_output=True, text=True, timeout=900)
    finally:
        _ray_stop(env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return {"exp": tmp / "exp" / "rep", "stdout": proc.stdout, "env": env}


def _trials(study) -> pl.DataFrame:
    return pl.read_parquet(study["exp"] / "trials.parquet")


def _summary(study) -> dict:
    return json.loads((study["exp"] / "summary.json").read_text())


def test_run_ends_with_the_conclusions_and_writes_every_output(study):
    exp, out = study["exp"], study["stdout"]
    assert "Conclusions" in out and "report: " in out and str(exp / "report.html") in out.replace("\n", "")
    for name in ("report.md", "report.html", "summary.json", "trials.parquet", "history.parquet"):
        assert (exp / name).stat().st_size > 0, name
    s = _summary(study)
    plots = {Path(p).name for p in s["plots"].values()}
    assert {"learning_curves.png", "strategy_size_heatmap.png", "parity_best.png", "search_progress.png"} <= plots
    # the freeze plot exactly when a transfer trial finished (the sampler decides whether one drew reinit_head
    # False, the only transfer trials that do not diverge here)
    t = _trials(study)
    tl_finished = t.filter((pl.col("strategy") != "scratch") & (pl.col("state") == "finished")).height
    assert ("freeze_effect.png" in plots) == (tl_finished > 0), (plots, tl_finished)
    for line in s["conclusions"]:
        assert line in out.replace("\n", " ") or line[:60] in out


def test_tables_have_the_documented_schema_and_one_row_per_trial(study):
    t = _trials(study)
    assert t.columns == list(TRIALS) and t.dtypes == [v[0] for v in TRIALS.values()]
    assert pl.read_parquet(study["exp"] / "history.parquet").columns == list(HISTORY)
    assert t.height == 10 and sorted(t["trial"].to_list()) == list(range(10))
    assert set(t["state"]) <= {"finished", "stopped_early", "failed"}
    fin = t.filter(pl.col("state") == "finished")
    assert fin.height >= 2 and fin["test_mae"].null_count() == 0
    for r in fin.iter_rows(named=True):  # means are the means of the per-repeat values
        assert r["repeats"] == 2 and math.isclose(r["test_mae"], statistics.mean(r["test_mae_per_repeat"]))
        assert math.isclose(r["test_mae_std"], statistics.stdev(r["test_mae_per_repeat"]))
        assert r["epochs_run"] <= 2 * r["max_epochs"] and r["ray_trial_id"]
        k = r["cv_folds"]  # the study's FT size is small: cross-validated (budget.cv_folds auto), one model per fold
        assert k > 1 and len(r["val_mae_per_fold"]) == len(r["test_mae_per_fold"]) == 2 * k
        assert math.isclose(r["val_mae"], statistics.mean(r["val_mae_per_repeat"]))
        for name in [f"model_fold{f}.pt" for f in range(k)] + [f"model_repeat1_fold{f}.pt" for f in range(k)]:
            assert (Path(r["model_dir"]) / name).is_file(), name
    assert t.filter(pl.col("state") != "finished")["model_dir"].null_count() == t.height - fin.height
    s = _summary(study)
    assert [(m["ft_size"], m["trial"]) for m in s["selected_models"]] == [(z["ft_size"], z["best"]["trial"])
                                                                        for z in s["by_ft_size"]]


def test_diverging_trials_are_failed_with_their_reason_and_the_rest_finish(study):
    t = _trials(study)
    reinit = t.filter(pl.col("reinit_head") == True)  # noqa: E712
    assert reinit.height >= 1 and set(reinit["state"]) == {"failed"}
    assert all("DivergenceError" in e or "loss became nan" in e for e in reinit["error"])
    assert t.filter(pl.col("state") == "finished").height >= 2
    s = _summary(study)
    assert sorted(f["trial"] for f in s["failed"]) == sorted(reinit["trial"])
    md = (study["exp"] / "report.md").read_text()
    assert "## Failed trials" in md and "loss became nan" in md
    st = subprocess.run([sys.executable, "-m", "tlsearch.cli.main", "status", str(study["exp"])], env=study["env"],
                        capture_output=True, text=True, timeout=120)
    assert st.returncode == 0 and "failed" in st.stdout and "loss became nan" in st.stdout.replace("\n", "")


def _best(d: pl.DataFrame) -> dict:
    return d.sort(["val_mae", "trial"]).row(0, named=True)


def test_per_size_tables_agree_with_a_computation_by_hand(study):
    t, s = _trials(study), _summary(study)
    fin = t.filter((pl.col("state") == "finished"))
    sizes = [z["ft_size"] for z in s["by_ft_size"]]
    assert sizes == sorted(set(fin["ft_size"]), key=int)
    for z in s["by_ft_size"]:
        d = fin.filter(pl.col("ft_size") == z["ft_size"])
        best = _best(d)
        assert z["best"]["trial"] == best["trial"] and z["best"]["test_mae"] == best["test_mae"]
        families = {f["family"]: f["trial"] for f in z["families"]}
        assert families == {fam: _best(g)["trial"] for (fam,), g in d.group_by(["family"])}
        scratch = d.filter(pl.col("strategy") == "scratch")
        for f in z["families"]:
            if scratch.height and f["family"] != "scratch":
                sc, me = _best(scratch), d.filter(pl.col("trial") == f["trial"]).row(0, named=True)
                gains = [100 * (a - b) / a for a, b in zip(sc["test_mae_per_repeat"], me["test_mae_per_repeat"])]
                assert math.isclose(f["gain_vs_scratch_pct"]["mean"], statistics.mean(gains))
                assert math.isclose(f["gain_vs_scratch_pct"]["std"], statistics.stdev(gains))
        tl = d.filter(pl.col("strategy") != "scratch")
        ranking = [r["freeze"] for r in z["freeze_ranking"]]
        assert ranking == [fr for fr, _ in sorted(((fr, _best(g)["val_mae"]) for (fr,), g in tl.group_by(["freeze"])),
                                                  key=lambda x: x[1])]
        assert [r["trials"] for r in z["freeze_ranking"]] == [tl.filter(pl.col("freeze") == fr).height for fr in ranking]


def test_compute_accounting_matches_the_trials(study):
    t, c = _trials(study), _summary(study)["compute"]
    assert c["ft_trial_epochs"] == t["epochs_run"].sum()
    stopped = t.filter(pl.col("state") == "stopped_early")
    assert c["saved_by_early_stopping"] == int((stopped["max_epochs"] * 2 - stopped["epochs_run"]).sum())
    keys = t.filter(pl.col("pt_key").is_not_null()).unique("pt_key")
    assert c["pt_models"] == keys.height and c["pt_epochs"] == keys["pt_epochs"].sum()


def test_conclusion_numbers_trace_back_to_trials_parquet(study):
    t, s = _trials(study), _summary(study)
    for z in s["by_ft_size"]:
        line, best = z["conclusion"], t.filter(pl.col("trial") == z["best"]["trial"]).row(0, named=True)
        assert line.startswith(f"alloys?n=80&seed=0/bulk_modulus, {z['ft_size']} samples: ")
        assert f"test MAE {best['test_mae']:.4g} +/- {best['test_mae_std']:.2g}" in line
        assert f"lr {best['ft_lr']:.1e}" in line
        m = re.search(r"(beats|trails) scratch by (\d+) %", line) or re.search(r"is (\d+) % .*?(worse|better)", line)
        if m and z["best_scratch"]:
            other = z["best"] if z["best"]["strategy"] != "scratch" else z["best_transfer"]
            g = other["gain_vs_scratch_pct"]["mean"]
            assert f"{abs(g):.0f} %" in line


def test_analysis_imports_neither_torch_nor_ray(study):
    code = ("import sys; from tlsearch.analysis import build_report; build_report(sys.argv[1]); "
            "bad = [m for m in ('torch', 'ray') if m in sys.modules]; assert not bad, bad")
    proc = subprocess.run([sys.executable, "-c", code, str(study["exp"])], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None and not os.environ.get("CI"), reason="no system Chromium (apt install chromium)")
def test_report_html_renders_in_headless_chromium(study):
    from playwright.sync_api import sync_playwright

    assert CHROMIUM, "CI must install Chromium (.ci/run)"
    html = study["exp"] / "report.html"
    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        try:
            page = browser.new_page()
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("requestfailed", lambda r: errors.append(f"request failed: {r.url}"))
            page.goto(html.as_uri(), wait_until="load")
            assert page.title().startswith("tlsearch report: rep")
            images = page.eval_on_selector_all("img", "els => els.map(e => [e.complete, e.naturalWidth, e.alt])")
            assert len(images) >= 5 and all(ok and w > 100 for ok, w, _ in images), images
            conclusions = page.eval_on_selector_all("ul.lead li", "els => els.map(e => e.textContent)")
            assert conclusions == _summary(study)["conclusions"]
            assert page.eval_on_selector_all("table", "els => els.length") >= 3
        finally:
            browser.close()
    assert errors == []


def test_docs_describe_the_current_schema():
    from tlsearch.analysis._schema import markdown_table

    doc = (ROOT / "docs" / "report.md").read_text()
    assert markdown_table(TRIALS) in doc and markdown_table(HISTORY) in doc
