"""The questions a study answers, computed from the trials table alone (``trials.parquet``).

Selection is by the validation metric only; the held-out test numbers of the selected trials are what the
report states (mean and spread over repeats). Only finished trials are cited. Gains over scratch are paired
by repeat (repeat i of every trial uses the same FT sample seed), so their spread is the spread of the
paired differences.
"""

from __future__ import annotations

import json
import math
import re
import statistics
from typing import Any

import polars as pl

from tlsearch.search.selection import verdict

FREEZE_WORDS = {
    "all_unfrozen": "all layers retrained",
    "2b": "2B freezing (head, node updates and GCN layers retrained)",
    "3b": "3B freezing (head and line-graph edge updates retrained)",
    "new_head": "a new MLP head on a frozen body (NPH)",
    "last_layer": "only the last layer retrained",
}


STATE_WORDS = {"stopped_early": "stopped early by the scheduler", "stopped_budget": "stopped by the time budget"}


def short(label: str | None, names: dict[str, str] | None = None) -> str:
    """The name a reader sees for a dataset property: its ``label:`` in the spec (``names``: ``dataset/property``
    -> label), else the reference without its source: 'matminer2018:flla_2015/formation_energy_per_atom' ->
    'flla_2015/formation_energy_per_atom'."""
    if label is None:
        return ""
    return (names or {}).get(label) or label.split(":", 1)[-1]


def family_members(family: str | None) -> tuple[str, list[str]] | None:
    """A transfer family's kind and data: 'MPT(a/x + b/y)' -> ('MPT', ['a/x', 'b/y']); None for scratch."""
    m = re.fullmatch(r"(PT->FT|MPT)\((.*)\)", family or "")
    return (m.group(1), m.group(2).split(" + ")) if m else None


def family_name(family: str | None, names: dict[str, str] | None = None) -> str | None:
    """A strategy family as a reader sees it: 'PT->FT(folder:/data/g/target)' -> 'PT->FT(G_VRH (MP))' for the
    labelled data; unchanged without labels (trials.parquet and summary.json keep the family itself)."""
    parts = family_members(family)
    if not parts or not names:
        return family
    return f"{parts[0]}({' + '.join(names.get(p, p) for p in parts[1])})"


def size_key(size: str) -> tuple[int, float]:
    return (1, math.inf) if not size.isdigit() else (0, float(size))


def finished(trials: pl.DataFrame) -> pl.DataFrame:
    return trials.filter((pl.col("state") == "finished") & pl.col("test_mae").is_not_null()
                         & pl.col("val_mae").is_not_null())


def best_by_val(df: pl.DataFrame) -> dict[str, Any] | None:
    if df.height == 0:
        return None
    return df.sort(["val_mae", "trial"]).row(0, named=True)


def gain_pct(cand: dict[str, Any], base: dict[str, Any]) -> dict[str, Any]:
    """Test-MAE gain of ``cand`` over ``base`` in % (positive: cand is better), paired by repeat."""
    c, b = cand.get("test_mae_per_repeat") or [], base.get("test_mae_per_repeat") or []
    n = min(len(c), len(b))
    if n >= 1:
        g = [100.0 * (b[i] - c[i]) / b[i] for i in range(n) if b[i]]
        if g:
            return {"mean": statistics.mean(g), "std": statistics.stdev(g) if len(g) > 1 else None, "n": len(g)}
    return {"mean": 100.0 * (base["test_mae"] - cand["test_mae"]) / base["test_mae"], "std": None, "n": 1}


def pct(x: float) -> str:
    """A percentage with its significant digits: 12 %, 4.7 %, 0.31 % (never "0 %" for a small spread)."""
    return f"{x:.0f}" if abs(x) >= 10 else f"{x:.2g}"


def _clear(g: dict[str, Any]) -> bool:
    """A gain is stated as a difference only when it exceeds its spread over repeats."""
    return g["std"] is None or abs(g["mean"]) > g["std"]


def _entry(r: dict[str, Any], scratch: dict[str, Any] | None) -> dict[str, Any]:
    keys = ("trial", "family", "strategy", "pt_source", "mpt_properties", "freeze", "reinit_head", "sampling",
            "ft_lr", "pt_lr", "batch_size", "n_train", "repeats", "val_mae", "val_mae_std", "test_mae",
            "test_mae_std", "test_r2", "test_mae_per_repeat", "epochs_run", "cv_folds", "val_mae_per_fold",
            "test_mae_per_fold", "cost")
    out = {k: r.get(k) for k in keys}
    out["eval_mae"] = json.loads(r["eval_mae"]) if r["eval_mae"] else {}
    out["gain_vs_scratch_pct"] = gain_pct(r, scratch) if scratch and r["trial"] != scratch["trial"] else None
    return out


def _ranking(df: pl.DataFrame, col: str, scratch: dict[str, Any] | None) -> list[dict[str, Any]]:
    out = []
    for (value,), g in df.filter(pl.col(col).is_not_null()).group_by([col]):
        b = best_by_val(g)
        out.append({col: value, "trials": g.height, "median_val_mae": g["val_mae"].median(), **_entry(b, scratch)})
    return sorted(out, key=lambda e: e["val_mae"])


def describe(r: dict[str, Any], names: dict[str, str] | None = None) -> str:
    """One line a materials scientist can read: the strategy of a trial."""
    if r["strategy"] == "scratch":
        return f"training from scratch, lr {r['ft_lr']:.1e}"
    src = (f"PT on {short(r['pt_source'], names)}" if r["strategy"] == "finetune"
           else f"MPT on {' + '.join(short(p, names) for p in (r['mpt_properties'] or '').split(' + '))}")
    fr = r["freeze"] or ""
    words = FREEZE_WORDS.get(fr, f"the first {fr[6:]} blocks frozen" if fr.startswith("depth=") else fr)
    head = ", head re-initialised" if r.get("reinit_head") else ""
    return f"{src} -> FT with {words}{head}, lr {r['ft_lr']:.1e}"


def _mae(r: dict[str, Any]) -> str:
    if r["repeats"] and r["repeats"] > 1:
        return f"{r['test_mae']:.4g} +/- {r['test_mae_std']:.2g}"
    return f"{r['test_mae']:.4g}"


def conclusion(target: str, size: str, best: dict[str, Any], scratch: dict[str, Any] | None,
               best_tl: dict[str, Any] | None, stopped_tl: dict[str, Any] | None = None,
               names: dict[str, str] | None = None) -> str:
    """``stopped_tl``: transfer trials the scheduler (ASHA, successive halving, median rule) stopped at this size
    ({"n", "epochs", "val_mae"}), said when none finished, so the reader learns why there is no comparison.
    ``names``: the spec's data labels (``dataset/property`` -> label)."""
    head = f"{short(target, names)}, {size} samples: "
    reps = f"{best['repeats']} repeat{'s' if best['repeats'] != 1 else ''}"
    if best["strategy"] != "scratch":
        if scratch is None:
            return head + (f"{describe(best, names)} is best (test MAE {_mae(best)}, {reps}); no scratch trial "
                           "finished at this size to compare with.")
        g = gain_pct(best, scratch)
        spread = f" +/- {pct(g['std'])} %" if g["std"] is not None else ""
        verb = "beats" if g["mean"] >= 0 else "trails"
        note = "" if _clear(g) else "; within the spread of the repeats: not a clear difference"
        return (head + f"{describe(best, names)} {verb} scratch by {pct(abs(g['mean']))} %{spread} ({reps}; test MAE "
                f"{_mae(best)} vs {_mae(scratch)}{note}).")
    if best_tl is None:
        why = ""
        if stopped_tl and stopped_tl["n"]:
            n = stopped_tl["n"]
            why = (f" ({n} {'was' if n == 1 else 'were'} stopped early by the scheduler after "
                   f"{stopped_tl['epochs']} epochs, "
                   f"behind the trials recorded at that epoch; best validation MAE then {stopped_tl['val_mae']:.4g})")
        return (head + f"{describe(best, names)} is best (test MAE {_mae(best)}, {reps}); "
                f"no transfer trial finished at this size{why}.")
    g = gain_pct(best_tl, best)
    spread = f" +/- {pct(g['std'])} %" if g["std"] is not None else ""
    note = "" if _clear(g) else " (within the spread of the repeats: not a clear difference)"
    rel = "worse" if g["mean"] < 0 else "better on the test set, though not by validation"
    return (head + f"{describe(best, names)} is best (test MAE {_mae(best)}, {reps}); the best transfer strategy, "
            f"{describe(best_tl, names)}, is {pct(abs(g['mean']))} %{spread} {rel}{note}.")


def by_size(trials: pl.DataFrame, target: str, names: dict[str, str] | None = None) -> list[dict[str, Any]]:
    fin = finished(trials)
    out = []
    for size in sorted(fin["ft_size"].unique().to_list(), key=size_key):
        d = fin.filter(pl.col("ft_size") == size)
        best = best_by_val(d)
        scratch = best_by_val(d.filter(pl.col("strategy") == "scratch"))
        tl = d.filter(pl.col("strategy") != "scratch")
        best_tl = best_by_val(tl)
        families = [_entry(best_by_val(g), scratch) for _, g in d.group_by("family")]
        sel = verdict(families)
        for f in families:
            f["p_best"] = sel["p_best"].get(f["family"])
        out.append({
            "ft_size": size, "n_train": best["n_train"], "finished_trials": d.height,
            "best": _entry(best, scratch), "best_scratch": _entry(scratch, None) if scratch else None,
            "best_transfer": _entry(best_tl, scratch) if best_tl else None,
            "families": sorted(families, key=lambda e: e["val_mae"]),
            "freeze_ranking": _ranking(tl, "freeze", scratch),
            "sampling_ranking": _ranking(d, "sampling", scratch),
            "best_pt_source": _pick(d, "finetune", scratch), "best_mpt_set": _pick(d, "mpt", scratch),
            "selection": sel,
            "conclusion": conclusion(target, size, best, scratch, best_tl, _stopped_transfer(trials, size), names)
            + " " + selection_sentence(sel, names),
        })
    return out


def short_family(family: str | None, names: dict[str, str] | None = None) -> str | None:
    """A family with its data named as a reader sees them (:func:`short`): 'PT->FT(flla_2015/formation_energy...)'."""
    parts = family_members(family)
    return f"{parts[0]}({' + '.join(short(p, names) for p in parts[1])})" if parts else family


def selection_sentence(sel: dict[str, Any], names: dict[str, str] | None = None) -> str:
    """How sure validation is of the leading family (:func:`tlsearch.search.selection.verdict`), in words."""
    n, unit = sel["cells"], sel["unit"]
    how = f"{n} paired validation {'cells (fold x repeat)' if unit == 'fold x repeat' else 'repeats'}"
    p = sel["p_best"]
    if len(p) <= 1:
        return ""
    if any(v is None for v in p.values()):
        return (f"Validation has one value per configuration ({how}), so it cannot say how sure this choice is; "
                "more repeats or budget.cv_folds would.")
    fam = lambda f: short_family(f, names)  # noqa: E731
    if sel["clear"]:
        return f"Validation backs this family: probability of being best {p[sel['leader']]:.2f} over {how}."
    tied = ", ".join(f"{fam(f)} {p[f]:.2f}" for f in sel["tied"])
    cheap = (f"; the cheapest of them is {fam(sel['cheapest'])}" if sel.get("cheapest") and len(sel["tied"]) > 1
             else "")
    return (f"Validation does not separate the leading families (probability of being best over {how}: {tied}): "
            f"a tie{cheap}.")


def by_targets(trials: pl.DataFrame, targets: list[str], names: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """:func:`by_size` of each FT target (``dataset/property``, spec order) on its own trials, each entry with its
    ``target``: comparisons are made within a target and an FT size, never across."""
    out = []
    for t in targets:
        mine = trials.filter(pl.col("target") == t) if len(targets) > 1 else trials
        out += [{**z, "target": t} for z in by_size(mine, t, names)]
    return out


def unfinished_sizes(trials: pl.DataFrame, target: str, sizes: list[str],
                     names: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """A conclusion line for every FT size the spec lists that has no finished trial: what ran, how it ended,
    and the best partial validation MAE (marked as partial: never compared with finished trials)."""
    done = set(finished(trials)["ft_size"].to_list())
    out = []
    for size in sizes:
        if size in done:
            continue
        d = trials.filter(pl.col("ft_size") == size)
        states = {s: n for s, n in sorted(d.group_by("state").len().iter_rows()) if n}
        ran = ", ".join(f"{n} {STATE_WORDS.get(s, s)}" for s, n in states.items()) or "no trial started"
        part = d.filter(pl.col("val_mae").is_not_null())
        why = ""
        if part.height:
            b = best_by_val(part)
            why = (f"; best partial validation MAE so far {b['val_mae']:.4g} (trial {b['trial']}, {b['strategy']}, "
                   f"after {b['epochs_run'] or '?'} epochs; partial, not compared with finished trials)")
        out.append({"ft_size": size,
                    "conclusion": f"{short(target, names)}, {size} samples: no trial finished ({ran}){why}."})
    return out


def _stopped_transfer(trials: pl.DataFrame, size: str) -> dict[str, Any]:
    st = trials.filter((pl.col("ft_size") == size) & (pl.col("state") == "stopped_early")
                       & (pl.col("strategy") != "scratch") & pl.col("val_mae").is_not_null())
    if st.height == 0:
        return {"n": 0}
    lo, hi = int(st["epochs_run"].min()), int(st["epochs_run"].max())
    return {"n": st.height, "epochs": f"{lo}" if lo == hi else f"{lo}-{hi}", "val_mae": float(st["val_mae"].min())}


def _pick(d: pl.DataFrame, strategy: str, scratch: dict[str, Any] | None) -> dict[str, Any] | None:
    b = best_by_val(d.filter(pl.col("strategy") == strategy))
    return _entry(b, scratch) if b else None


def learning_curves(sizes: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    curves: dict[str, list[dict[str, Any]]] = {}
    for s in sizes:
        for f in s["families"]:
            curves.setdefault(f["family"], []).append({"ft_size": s["ft_size"], "n_train": f["n_train"],
                                                       "test_mae": f["test_mae"], "test_mae_std": f["test_mae_std"],
                                                       "trial": f["trial"]})
    return curves


def compute(trials: pl.DataFrame, repeats: int) -> dict[str, Any]:
    """Trial-epochs spent, PT counted once per stored model, and what early stopping saved."""
    ft = int(trials["epochs_run"].fill_null(0).sum())
    full = trials.height * int(trials["max_epochs"].max() or 0) * repeats if trials.height else 0
    stopped = trials.filter(pl.col("state") == "stopped_early")
    saved = int((stopped["max_epochs"] * repeats - stopped["epochs_run"].fill_null(0)).sum()) if stopped.height else 0
    pt = trials.filter(pl.col("pt_key").is_not_null()).unique("pt_key", keep="first")
    pt_users = trials.filter(pl.col("pt_key").is_not_null()).height
    pt_epochs = int(pt["pt_epochs"].fill_null(0).sum())
    return {"ft_trial_epochs": ft, "pt_models": pt.height, "pt_epochs": pt_epochs,
            "pt_seconds": float(pt["pt_seconds"].fill_null(0).sum()), "trials_using_pt": pt_users,
            "pt_epochs_per_transfer_trial": pt_epochs / pt_users if pt_users else 0.0,
            "total_epochs": ft + pt_epochs, "trial_seconds": float(trials["seconds"].fill_null(0).sum()),
            "full_budget_trial_epochs": full, "saved_by_early_stopping": saved,
            "saved_pct": 100.0 * saved / full if full else 0.0, "stopped_early": stopped.height}


def failures(trials: pl.DataFrame) -> list[dict[str, Any]]:
    f = trials.filter(pl.col("state") == "failed")
    return [{"trial": r["trial"], "family": r["family"], "params": json.loads(r["params"]), "error": r["error"]}
            for r in f.iter_rows(named=True)]


def counts(trials: pl.DataFrame) -> dict[str, int]:
    c = {s: 0 for s in ("finished", "stopped_early", "stopped_budget", "failed", "running", "pending")}
    for s in trials["state"].to_list():
        c[s] = c.get(s, 0) + 1
    return {"total": trials.height, **c}
