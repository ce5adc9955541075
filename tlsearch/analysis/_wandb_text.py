"""The text of the W&B report's Conclusions block (markdown, from ``summary.json``): the conclusions, the best
configuration per FT size, the transferability atlas and the Pareto fronts of a two-objective study, imports
and failures. No W&B, torch or Ray here."""

from __future__ import annotations

from typing import Any


def intro(summary: dict[str, Any]) -> str:
    from tlsearch.analysis._analyse import family_name

    names = summary.get("labels") or {}  # the spec's data labels: dataset/property -> label
    target = summary.get("target", "?")
    shown = f"{names[target]} (`{target}`)" if target in names else f"`{target}`"
    lines = [f"Target property: {shown}. Strategies are compared per FT size; within "
             "each, the configuration with the lowest validation MAE is selected and its held-out test MAE "
             "is reported (`tlsearch report` writes the full report and summary.json).", "",
             *[f"- {c}" for c in summary.get("conclusions", [])]]
    rows = [(z["ft_size"], z["best"]) for z in summary.get("by_ft_size", []) if z.get("best")]
    if rows:
        lines += ["", "| FT size | best family | trial | val MAE | test MAE |", "|---|---|---|---|---|"]
        lines += [f"| {s} | {family_name(b.get('family', ''), names)} | {b.get('trial', '')} | "
                  f"{_num(b.get('val_mae'))} | {_num(b.get('test_mae'))}{_std(b.get('test_mae_std'))} |"
                  for s, b in rows]
    lines += _atlas_lines(summary, names)
    lines += _pareto_lines(summary, names)
    if summary.get("imported"):
        lines += ["", f"{len(summary['imported'])} finished trial(s) were imported from earlier studies (warm start: "
                  "recorded results, no W&B run of their own in this group): "
                  + ", ".join(f"trial {i['trial']} <- {i['imported_from']}" for i in summary["imported"][:20])]
    failed = summary.get("failed", [])
    if failed:
        lines += ["", f"{len(failed)} trial(s) failed; their errors are in report.md."]
    return "\n".join(lines)


def _atlas_lines(summary: dict[str, Any], names: dict[str, str]) -> list[str]:
    """The transferability atlas (several targets) as markdown tables: gain over scratch per PT source x target."""
    from tlsearch.analysis._analyse import short
    from tlsearch.analysis._atlas import cell_text

    out: list[str] = []
    for a in summary.get("atlas") or []:
        cells = {(c["source"], c["target"]): c for c in a["cells"]}
        out += ["", f"Transferability atlas, FT size {a['ft_size']} (gain over scratch, paired over repeats):", "",
                "| PT source | " + " | ".join(short(t, names) for t in a["targets"]) + " |",
                "|---|" + "---|" * len(a["targets"])]
        out += [f"| {short(src, names)} | " + " | ".join(cell_text(cells[(src, t)]) for t in a["targets"]) + " |"
                for src in a["sources"]]
    return out


def _pareto_lines(summary: dict[str, Any], names: dict[str, str]) -> list[str]:
    """The Pareto fronts of a two-objective study (validation MAE against cost) as markdown tables."""
    from tlsearch.analysis._analyse import family_name, short

    out: list[str] = []
    several = len({z["target"] for z in summary.get("pareto") or []}) > 1
    for z in summary.get("pareto") or []:
        if not z["front"]:
            continue
        at = f"{short(z['target'], names)}, FT size {z['ft_size']}" if several else f"FT size {z['ft_size']}"
        out += ["", f"Pareto front, {at} ({len(z['front'])} of {len(z['points'])} finished trials; cost: FT compute "
                "seconds + share of the PT model's):", "",
                "| trial | family | freeze | val MAE | test MAE | cost (s) |", "|---|---|---|---|---|---|"]
        out += [f"| {p['trial']} | {family_name(p['family'], names)} | {p.get('freeze') or ''} | "
                f"{_num(p['val_mae'])}{_std(p.get('val_mae_std'))} | {_num(p['test_mae'])}"
                f"{_std(p.get('test_mae_std'))} | {_num(p['cost'])} |" for p in z["front"]]
    return out


def _num(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, (int, float)) else ""


def _std(v: Any) -> str:
    return f" +/- {v:.2g}" if isinstance(v, (int, float)) and v > 0 else ""
