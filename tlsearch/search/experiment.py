"""An experiment directory: where a study keeps its spec, Optuna journal, Ray Tune state and trials.

    <storage>/<name>/
        spec.json            the validated spec the study runs
        data.json            the data quality of every dataset the spec names, as `run` found it
        optuna.journal       Optuna JournalStorage (study history; optuna-dashboard / importance read it)
        tune/                Ray Tune's experiment (trial dirs, checkpoints, searcher state)
        report/              analysis output
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from tlsearch.errors import UserInputError
from tlsearch.search.spec import SearchSpec, format_spec_errors

TUNE_NAME = "tune"
RAY_TRIAL_ATTR = "ray_trial_id"  # Optuna user attribute: the Ray trial that ran the Optuna trial
FINAL_ATTR = "finished"  # Optuna user attribute: the trial ran all its epochs and repeats (not stopped early)
NOTE_ATTR = "tlsearch_note"  # Optuna user attribute: why a trial ended as it did
ORPHANED = "orphaned by a driver crash; re-planned"  # the note of a trial a dead driver left RUNNING
TIME_BUDGET = "stopped: time budget"  # the note of a trial still running when budget.time_budget_s ran out
REUSED_ATTR = "reused_from"  # Optuna user attribute: a repeated suggestion answered by this earlier trial
REPLANNED_ATTR = "replanned"  # Optuna user attribute: an orphan whose configuration was queued again on resume
IMPORTED_ATTR = "imported_from"  # Optuna user attribute: a warm-start trial, "<experiment dir>#<trial>"
IMPORTED_RESULT_ATTR = "imported_result"  # Optuna user attribute: its recorded results (trials.parquet columns)


@dataclass(frozen=True)
class Experiment:
    root: Path

    @property
    def spec_path(self) -> Path:
        return self.root / "spec.json"

    @property
    def journal(self) -> Path:
        return self.root / "optuna.journal"

    @property
    def tune_dir(self) -> Path:
        return self.root / TUNE_NAME

    @property
    def data_path(self) -> Path:
        return self.root / "data.json"

    def data_quality(self) -> list[dict]:
        """What `run` recorded about each dataset (data.json); empty for an experiment from before it did."""
        try:
            return json.loads(self.data_path.read_text())
        except (OSError, ValueError):
            return []

    @classmethod
    def create(cls, spec: SearchSpec, storage: str | Path | None = None, name: str | None = None) -> "Experiment":
        root = Path(storage or spec.storage).expanduser().resolve() / (name or spec.name)
        if (root / "optuna.journal").exists():
            raise UserInputError(f"{root}: an experiment of this name already exists; fix: continue it with "
                                 f"`tlsearch resume {root}`, or start a new one with --name")
        root.mkdir(parents=True, exist_ok=True)
        exp = cls(root)
        exp.spec_path.write_text(json.dumps(spec.model_dump(mode="json"), indent=1))
        return exp

    @classmethod
    def open(cls, path: str | Path) -> "Experiment":
        root = Path(path).expanduser().resolve()
        if not (root / "spec.json").exists():
            raise UserInputError(f"{root}: not a tlsearch experiment directory (no spec.json); fix: pass the "
                                 "directory that `tlsearch run` printed, e.g. experiments/<name>")
        return cls(root)

    def spec(self) -> SearchSpec:
        try:
            return SearchSpec.model_validate_json(self.spec_path.read_bytes())
        except (OSError, ValidationError) as exc:
            why = (f"cannot read: {exc.strerror}" if isinstance(exc, OSError)
                   else "; ".join(line.removeprefix("-: ") for line in format_spec_errors(exc, "-").split("\n")))
            raise UserInputError(f"{self.spec_path}: not a valid experiment spec ({why}); fix: this file is written "
                                 "by `tlsearch run`: restore it from a backup, or start the study again with "
                                 "`tlsearch run SPACE.yaml`") from None

    def optuna_storage(self):
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        return JournalStorage(JournalFileBackend(str(self.journal)))
