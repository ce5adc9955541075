"""An experiment directory: where a study keeps its spec, Optuna journal, Ray Tune state and trials.

    <storage>/<name>/
        spec.json            the validated spec the study runs
        data.json            the data quality of every dataset the spec names, as `run` found it
        optuna.journal       Optuna JournalStorage (study history; optuna-dashboard / importance read it)
        tune/                Ray Tune's experiment (trial dirs, checkpoints, searcher state)
        report/              analysis output

With ``storage`` an object-store URI (``s3://bucket/experiments``), ``<storage>/<name>`` is the experiment and
the directory above is its mirror on the driver's machine ($TLSEARCH_CACHE/remote/...): Ray Tune writes its
experiment and every trial's checkpoints to the URI itself (workers on any node upload), and the driver keeps
the Optuna journal, the W&B offline runs and the report in the mirror and uploads them at every Tune snapshot
and at the end (``push``). ``open`` of the URI, on any machine, first copies the experiment down (``pull``;
not the training state in the checkpoints), so ``tlsearch resume``, ``status`` and ``report`` work from a
fresh working directory.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from tlsearch import remote
from tlsearch.errors import UserInputError
from tlsearch.search.spec import SearchSpec, format_spec_errors

TUNE_NAME = "tune"
RAY_TRIAL_ATTR = "ray_trial_id"  # Optuna user attribute: the Ray trial that ran the Optuna trial
FINAL_ATTR = "finished"  # Optuna user attribute: the trial ran all its epochs and repeats (not stopped early)
NOTE_ATTR = "tlsearch_note"  # Optuna user attribute: why a trial ended as it did
ORPHANED = "orphaned by a driver crash; re-planned"  # the note of a trial a dead driver left RUNNING
CUT_SHORT = "never run: a driver crash cut its sampling short"  # RUNNING, some parameters, never given to Tune
TIME_BUDGET = "stopped: time budget"  # the note of a trial still running when budget.time_budget_s ran out
REUSED_ATTR = "reused_from"  # Optuna user attribute: a repeated suggestion answered by this earlier trial
REPLANNED_ATTR = "replanned"  # Optuna user attribute: an orphan whose configuration was queued again on resume
IMPORTED_ATTR = "imported_from"  # Optuna user attribute: a warm-start trial, "<experiment dir>#<trial>"
IMPORTED_RESULT_ATTR = "imported_result"  # Optuna user attribute: its recorded results (trials.parquet columns)
TRAINING_STATE = "checkpoint_*/state.pt"  # what `pull` leaves on the object store: for resuming a trial, large


@dataclass(frozen=True)
class Experiment:
    root: Path
    uri: str | None = None  # the experiment on an object store; root is then its local mirror

    @property
    def where(self) -> str:
        """How to name the experiment to the user (and to `tlsearch resume`)."""
        return self.uri or str(self.root)

    def location(self, local: str | Path) -> str:
        """How to name a file or directory of the experiment to the user: for an experiment on an object store,
        a path in its mirror is named by its URI (the mirror is one machine's copy); otherwise the path."""
        p = Path(local)
        if self.uri and p.is_relative_to(self.root):
            return remote.join(self.uri, p.relative_to(self.root).as_posix())
        return str(local)

    @property
    def tune_storage(self) -> str:
        """Ray Tune's ``storage_path``: the experiment (Tune's own directory ``tune/`` is below it)."""
        return self.uri or str(self.root)

    @property
    def tune_location(self) -> str:
        return remote.join(self.uri, TUNE_NAME) if self.uri else str(self.tune_dir)

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
        where = str(storage or spec.storage)
        if remote.is_remote(where):
            uri = remote.join(where, name or spec.name)
            root, taken = remote.mirror(uri), remote.exists(remote.join(uri, "optuna.journal"))
        else:
            uri, root = None, Path(where).expanduser().resolve() / (name or spec.name)
            taken = (root / "optuna.journal").exists()
        if taken:
            raise UserInputError(f"{uri or root}: an experiment of this name already exists; fix: continue it with "
                                 f"`tlsearch resume {uri or root}`, or start a new one with --name")
        if uri:
            shutil.rmtree(root, ignore_errors=True)  # a mirror left by an earlier attempt that never synced
        root.mkdir(parents=True, exist_ok=True)
        exp = cls(root, uri)
        exp.spec_path.write_text(json.dumps(spec.model_dump(mode="json"), indent=1))
        exp.push()
        return exp

    @classmethod
    def open(cls, path: str | Path) -> "Experiment":
        if remote.is_remote(path):
            uri = str(path).rstrip("/")
            exp = cls(remote.mirror(uri), uri)
            exp.pull()
            if not exp.spec_path.exists():
                raise UserInputError(f"{uri}: not a tlsearch experiment (no spec.json there); fix: pass the "
                                     "location that `tlsearch run` printed, e.g. s3://BUCKET/experiments/<name>")
            return exp
        root = Path(path).expanduser().resolve()
        if not (root / "spec.json").exists():
            raise UserInputError(f"{root}: not a tlsearch experiment directory (no spec.json); fix: pass the "
                                 "directory that `tlsearch run` printed, e.g. experiments/<name>")
        return cls(root)

    def pull(self) -> int:
        """Copy the remote experiment into the mirror: all but the checkpoints' training state (the trials' models
        and predictions come down); nothing for a local one."""
        return remote.download(self.uri, self.root, exclude=(f"{TUNE_NAME}/*/{TRAINING_STATE}",)) if self.uri else 0

    def pull_tune(self) -> int:
        """Copy Ray Tune's files into the mirror (as ``pull``)."""
        return remote.download(self.tune_location, self.tune_dir, exclude=(f"*/{TRAINING_STATE}",)) if self.uri else 0

    def push(self, sent: dict | None = None) -> int:
        """Upload the mirror, the Optuna journal first (the rest may refer to its trials), without Tune's
        directory (Tune writes that to the store itself). ``sent`` as in :func:`tlsearch.remote.upload`: files
        unchanged since an earlier call are skipped (the journal too: Optuna only appends to it, so a change
        changes its size). Nothing for a local experiment."""
        if not self.uri:
            return 0
        n = 0
        if self.journal.exists():
            now = remote.stamp(self.journal)
            if sent is None or sent.get(self.journal.name) != now:
                remote.write_bytes(remote.join(self.uri, self.journal.name), self.journal.read_bytes())
                n = 1
                if sent is not None:
                    sent[self.journal.name] = now
        return n + remote.upload(self.root, self.uri, exclude=(f"{TUNE_NAME}/*", self.journal.name), sent=sent)

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
