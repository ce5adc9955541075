"""Analysis of a finished (or running, or interrupted) study: the trials table, the questions it answers,
parameter importance, plots and the report. Reads the experiment directory only: never imports torch or Ray."""

from tlsearch.analysis._load import load_trials
from tlsearch.analysis.report import Report, build_report

__all__ = ["Report", "build_report", "load_trials"]
