"""``tlsearch report EXPERIMENT_DIR --wandb``: the study's conclusions as a W&B Report, next to the runs.

Every trial is a W&B run (project ``spec.tracking.project``, group = the experiment name, config = the
parameters Optuna sampled, per-epoch ``val_mae``, then one final row with the test metrics). The report puts
the conclusions of ``summary.json`` on top and shows those runs grouped by strategy: parallel coordinates and
W&B's parameter importance over all of them, then, per FT size (test MAEs of different sizes are not
comparable), the MAE per strategy and the validation learning curves; in a two-objective study also the
Pareto fronts (tables) and validation MAE against FT compute seconds.

What the report contains is the data in :data:`SECTIONS` (the definition ``dashboards/README.md`` points
to); :func:`build_wandb_report` turns it into a ``wandb_workspaces`` Report without network access, and
:func:`publish_wandb_report` saves it (that needs an API key). Imports neither torch nor Ray; wandb and
wandb_workspaces are imported only when a report is built.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from tlsearch.analysis._wandb_text import intro
from tlsearch.errors import WandbPublishError
from tlsearch.search.dimensions import param_names

if TYPE_CHECKING:
    import wandb_workspaces.reports.v2 as wr

PanelKind = Literal["parallel_coordinates", "importance", "scatter", "bar", "line"]

OBJECTIVE = "val_mae"  # what Optuna minimised; parameter importance is computed with respect to it
GROUP_BY = "strategy"  # run config key every run set and grouped panel is grouped by
# Searched parameters in display order (the run config keys the search space can sample); the parallel
# coordinates plot shows those the study searched, plus any other sampled key (mpt_combo_<k>) after them.
PARAMS = param_names()  # from the table of dimensions (search/dimensions.py)
GRID_WIDTH = 24  # W&B panel grids are 24 units wide


@dataclass(frozen=True)
class PanelDef:
    """One panel. ``metrics``: run summary keys (y values, or the axes after the parameters); ``x``: the x
    axis (a logged history key for a line plot, a summary key for a scatter plot); ``agg``/``spread``: how
    the runs of one strategy are combined into one bar or line and the band drawn around it."""

    kind: PanelKind
    title: str
    metrics: tuple[str, ...]
    x: str | None = None
    agg: Literal["mean", "min", "max", "median"] | None = None
    spread: Literal["minmax", "stddev", "stderr"] | None = None
    width: int = 12


@dataclass(frozen=True)
class SectionDef:
    """A heading, a paragraph and a panel grid over one run set (the experiment's runs, grouped by
    strategy). With ``per_ft_size`` the section is repeated for each FT size in ``summary["by_ft_size"]``
    and its runs are filtered to that size; ``{ft_size}`` in the texts is replaced by it."""

    heading: str
    text: str
    panels: tuple[PanelDef, ...]
    per_ft_size: bool = False
    when: str | None = None  # a summary key: the section is there only when it is set (e.g. "pareto")


SECTIONS: tuple[SectionDef, ...] = (
    SectionDef(
        heading="Search space",
        text="All runs of the experiment, grouped by strategy. The axes are the searched parameters, then the "
             "validation and test MAE (each run's final value: the mean over repeats for a finished trial). "
             "W&B estimates importance from these runs; the conclusions above rest on PED-ANOVA over the "
             "Optuna study (summary.json).",
        panels=(
            PanelDef("parallel_coordinates", "Searched parameters -> validation and test MAE",
                     ("val_mae", "test_mae"), width=24),
            PanelDef("importance", "Parameter importance for the validation MAE", (OBJECTIVE,)),
            PanelDef("scatter", "Learning curve: test MAE vs FT training structures", ("test_mae",), x="n_train"),
        ),
    ),
    SectionDef(
        heading="FT size {ft_size}",
        text="Runs with FT sample size {ft_size}, grouped by strategy. Bars: median over the trials of a "
             "strategy, whiskers: min to max. The report selects by validation MAE and cites the test MAE.",
        per_ft_size=True,
        panels=(
            PanelDef("bar", "Test MAE per strategy", ("test_mae",), agg="median", spread="minmax"),
            PanelDef("bar", "Validation MAE per strategy", (OBJECTIVE,), agg="median", spread="minmax"),
            PanelDef("line", "Learning curves: validation MAE per epoch (mean and min-max per strategy)",
                     (OBJECTIVE,), x="epoch", agg="mean", spread="minmax", width=24),
        ),
    ),
    SectionDef(
        heading="Accuracy vs cost, FT size {ft_size}",
        text="A two-objective study (objectives: [val_mae, cost]). Each point is a trial: its validation MAE "
             "against its FT training compute seconds over all repeats, as its run logged them. The cost the search "
             "minimised adds the trial's share of its PT model's seconds, known only once the study ends: the "
             "Pareto fronts on that cost are the tables under Conclusions (and report.md).",
        per_ft_size=True,
        when="pareto",
        panels=(PanelDef("scatter", "Validation MAE vs FT compute seconds", (OBJECTIVE,), x="ft_compute_seconds",
                         width=24),),
    ),
)


def _importance_names(summary: dict[str, Any]) -> set[str]:
    return {p for v in summary.get("importance", {}).values() if isinstance(v, dict) for p in v}


def searched_params(summary: dict[str, Any]) -> list[str]:
    """The parameters the study searched, as far as ``summary["importance"]`` names them (every branch that
    has importances); all of :data:`PARAMS` when none was computed (too few trials)."""
    names = _importance_names(summary)
    if not names:
        return list(PARAMS)
    return [p for p in PARAMS if p in names] + sorted(names - set(PARAMS))


def ft_size_sections(summary: dict[str, Any]) -> list[tuple[str, str | None, str | None]]:
    """(label, FT-size filter value, target filter value) per FT size section (per target and size in a study
    with several targets: the target is then sampled, so in every run's config). A size that was not searched
    is not in the run config (a filter on it would hide every run): sizes are filtered on when there are
    several or ft_size is known to be searched; with no finished trial there is one unfiltered section."""
    zs = summary.get("by_ft_size", [])
    if len(summary.get("targets") or []) > 1 and zs:
        from tlsearch.analysis._analyse import short

        names = summary.get("labels") or {}
        return [(f"{short(z['target'], names)}, {z['ft_size']}", str(z["ft_size"]), z["target"]) for z in zs]
    sizes = [str(z["ft_size"]) for z in zs]
    if not sizes:
        return [("(all)", None, None)]
    if len(sizes) == 1 and "ft_size" not in _importance_names(summary):
        return [(sizes[0], None, None)]
    return [(s, s, None) for s in sizes]


def _filters(group: str, ft_size: str | None, target: str | None = None) -> str:
    out = f"Metric('Group') = {group!r}"
    if ft_size is not None:  # the config holds the sampled value: an int, or the string 'all'
        out += f" and Config('ft_size') = {int(ft_size) if ft_size.isdigit() else ft_size!r}"
    if target is not None:
        out += f" and Config('target') = {target!r}"
    return out


def _panel(p: PanelDef, params: list[str], x: int, y: int) -> Any:
    import wandb_workspaces.reports.v2 as wr

    layout = wr.Layout(x=x, y=y, w=p.width, h=8)
    if p.kind == "parallel_coordinates":
        cols = [wr.ParallelCoordinatesPlotColumn(metric=wr.Config(n), display_name=n) for n in params]
        cols += [wr.ParallelCoordinatesPlotColumn(metric=wr.SummaryMetric(m), display_name=m) for m in p.metrics]
        return wr.ParallelCoordinatesPlot(title=p.title, columns=cols, layout=layout)
    if p.kind == "importance":
        return wr.ParameterImportancePlot(with_respect_to=p.metrics[0], layout=layout)
    if p.kind == "scatter":
        return wr.ScatterPlot(title=p.title, x=wr.SummaryMetric(p.x or ""), y=wr.SummaryMetric(p.metrics[0]),
                              layout=layout)
    group = {"groupby": wr.Config(GROUP_BY), "groupby_aggfunc": p.agg, "groupby_rangefunc": p.spread}
    if p.kind == "bar":
        return wr.BarPlot(title=p.title, metrics=list(p.metrics), orientation="v", layout=layout, **group)
    return wr.LinePlot(title=p.title, x=p.x, y=list(p.metrics), title_x=p.x, title_y=", ".join(p.metrics),
                       layout=layout, **group)


def _grid(section: SectionDef, params: list[str], runset: Any) -> Any:
    import wandb_workspaces.reports.v2 as wr

    panels, x, y = [], 0, 0
    for p in section.panels:
        if x + p.width > GRID_WIDTH:
            x, y = 0, y + 8
        panels.append(_panel(p, params, x, y))
        x += p.width
    return wr.PanelGrid(runsets=[runset], panels=panels)


def build_wandb_report(summary: dict[str, Any], *, project: str, entity: str | None, group: str) -> wr.Report:
    """The W&B Report of one experiment from its ``summary.json`` (see :mod:`tlsearch.analysis.report`).

    ``project``/``entity``/``group``: where the trials' runs are (``spec.tracking`` and the experiment
    name). ``entity=None`` means the API key's default entity, resolved when the report is published.
    Builds the object only: no network access, no API key needed.
    """
    import wandb_workspaces.reports.v2 as wr

    name = summary["experiment"]
    params = searched_params(summary)
    blocks: list[Any] = [wr.H1("Conclusions"), wr.MarkdownBlock(text=intro(summary))]
    for section in SECTIONS:
        if section.when and not summary.get(section.when):
            continue
        for label, size, target in ft_size_sections(summary) if section.per_ft_size else [("(all)", None, None)]:
            heading, text = section.heading.format(ft_size=label), section.text.format(ft_size=label)
            runset = wr.Runset(entity=entity or "", project=project, name=heading,
                               filters=_filters(group, size, target),
                               groupby=[f"config.{GROUP_BY}"],
                               order=[wr.OrderBy(wr.SummaryMetric(OBJECTIVE), ascending=True)])
            blocks += [wr.H2(heading), wr.P(text), _grid(section, params, runset)]
    title = f"tlsearch: {name}"[:128]  # W&B's limit
    return wr.Report(project=project, entity=entity or "", title=title, blocks=blocks, width="fluid",
                     description=f"Transfer-learning search {name!r}: conclusions and the runs of group {group!r}")


def _runsets(report: wr.Report) -> list[Any]:
    return [rs for b in report.blocks for rs in getattr(b, "runsets", [])]


def publish_wandb_report(report: wr.Report) -> str:
    """Save ``report`` to W&B and return its URL.

    Raises :class:`~tlsearch.errors.WandbPublishError` (exit code 2) before any network access when no API
    key is configured, and when W&B does not know the project (its runs were never uploaded).
    """
    from tlsearch.search.tracking import has_api_key

    if not has_api_key():
        raise WandbPublishError(
            "cannot publish the W&B report: no W&B API key is configured (neither WANDB_API_KEY nor a netrc entry "
            "for api.wandb.ai). Run `wandb login` or set WANDB_API_KEY; upload offline runs with "
            "`wandb sync EXPERIMENT_DIR/wandb/offline-run-*`; then rerun `tlsearch report EXPERIMENT_DIR --wandb`.")
    import wandb

    if not report.entity:
        report.entity = wandb.Api().default_entity or ""
    for rs in _runsets(report):
        rs.entity = rs.entity or report.entity
    try:
        report.save()
    except ValueError as exc:  # a run set's project lookup found nothing
        raise WandbPublishError(
            f"cannot publish the W&B report: {exc} Upload the runs first (`wandb sync "
            f"EXPERIMENT_DIR/wandb/offline-run-*`) or fix tracking.project/entity in the space file.") from exc
    return str(report.url)
