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

