"""Weights & Biases for every trial, grouped by experiment. Mode ``auto``: online when an API key is
configured (``WANDB_API_KEY`` or a netrc entry for api.wandb.ai), else offline (``.wandb`` files in each
trial directory; ``wandb sync`` uploads them later). The key itself is never written anywhere."""

from __future__ import annotations

import netrc
import os
from pathlib import Path
from typing import Any

from rich.console import Console

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
           "TLSEARCH_CACHE": os.environ.get("TLSEARCH_CACHE", ""), "PYTHONWARNINGS": "ignore"}
    os.environ["WANDB_MODE"] = env["WANDB_MODE"]
    return {k: v for k, v in env.items() if v}


def callbacks(spec: SearchSpec, exp: Experiment, console: Console) -> list[Any]:
    mode = effective_mode(spec)
    if mode == "disabled":
        return []
    kwargs: dict[str, Any] = {"mode": mode, "dir": str(exp.root)}
    if spec.tracking.entity:
        kwargs["entity"] = spec.tracking.entity
    return [_wandb_callback_class()(project=spec.tracking.project, group=spec.name, log_config=True,
                                excludes=["val_mae_per_repeat", "test_mae_per_repeat"], **kwargs)]


def _wandb_callback_class() -> type:
    from ray.air.integrations.wandb import WandbLoggerCallback, _WandbLoggingActor

    class LoggingActor(_WandbLoggingActor):
        def run(self) -> None:
            super().run()
            # wandb.finish() returns before wandb-core has written the run to disk, and Ray kills the actor
            # (and wandb-core with it) as soon as run() returns: under load the last trial's .wandb file was
            # left empty. teardown() waits for wandb-core to finish.
            self._wandb.teardown()

    class Callback(WandbLoggerCallback):
        _logger_actor_cls = LoggingActor

        def _signal_logging_actor_stop(self, trial: Any) -> None:
            # a trial whose worker died before its logging actor started (e.g. its node was lost during a
            # retry) has no queue: Ray's KeyError here took the whole study down
            if trial in self._trial_queues:
                super()._signal_logging_actor_stop(trial)

        def _start_logging_actor(self, trial: Any, exclude_results: list[str], **wandb_init_kwargs: Any) -> None:
            # Ray copies WANDB_API_KEY into the logging actor's runtime_env, and Ray's runtime-env agent writes
            # runtime_envs in full to its session log (<ray tmp>/session_*/logs/runtime_env_agent.log). Offline
            # and disabled runs need no key: keep it out of the runtime_env.
            if self.kwargs.get("mode") == "online":
                return super()._start_logging_actor(trial, exclude_results, **wandb_init_kwargs)
            key = os.environ.pop("WANDB_API_KEY", None)
            try:
                return super()._start_logging_actor(trial, exclude_results, **wandb_init_kwargs)
            finally:
                if key is not None:
                    os.environ["WANDB_API_KEY"] = key

        # Every W&B step (= Tune's training_iteration) once. A trial restored from a checkpoint reports again
        # the iterations after it: after a retry (same driver, same W&B run) those are skipped; a trial restored
        # by `tlsearch resume` gets a second W&B run with the same id (offline W&B cannot reopen a run file),
        # created with resume="allow" so that `wandb sync` uploads both into one run, which starts after the
        # last step the earlier files hold, with the iterations the killed driver recorded in result.json but
        # W&B lost (its writer buffers; a SIGKILL loses the tail) up to the checkpoint the trial restarts from.
        def _continued(self, trial: Any) -> dict[str, Any]:
            if not hasattr(self, "_steps"):
                self._steps: dict[str, dict[str, Any]] = {}
            if trial.trial_id not in self._steps:  # its first start under this driver
                # the trial's result.json in the experiment (trial.path; the driver's staging copy, local_path,
                # is new in a resumed driver and filled from it only when Tune's JSON logger starts the trial)
                results = Path(trial.path or "", "result.json")
                if not results.exists():
                    results = Path(trial.local_path or "", "result.json")
                self._steps[trial.trial_id] = earlier_history(Path(self.kwargs.get("dir") or "."), trial.trial_id,
                                                              results)
            return self._steps[trial.trial_id]

        def log_trial_start(self, trial: Any) -> None:
            if not self._continued(trial)["resumed"] or trial in self._trial_logging_actors:
                return super().log_trial_start(trial)
            self.kwargs["resume"] = "allow"
            try:
                super().log_trial_start(trial)
            finally:
                self.kwargs.pop("resume", None)

        def log_trial_result(self, iteration: int, trial: Any, result: dict) -> None:
            s = self._continued(trial)
            step = result.get("training_iteration")
            if step is None:
                return super().log_trial_result(iteration, trial, result)
            for row in s["backfill"]:  # what W&B lost, up to the checkpoint this attempt restarted from
                if s["last"] < row["training_iteration"] < step:
                    super().log_trial_result(iteration, trial, row)
                    s["last"] = row["training_iteration"]
            s["backfill"] = []
            if step > s["last"]:
                super().log_trial_result(iteration, trial, result)
                s["last"] = step

        def __del__(self) -> None:  # Ray's own __del__ fails at interpreter exit (ray module already gone)
            try:
                super().__del__()
            except Exception:
                pass

    return Callback


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
    from wandb.proto import wandb_internal_pb2 as pb

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
            rec = pb.Record()
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


def earlier_history(root: Path, run_id: str, result_json: Path) -> dict[str, Any]:
    """What earlier drivers left of a trial: ``resumed`` (a local W&B run of this id exists), ``last`` (the
    last step those W&B runs hold, 0 if none) and ``backfill`` (the trial's result.json rows past ``last``, one
    per training_iteration, the last written, in order)."""
    last = last_logged_step(root, run_id)
    rows: dict[int, dict[str, Any]] = {}
    if result_json.exists():
        import json

        for line in result_json.read_text().splitlines():
            try:
                row = json.loads(line)
            except ValueError:  # a line cut by the crash
                continue
            if isinstance(row.get("training_iteration"), int) and row["training_iteration"] > (last or 0):
                rows[row["training_iteration"]] = row
    return {"resumed": last is not None, "last": last or 0, "backfill": [rows[k] for k in sorted(rows)]}
