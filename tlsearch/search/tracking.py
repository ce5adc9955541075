"""Weights & Biases for every trial, grouped by experiment. Mode ``auto``: online when an API key is
configured (``WANDB_API_KEY`` or a netrc entry for api.wandb.ai), else offline (``.wandb`` files in each
trial directory; ``wandb sync`` uploads them later). The key itself is never written anywhere."""

from __future__ import annotations

import netrc
import os
from pathlib import Path
from typing import Any

from rich.console import Console

from tlsearch import remote
from tlsearch.paths import GRAPH_STORE_ENV
from tlsearch.search.experiment import Experiment
from tlsearch.search.spec import SearchSpec


def has_api_key() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (OSError, netrc.NetrcParseError):
        return False


def effective_mode(spec: SearchSpec) -> str:
    mode = spec.tracking.mode
    if mode == "auto":
        return "online" if has_api_key() else "offline"
    return mode


def worker_env(spec: SearchSpec) -> dict[str, str]:
    env = {"WANDB_MODE": effective_mode(spec), "WANDB_SILENT": "true", "WANDB_DISABLE_GIT": "true",
           "TLSEARCH_CACHE": os.environ.get("TLSEARCH_CACHE", ""), "PYTHONWARNINGS": "ignore",
           GRAPH_STORE_ENV: spec.cluster.graph_store or os.environ.get(GRAPH_STORE_ENV, ""),
           **remote.env()}  # workers open the same object-store URIs (checkpoints, the PT and graph stores)
    os.environ["WANDB_MODE"] = env["WANDB_MODE"]
    return {k: v for k, v in env.items() if v}


def callbacks(spec: SearchSpec, exp: Experiment, console: Console) -> list[Any]:
    mode = effective_mode(spec)
    if mode == "disabled":
        return []
    kwargs: dict[str, Any] = {"mode": mode, "dir": str(exp.root)}
    if spec.tracking.entity:
        kwargs["entity"] = spec.tracking.entity
    if run_notes(spec):
        kwargs["notes"] = run_notes(spec)
    from tlsearch.search._wandb import WandbCallback

    return [WandbCallback(project=spec.tracking.project, group=spec.name, log_config=True,
                          excludes=["val_mae_per_repeat", "test_mae_per_repeat", "val_mae_per_fold", "test_mae_per_fold"], **kwargs)]


def run_notes(spec: SearchSpec) -> str | None:
    """The W&B notes of every run of a study whose spec labels its data: what each label stands for (a run's
    config holds the sampled ``pt_source``, a ``dataset/property``); None without labels."""
    names = spec.data.names()
    return "data labels: " + "; ".join(f"{n} = {ref}" for ref, n in names.items()) if names else None


def announce(spec: SearchSpec, exp: Experiment, console: Console) -> None:
    mode = effective_mode(spec)
    if mode == "offline":
        why = " (no API key configured)" if spec.tracking.mode == "auto" else ""
        console.print(f"W&B: offline{why}; runs are written under {exp.root / 'wandb'}; "
                      f"upload later with: wandb sync {exp.root / 'wandb'}/offline-run-*")
    elif mode == "online":
        console.print(f"W&B: online, project {spec.tracking.project!r}, group {spec.name!r}")
    else:
        console.print("W&B: disabled")


# W&B's transaction log (run-<id>.wandb): a 7-byte header (":W&B", magic, version), then LevelDB's log format
# (32 KiB blocks of chunks: CRC32C, length, type FULL/FIRST/MIDDLE/LAST), each record a wandb Record protobuf
_BLOCK, _HEAD = 32 * 1024, 7


def wandb_records(path: str | Path) -> list[Any]:
    """The records of a W&B transaction log, in order; a record cut short by a crash ends the list."""
    from tlsearch.search._compat import wandb_record_class

    record = wandb_record_class()
    data = Path(path).read_bytes()
    if data[:4] != b":W&B":
        raise ValueError(f"{path}: not a W&B transaction log")
    out, pos, parts = [], _HEAD, []
    while pos + _HEAD <= len(data):
        room = _BLOCK - pos % _BLOCK
        if room < _HEAD:  # a block's zero-filled tail
            pos += room
            continue
        length, kind = int.from_bytes(data[pos + 4:pos + 6], "little"), data[pos + 6]
        chunk = data[pos + _HEAD:pos + _HEAD + length]
        if kind not in (1, 2, 3, 4) or len(chunk) < length:
            break
        pos += _HEAD + length
        parts.append(chunk)
        if kind in (1, 4):  # FULL or LAST: a whole record
            rec = record()
            try:
                rec.ParseFromString(b"".join(parts))
            except Exception:  # noqa: BLE001 - a torn record
                break
            out.append(rec)
            parts = []
    return out


def wandb_history(path: str | Path) -> list[dict[str, Any]]:
    """The history rows (``wandb.log`` calls, ``_step`` included) of a W&B transaction log, as wandb's own reader
    (``wandb leet inspect``) shows them: nested keys joined with '.'."""
    import json

    def value(item: Any) -> Any:
        kind = item.WhichOneof("value")
        if kind is None:
            return json.loads(item.value_json) if item.value_json else None
        return json.loads(getattr(item, kind)) if kind == "json" else getattr(item, kind)

    return [{".".join(i.nested_key) if i.nested_key else i.key: value(i) for i in r.history.item}
            for r in wandb_records(path) if r.WhichOneof("record_type") == "history"]


def last_logged_step(root: Path, run_id: str) -> int | None:
    """The last history step that earlier local W&B runs of ``run_id`` under ``root`` hold (0 when they hold
    none); None when there is no earlier run."""
    files = sorted(root.glob(f"wandb/*run-*-{run_id}/run-{run_id}.wandb"))
    if not files:
        return None
    steps = [0]
    for f in files:
        try:
            steps += [int(h.get("_step", 0)) for h in wandb_history(f)]
        except (OSError, ValueError):
            continue
    return max(steps)


def result_rows(result_json: Path) -> list[dict[str, Any]]:
    """The rows of a trial's result.json, a line cut by a crash left out."""
    import json

    rows = []
    for line in result_json.read_text().splitlines() if result_json.exists() else []:
        try:
            rows.append(json.loads(line))
        except ValueError:
            continue
    return rows


def first_result(result_json: Path) -> dict[str, Any]:
    """The first row of a trial's result.json (it names the trial), {} when there is none yet."""
    import json

    try:
        with open(result_json) as fh:
            return json.loads(fh.readline())
    except (OSError, ValueError):
        return {}


def trial_config(trial_dir: Path) -> dict[str, Any]:
    """A trial's configuration as Tune wrote it (params.json), {} when missing or cut."""
    import json

    try:
        return json.loads((trial_dir / "params.json").read_text())
    except (OSError, ValueError):
        return {}


def earlier_history(root: Path, run_id: str, result_json: Path | None) -> dict[str, Any]:
    """What earlier drivers left of a trial: ``resumed`` (a local W&B run of this id exists), ``last`` (the
    last step those W&B runs hold, 0 if none) and ``backfill`` (the trial's result.json rows past ``last``, one
    per training_iteration, the last written, in order)."""
    last = last_logged_step(root, run_id)
    rows: dict[int, dict[str, Any]] = {}
    for row in result_rows(result_json) if result_json else []:
        if isinstance(row.get("training_iteration"), int) and row["training_iteration"] > (last or 0):
            rows[row["training_iteration"]] = row
    return {"resumed": last is not None, "last": last or 0, "backfill": [rows[k] for k in sorted(rows)]}
