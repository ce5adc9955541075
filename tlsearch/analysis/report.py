"""``tlsearch report EXPERIMENT_DIR``: the study's conclusions with their evidence.

Writes into the experiment directory: ``trials.parquet`` and ``history.parquet`` (schemas in
:mod:`tlsearch.analysis._schema`), ``summary.json`` (the conclusions, machine-readable), ``plots/*.png``,
``report.md`` and a self-contained ``report.html``. Imports neither torch nor Ray.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from tlsearch._io import write_atomic
from tlsearch.analysis import _analyse as A
from tlsearch.analysis import _plots as P
from tlsearch.analysis._atlas import atlas, atlas_section
from tlsearch.analysis._importance import importances
from tlsearch.analysis._load import load_trials
from tlsearch.analysis._pareto import pareto, pareto_section
from tlsearch.analysis._pareto import plot as pareto_plot
from tlsearch.analysis._render import Doc, html_page, markdown
from tlsearch.analysis.selected import selected
from tlsearch.search.experiment import Experiment


@dataclass
class Report:
    summary: dict[str, Any]
    markdown: Path
    html: Path
    summary_json: Path
    trials: Path

    @property
    def conclusions(self) -> list[str]:
        return self.summary["conclusions"]


def analyse(exp: Experiment, trials: pl.DataFrame) -> dict[str, Any]:
    import optuna

    spec = exp.spec()
    names, targets = spec.data.names(), [t.label for t in spec.data.ft_targets]
    several = len(targets) > 1
    listed = [str(x) for x in spec.search.ft_size]
    sizes = A.by_targets(trials, targets, names)
    lines: list[dict[str, Any]] = []
    for target in targets:  # the conclusions: per target, every listed size (a line also where none finished)
        tt = trials.filter(pl.col("target") == target) if several else trials
        seen = {x for x in tt["ft_size"].to_list() if x is not None}
        un = A.unfinished_sizes(tt, target, listed + sorted(seen - set(listed), key=A.size_key), names)
        lines += sorted([z for z in sizes if z["target"] == target] + un, key=lambda z: A.size_key(z["ft_size"]))
    try:
        study = optuna.load_study(study_name=spec.name, storage=exp.optuna_storage())
        imps, notes = importances(study)
    except KeyError:
        imps, notes = {"all": "the study has no trials"}, []
    conclusions = [z["conclusion"] for z in lines] or ["No trial has started yet: nothing to conclude."]
    fronts = pareto(trials, targets, listed, names) if spec.multi_objective else None
    conclusions += [z["conclusion"] for z in fronts or []]
    sources = [p.label for p in spec.data.pretrain_sources]
    return {"experiment": spec.name, "directory": exp.where, "target": targets[0], "targets": targets,
            "atlas": atlas(trials, targets, sources, listed) if several else None,
            "objectives": spec.objectives, "pareto": fronts,
            "selection": "validation MAE (the objective); test MAE of the selected trials is reported, "
                         "never used to select",
            "repeats": spec.budget.repeats, "trials": A.counts(trials), "conclusions": conclusions,
            "by_ft_size": sizes, "learning_curves": A.learning_curves([z for z in sizes if z["target"] == targets[0]]),
            "learning_curves_by_target": {t: A.learning_curves([z for z in sizes if z["target"] == t])
                                          for t in targets} if several else None, "importance": imps,
            "importance_notes": notes,
            "compute": A.compute(trials, spec.budget.repeats), "failed": A.failures(trials),
            "eval_sets": [e.label for e in spec.data.eval_sets], "labels": names,
            "selected_models": selected(exp, trials, sizes), "data": exp.data_quality(),
            "imported": trials.filter(pl.col("imported_from").is_not_null())
            .select("trial", "imported_from").to_dicts()}


def _pm(e: dict[str, Any]) -> str:
    return f"{e['test_mae']:.4g} +/- {e['test_mae_std']:.2g}" if e["repeats"] > 1 else f"{e['test_mae']:.4g}"


def _gain(e: dict[str, Any]) -> str:
    g = e.get("gain_vs_scratch_pct")
    if not g:
        return ""
    return f"{g['mean']:+.1f} %" + (f" +/- {g['std']:.1f}" if g["std"] is not None else "")


def _at(z: dict[str, Any], s: dict[str, Any], names: dict[str, str]) -> str:
    """A condition as a heading names it: 'FT size 100', or 'n, FT size 100' in a study with several targets."""
    several = len(s.get("targets") or []) > 1
    return f"{A.short(z['target'], names)}, FT size {z['ft_size']}" if several else f"FT size {z['ft_size']}"


def _size(z: dict[str, Any], s: dict[str, Any], names: dict[str, str]) -> str:
    """A condition in a table's FT-size column: '100', or 'n 100' with several targets."""
    several = len(s.get("targets") or []) > 1
    return f"{A.short(z['target'], names)} {z['ft_size']}" if several else str(z["ft_size"])


def document(s: dict[str, Any], plots: dict[str, Path | None]) -> Doc:
    doc = Doc(f"tlsearch report: {s['experiment']}")
    doc.items(s["conclusions"])
    c, names = s["trials"], s.get("labels") or {}
    targets = s.get("targets") or [s["target"]]
    what = (f"Target property: {A.short(s['target'], names)}. Strategies are compared per FT size" if len(targets) == 1
            else f"Target properties: {', '.join(A.short(t, names) for t in targets)}. Strategies are compared per "
                 "target and FT size")
    doc.p(f"{what}; within each, the "
          f"configuration with the lowest validation MAE is selected and its held-out test MAE is reported "
          f"(mean +/- std over {s['repeats']} repeat(s): different FT samples and seeds, the same in every trial). "
          f"Gains are relative to the best scratch configuration, paired by repeat; positive = lower test MAE. "
          f"Trials: {c['total']} ({c['finished']} finished, {c['stopped_early']} stopped early by the scheduler, "
          f"{c['stopped_budget']} stopped by the time budget, "
          f"{c['failed']} failed, {c['running'] + c['pending']} unfinished). Only finished trials are cited."
          + (f" {len(s['imported'])} of the finished trials were imported from earlier studies (warm start: their "
             "recorded results, not retrained; marked 'finished (imported)' below)." if s.get("imported") else ""))
    if names:
        doc.p("Data labels (space.yaml): " + "; ".join(f"{n} = {ref}" for ref, n in names.items()) + ".")
    selected_section(doc, s["selected_models"])
    doc.h("Best strategy per FT size and family")
    for z in s["by_ft_size"]:
        doc.h(f"{_at(z, s, names)} ({z['n_train']} training structures, {z['finished_trials']} finished trials)", 3)
        sel = z.get("selection") or {}
        if sel.get("cells"):
            folds = z["families"][0].get("cv_folds") or 1
            how = (f"{folds}-fold cross-validation x {s['repeats']} repeat(s): validation MAE is out-of-fold over the "
                   f"whole FT sample, test MAE the fold ensemble's" if folds > 1 else
                   "one train/validation split per repeat")
            doc.p(f"Selection: {how}. P(best) is each family's probability of being best under a paired bootstrap "
                  f"over the {sel['cells']} validation cells ({sel['unit']}); a winner is named at >= "
                  f"{sel['clear_at']:g}.")
        doc.table(["family", "trial", "configuration", "val MAE", "P(best)", "test MAE", "gain vs scratch", "R^2"],
                  [[A.family_name(f["family"], names), f["trial"], A.describe(f, names), f["val_mae"],
                    "" if f.get("p_best") is None else f"{f['p_best']:.2f}", _pm(f), _gain(f), f["test_r2"]]
                   for f in z["families"]])
    doc.h("Freeze strategies (transfer trials, ranked by validation MAE)")
    for z in s["by_ft_size"]:
        ranking = z["freeze_ranking"]
        if len(ranking) < 2:
            doc.p(f"{_at(z, s, names)}: " + ("no transfer trial finished: nothing to rank." if not ranking else
                                                 f"only {ranking[0]['freeze']} finished: nothing to rank."))
            continue
        doc.p(f"{_at(z, s, names)}:")
        doc.table(["rank", "freeze", "trials", "median val MAE", "best val MAE", "its test MAE", "gain vs scratch"],
                  [[i + 1, r["freeze"], r["trials"], r["median_val_mae"], r["val_mae"], _pm(r), _gain(r)]
                   for i, r in enumerate(ranking)])
    doc.img(plots.get("freeze"), "Test MAE of the best configuration per freeze strategy and FT size")
    doc.h("Sampling schemes (ranked by validation MAE)")
    schemes = {r["sampling"] for z in s["by_ft_size"] for r in z["sampling_ranking"]}
    if len(schemes) < 2:
        doc.p(f"One sampling scheme ({', '.join(sorted(schemes)) or 'none finished'}): nothing to rank.")
    for z in s["by_ft_size"] if len(schemes) > 1 else []:
        doc.table(["FT size", "rank", "sampling", "trials", "best val MAE", "its test MAE", "gain vs scratch"],
                  [[_size(z, s, names), i + 1, r["sampling"], r["trials"], r["val_mae"], _pm(r), _gain(r)]
                   for i, r in enumerate(z["sampling_ranking"])])
    doc.h("Pre-training source and MPT property set")
    rows = []
    for z in s["by_ft_size"]:
        for kind, e in (("PT source", z["best_pt_source"]), ("MPT set", z["best_mpt_set"])):
            if e:
                what = (A.short(e["pt_source"], names) if kind == "PT source"
                        else " + ".join(names.get(p, p) for p in e["mpt_properties"].split(" + ")))
                rows.append([_size(z, s, names), kind, what, e["val_mae"], _pm(e), _gain(e)])
    doc.table(["FT size", "kind", "best", "val MAE", "test MAE", "gain vs scratch"], rows)
    if not rows:
        doc.p("No transfer trial finished.")
    if s.get("atlas"):
        atlas_section(doc, s["atlas"], names, plots.get("atlas"))
    if s.get("pareto"):
        pareto_section(doc, s["pareto"], names, plots.get("pareto"))
    if s["eval_sets"]:
        doc.h("Out-of-domain evaluation sets (MAE of each family's best model)")
        doc.p("Each family's best model (selected by validation MAE) on the target's held-out test set (in-domain) "
              "and on every structure of each evaluation set; mean over the repeats.")
        doc.table(["FT size", "family", "test MAE (in-domain)", *[names.get(e, e) for e in s["eval_sets"]]],
                  [[_size(z, s, names), A.family_name(f["family"], names), _pm(f),
                    *[f["eval_mae"].get(e) for e in s["eval_sets"]]]
                   for z in s["by_ft_size"] for f in z["families"]])
        if not any(f["eval_mae"] for z in s["by_ft_size"] for f in z["families"]):
            doc.p("No finished trial has evaluation-set results yet (they are computed when a trial finishes).")
    doc.h("Learning curves")
    for i, t in enumerate(targets if len(targets) > 1 else []):
        doc.img(plots.get(f"curves_{i}"), f"{A.short(t, names)}: test MAE vs FT training structures, best "
                "configuration per family")
    doc.img(plots.get("curves"), "Test MAE vs FT training structures, best configuration per family")
    doc.img(plots.get("heatmap"), "Test MAE of each family's best configuration at each FT size")
    doc.img(plots.get("parity"), "Parity of the best model per FT size (held-out test set, first repeat)")
    doc.h("Parameter importance (PED-ANOVA on the validation MAE)")
    doc.p("Over all trials with a value and per strategy branch; the FT size is a condition, not a parameter, "
          "and is left out.")
    for branch, v in s["importance"].items():
        if isinstance(v, dict):
            doc.p(f"{branch}: " + ", ".join(f"{k} {x:.2f}" for k, x in v.items()))
        else:
            doc.p(f"{branch}: {v}")
    doc.items([f"caveat: {n}" for n in s["importance_notes"]])
    doc.img(plots.get("importance"), "Importance of each searched parameter, overall and per strategy branch")
    m = s["compute"]
    doc.h("Search progress and compute")
    doc.items([f"FT trial-epochs spent: {m['ft_trial_epochs']} ({m['full_budget_trial_epochs']} if every trial had "
               f"run all its epochs and repeats); early stopping saved {m['saved_by_early_stopping']} "
               f"({m['saved_pct']:.0f} %, {m['stopped_early']} trials stopped)",
               f"PT: {m['pt_models']} model(s), {m['pt_epochs']} epochs, {m['pt_seconds']:.0f} s, shared by "
               f"{m['trials_using_pt']} trials ({m['pt_epochs_per_transfer_trial']:.1f} PT epochs per transfer trial)",
               f"total trial wall time in Ray: {m['trial_seconds']:.0f} s"])
    doc.img(plots.get("progress"), "Best validation MAE so far vs trials and vs compute")
    doc.h("Failed trials")
    doc.table(["trial", "family", "reason"],
              [[f["trial"], A.family_name(f["family"], names), f["error"]] for f in s["failed"]])
    if not s["failed"]:
        doc.p("None.")
    return doc


def selected_section(doc: Doc, models: list[dict[str, Any]]) -> None:
    """The selected model per FT size (per target and FT size in a study with several): where its weights are and
    the commands that use it (with ``--target`` where the study has several targets)."""
    if not models:
        return
    several = any("target_option" in m for m in models)
    doc.h("Selected models")
    doc.p(f"The model of each {'target and ' if several else ''}FT size's best configuration (lowest validation MAE), "
          "one file per repeat in its model directory. Predict with it as an ensemble over the repeats (mean and "
          "spread per structure) or export it as a self-contained directory with a model card"
          + (" (`--target` chooses the target's model)" if several else "") + ":")
    doc.table(["target"] * several + ["FT size", "trial", "configuration", "test MAE", "model directory"],
              [[m["target_name"]] * several + [m["ft_size"], m["trial"], m["configuration"], _pm(m),
                                               m["model_location"] or "(no weights kept)"] for m in models])
    doc.items([(f"{m['target_name']}, " if several else "") + f"FT size {m['ft_size']}: `{m['commands']['predict']}`; "
               f"`{m['commands']['export']}`" for m in models])


def data_section(doc: Doc, data: list[dict[str, Any]]) -> None:
    """Per dataset the study used: entries, used, skipped by reason with the ids, target statistics, test size."""
    doc.h("Data")
    if not data:
        doc.p("No data record: the experiment was started before `tlsearch run` recorded one (data.json).")
        return
    doc.table(["dataset", "role", "entries", "used", "skipped", "target mean +/- std [min, max]", "held-out test"],
              [[q["label"] or f"{q['ref']}/{q['property']}", q["role"].removeprefix("data."), q["entries"], q["used"],
                ", ".join(f"{n} {r}" for r, n in q["skipped_by_reason"].items()) or "0", _target(q["target"]),
                q.get("test", "-")] for q in data])
    doc.p("used: entries with a finite value (and a graph, where the graphs were checked) that trials can take. The "
          "target's held-out test structures are among them and never trained on; pre-training draws its sample "
          "(data.pt_sample_size) from the PT entries with the target's test structures left out.")
    for ref, uses in _by_dataset(data).items():  # a dataset of several uses (target and PT source): listed once
        entries = list({(e["id"], e["reason"], e["detail"]): e for q in uses for e in q["skipped_entries"]}.values())
        if not entries:
            continue
        roles: dict[str, list[str]] = {}  # each property it is used for -> its roles
        for q in uses:
            roles.setdefault(q["property"], []).append(q["role"].removeprefix("data."))
        named = {q["property"]: q["label"] for q in uses if q["label"]}
        used_as = "; ".join(f"{named.get(p, p)}: {', '.join(r)}" for p, r in roles.items())
        listed = entries[:50]
        # data.json keeps at most quality.MAX_LISTED entries of each use; the counts by reason are complete
        total = len(entries) + max(q["skipped"] - len(q["skipped_entries"]) for q in uses)
        more = total - len(listed)
        doc.p(f"{ref} ({used_as}): {total} skipped entr{'y' if total == 1 else 'ies'}, each listed once for all "
              "its uses:")
        doc.items([f"skipped {e['id']}: {e['reason']}" + (f" ({e['detail']})" if e["detail"] else "")
                   for e in listed]
                  + ([f"... {more} more (data.json; all of them: `tlsearch data describe {ref} --graphs`)"]
                     if more else []))
    if not any(q["graphs_checked"] for q in data):
        doc.p("Graph-level failures (isolated atoms, too few neighbours) are found when the trials build graphs; "
              "`tlsearch data describe DATASET --graphs` lists them before a study.")


def _by_dataset(data: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """The data records (one per use: role and property) of each dataset reference, in the order of first use."""
    out: dict[str, list[dict[str, Any]]] = {}
    for q in data:
        out.setdefault(q["ref"], []).append(q)
    return out


def _target(t: dict[str, Any]) -> str:
    return f"{t['mean']:.4g} +/- {t['std']:.3g} [{t['min']:.4g}, {t['max']:.4g}]" if t.get("count") else "-"


def all_trials_table(doc: Doc, trials: pl.DataFrame, names: dict[str, str] | None = None) -> None:
    doc.h("All trials")
    doc.table(["trial", "state", "family", "freeze", "FT size", "sampling", "ft_lr", "val MAE", "test MAE", "epochs"],
              [[r["trial"], r["state"] + (" (imported)" if r["imported_from"] else ""),
                A.family_name(r["family"], names), r["freeze"], r["ft_size"], r["sampling"],
                r["ft_lr"], r["val_mae"], r["test_mae"], r["epochs_run"]]
               for r in trials.sort("trial").iter_rows(named=True)])
    doc.p("Every column of every trial: trials.parquet (schema: docs/report.md); per-epoch history: history.parquet.")


def build_report(exp: Experiment | str | Path) -> Report:
    exp = exp if isinstance(exp, Experiment) else Experiment.open(exp)
    trials, history = load_trials(exp)
    root = exp.root
    for name, df in (("trials.parquet", trials), ("history.parquet", history)):
        tmp = root / f".{name}.tmp"
        df.write_parquet(tmp)
        tmp.replace(root / name)
    s = analyse(exp, trials)
    pdir = root / "plots"
    names, several = s["labels"], len(s["targets"]) > 1
    conds = [{**z, "ft_size": _size(z, s, names)} for z in s["by_ft_size"]]  # 'n 100' with several targets
    best = [(z["ft_size"], z["best"], trials.filter(pl.col("trial") == z["best"]["trial"])["predictions"][0])
            for z in conds]
    plots = {"curves": None if several else P.learning_curves(s["learning_curves"], s["target"],
                                                              pdir / "learning_curves.png", names),
             **{f"curves_{i}": P.learning_curves(s["learning_curves_by_target"][t], t,
                                                 pdir / f"learning_curves_{i}.png", names)
                for i, t in enumerate(s["targets"] if several else [])},
             "heatmap": P.heatmap(conds, pdir / "strategy_size_heatmap.png", names),
             "freeze": P.freeze_effect(conds, pdir / "freeze_effect.png"),
             "parity": P.parity(best, s["target"], pdir / "parity_best.png", names,
                                [z["target"] for z in conds] if several else None),
             "atlas": P.atlas(s["atlas"], pdir / "atlas.png", names) if s["atlas"] else None,
             "pareto": pareto_plot(s["pareto"], pdir / "pareto.png", names) if s["pareto"] else None,
             "importance": P.importance(s["importance"], pdir / "importance.png"),
             "progress": P.progress(trials, pdir / "search_progress.png")}
    s["plots"] = {k: str(v.relative_to(root)) for k, v in plots.items() if v is not None}
    doc = document(s, plots)
    data_section(doc, s["data"])
    all_trials_table(doc, trials, names)
    paths = {"summary": root / "summary.json", "md": root / "report.md", "html": root / "report.html"}
    write_atomic(paths["summary"], json.dumps(s, indent=1, default=str).encode())
    write_atomic(paths["md"], markdown(doc, root).encode())
    write_atomic(paths["html"], html_page(doc).encode())
    return Report(s, paths["md"], paths["html"], paths["summary"], root / "trials.parquet")
