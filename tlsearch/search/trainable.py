"""The Ray Tune trainable: one trial = ``train_trial`` for each repeat of one sampled configuration.

It reports every epoch of the first repeat (``val_mae`` steers OptunaSearch and ASHA; in a cross-validated trial,
``budget.cv_folds``, the folds train in lockstep and each epoch's ``val_mae`` is the out-of-fold MAE over the whole
sample, so a rung judges every fold at that epoch), checkpoints the
trainer state at the end of an epoch once ``resources.checkpoint_interval_s`` passed since the last one or the
start, at most ~5 % of the time (a restored or retried trial resumes from its last checkpoint), exports tlsearch
metrics to Ray's metrics endpoint, and ends with one summary report: mean and spread over repeats of
validation and held-out test metrics (the test numbers are recorded, never optimised). Its final checkpoint keeps
the trained model of every repeat (``model.pt`` for repeat 0, ``model_repeat<i>.pt`` for repeat i; cross-validated,
one per fold: ``model_fold<f>.pt``, ``model_repeat<i>_fold<f>.pt``: what ``tlsearch predict`` and ``export`` use as
one ensemble) and the first repeat's val (out-of-fold) and test predictions.
"""

from __future__ import annotations

import io
import json
import math
import os
import shutil
import statistics
import tempfile
import time
from typing import Any

_METRICS: dict[str, Any] = {}


def _ray_metrics() -> dict[str, Any]:
    if not _METRICS:
        from ray.util.metrics import Counter, Gauge, Histogram

        _METRICS.update(
            val_mae=Gauge("tlsearch_val_mae", "validation MAE of the latest epoch", tag_keys=("trial",)),
            epoch_seconds=Histogram("tlsearch_epoch_seconds", "seconds per training epoch",
                                    boundaries=[0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300]),
            structures_per_s=Gauge("tlsearch_structures_per_second", "training throughput", tag_keys=("trial",)),
            epochs=Counter("tlsearch_epochs_total", "training epochs finished"),
            pt_hits=Counter("tlsearch_pt_store_hits_total", "pre-trained models reused from the store"),
            pt_trained=Counter("tlsearch_pt_store_trained_total", "pre-trained models trained"),
        )
    return _METRICS


def _report(metrics: dict[str, Any], state: dict[str, Any] | None, files: dict[str, str] | None = None) -> None:
    """tune.report with a checkpoint of ``state`` (plus ``files``: name -> path, copied in), or without one
    when ``state`` is None; Ray copies the directory into the trial's storage during the call, so the
    temporary directory is removed right after."""
    import torch
    from ray import tune
    from ray.tune import Checkpoint

    if state is None:
        tune.report(metrics)
        return
    with tempfile.TemporaryDirectory(prefix="tls-ckpt-") as d:
        buf = io.BytesIO()
        torch.save(state, buf)
        with open(os.path.join(d, "state.pt"), "wb") as fh:
            fh.write(buf.getvalue())
        for name, path in (files or {}).items():
            if os.path.exists(path):
                shutil.copyfile(path, os.path.join(d, name))
        tune.report(metrics, checkpoint=Checkpoint.from_directory(d))


def _kept(out: str) -> dict[str, str]:
    """The finished repeats' models (and the first repeat's predictions) in ``out``: every checkpoint carries them."""
    return {n: os.path.join(out, n) for n in sorted(os.listdir(out)) if os.path.isfile(os.path.join(out, n))}


def _load_checkpoint(out: str) -> dict[str, Any] | None:
    """The state of the latest checkpoint, its finished repeats' files copied into ``out``; None without one."""
    import torch
    from ray import tune

    ckpt = tune.get_checkpoint()
    if ckpt is None:
        return None
    with ckpt.as_directory() as d:
        for name in os.listdir(d):
            if name != "state.pt" and os.path.isfile(os.path.join(d, name)):
                shutil.copyfile(os.path.join(d, name), os.path.join(out, name))
        return torch.load(os.path.join(d, "state.pt"), map_location="cpu", weights_only=True)


def _failpoint(config: dict[str, Any]) -> str | None:
    """Fault injection for the reliability tests: ``TLSEARCH_FAILPOINT="raise:<param>=<value>"`` makes every
    trial whose sampled ``<param>`` equals ``<value>`` raise after the first epoch of every attempt (so Ray's
    retry from the checkpoint fails too); ``"nan:..."`` poisons its weights instead, so the engine's own
    divergence check fails it. Unset: nothing happens."""
    kind, _, cond = os.environ.get("TLSEARCH_FAILPOINT", "").partition(":")
    key, _, value = cond.partition("=")
    return kind if kind in ("raise", "nan") and key and str(config.get(key)) == value else None


def _inject(fault: str | None, trainer: Any) -> None:
    if fault == "raise":
        raise RuntimeError("injected fault (TLSEARCH_FAILPOINT): the trial raised")
    if fault == "nan":
        import torch

        with torch.no_grad():
            for p in trainer.model.parameters():
                p.fill_(float("nan"))


def _record(result: Any) -> dict[str, Any]:
    """What a finished repeat contributes to the summary (kept in checkpoints, so resumes lose nothing)."""
    from tlsearch.training.engine import compute_seconds

    pt = result.pretrain
    return {"val": result.val, "test": result.test, "eval_sets": result.eval_sets, "n_train": result.n_train,
            "n_val": result.n_val, "epochs": len(result.history), "n_params": result.n_params,
            "n_trainable": result.n_trainable, "seconds": result.seconds,
            "ft_seconds": sum(h.seconds for h in result.history), "ft_compute_seconds": compute_seconds(result.history),
            "device": result.device, "gpu_peak_mb": result.gpu_peak_mb, "folds": result.folds,
            "val_folds": result.val_folds, "test_folds": result.test_folds, "chosen_epoch": result.chosen_epoch,
            "pt": {"key": pt.key, "seconds": pt.pt_seconds, "train_seconds": pt.train_seconds, "epochs": pt.epochs,
                   "compute_seconds": pt.compute_seconds, "hit": pt.store_hit} if pt else None}


def _summary(done: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"final": True, "repeats": len(done)}
    for part in ("val", "test"):
        for key in ("mae", "rmse", "r2"):
            vals = [d[part][key] for d in done]
            out[f"{part}_{key}"] = statistics.mean(vals)
            out[f"{part}_{key}_std"] = statistics.stdev(vals) if len(vals) > 1 else 0.0
    out["val_mae_per_repeat"] = json.dumps([d["val"]["mae"] for d in done])
    out["test_mae_per_repeat"] = json.dumps([d["test"]["mae"] for d in done])
    # cross-validated repeats: each fold's validation MAE and its model's test MAE, per repeat (paired over
    # configurations: the same folds of the same draws); one split: one "fold" per repeat
    out["cv_folds"] = int(done[0].get("folds", 1))
    out["val_mae_per_fold"] = json.dumps([[f["mae"] for f in d.get("val_folds") or []] or [d["val"]["mae"]]
                                          for d in done])
    out["test_mae_per_fold"] = json.dumps([[f["mae"] for f in d.get("test_folds") or []] or [d["test"]["mae"]]
                                           for d in done])
    first = done[0]
    out.update(n_train=first["n_train"], n_val=first["n_val"], n_test=first["test"]["n"],
               epochs_run=sum(d["epochs"] for d in done), n_params=first["n_params"],
               n_trainable=first["n_trainable"], wall_seconds=sum(d["seconds"] for d in done),
               # the FT training time of every epoch of every repeat: the trial's own compute (objectives.py)
               ft_seconds=sum(d.get("ft_seconds", 0.0) for d in done), device=first.get("device", "cpu"),
               # what the cost objective counts: CPU seconds on a CPU (objectives.py); wall ones before it was kept
               ft_compute_seconds=sum(d.get("ft_compute_seconds", d.get("ft_seconds", 0.0)) for d in done))
    peaks = [d["gpu_peak_mb"] for d in done if d.get("gpu_peak_mb") is not None]
    if peaks:  # a trial on a GPU: its peak memory over repeats (benchmarks/gpu_check.py --ray reads it)
        out["gpu_peak_mb"] = max(peaks)
    pt = first["pt"] or {}
    out.update(pt_key=pt.get("key", ""), pt_seconds=pt.get("seconds", 0.0), pt_epochs=pt.get("epochs", 0),
               pt_train_seconds=pt.get("train_seconds", pt.get("seconds", 0.0)),
               pt_compute_seconds=pt.get("compute_seconds", pt.get("train_seconds", pt.get("seconds", 0.0))),
               pt_store_hit=bool(pt.get("hit", False)))
    for name in first["eval_sets"]:
        out[f"eval/{name}/mae"] = statistics.mean(d["eval_sets"][name]["mae"] for d in done)
    return out


def trainable(config: dict[str, Any], spec: dict[str, Any], paths: dict[str, str],
              race: list[dict[str, Any]] | None = None) -> None:
    """One trial: repeats ``0 .. budget.repeats - 1`` of the sampled configuration ``config``; a race trial
    (:mod:`tlsearch.search.racing`: ``config`` is ``{race_index: i}`` into ``race``) runs the later repeats its
    block names of a finished trial's configuration."""
    from ray import tune

    from tlsearch.search.schedulers import checkpoint_epochs
    from tlsearch.search.space import train_config
    from tlsearch.search.spec import SearchSpec
    from tlsearch.training import train_trial
    from tlsearch.training.predict import model_file

    s = SearchSpec.model_validate(spec)
    first, last = 0, s.budget.repeats
    if race is not None and "race_index" in config:
        config = dict(race[int(config["race_index"])])
        first, last = config.pop("race_repeats")
    threads = max(1, int(math.floor(s.resources.cpus_per_trial)))
    trial_id = tune.get_context().get_trial_id() or "?"
    import ray

    node_id = ray.get_runtime_context().get_node_id()
    metrics = _ray_metrics()
    out = tempfile.mkdtemp(prefix="tls-out-")  # the finished repeats' models, the first repeat's predictions
    state = _load_checkpoint(out) or {}
    done: list[dict[str, Any]] = state.get("done", [])
    start_repeat = first + len(done)
    first_epochs = state.get("first_epochs", 0)
    fault = _failpoint(config)
    # checkpoint once `interval` s passed since the last one (or the start), and never spend more than ~5 % of
    # the time on them (a checkpoint that took c s waits >= 19 c); interval 0: every epoch
    interval, last_ckpt, ckpt_cost = s.resources.checkpoint_interval_s, time.monotonic(), 0.0
    # a scheduler that pauses trials at its decisions (successive halving: its rungs) resumes them from the
    # checkpoint reported there
    rung_epochs = checkpoint_epochs(s)
    spent = {"report_seconds": 0.0, "checkpoint_seconds": 0.0}  # this attempt's per-epoch reporting cost
    try:
        for repeat in range(start_repeat, last):
            cfg = train_config(s, config, repeat, cache_dir=paths.get("cache_dir"), store_dir=paths.get("store_dir"))
            rdir = os.path.join(out, f"repeat{repeat}")
            cfg = cfg.model_copy(update={"threads": threads, "output_dir": rdir})
            resume = state.get("trainer") if repeat == start_repeat else None
            report_epochs = repeat == first

            def on_epoch(m: Any, trainer: Any, repeat: int = repeat) -> None:
                nonlocal fault, last_ckpt, ckpt_cost
                t_cb = time.perf_counter()
                metrics["val_mae"].set(m.val_mae, tags={"trial": trial_id})
                metrics["epoch_seconds"].observe(m.seconds)
                metrics["structures_per_s"].set(m.structures_per_s, tags={"trial": trial_id})
                metrics["epochs"].inc()
                if report_epochs:
                    ckpt = (interval == 0 or m.epoch in rung_epochs
                            or time.monotonic() - last_ckpt >= max(interval, 19 * ckpt_cost))
                    pt = trainer.pretrain  # known from the first epoch: a trial stopped early still counts its PT
                    extra = {"pt_key": pt.key, "pt_epochs": pt.epochs, "pt_seconds": pt.pt_seconds,
                             "pt_train_seconds": pt.train_seconds, "pt_compute_seconds": pt.compute_seconds,
                             "pt_store_hit": pt.store_hit} if pt else {}
                    _report({**m.as_dict(), **extra, "repeat": repeat, "final": False, "node_id": node_id},
                            {"done": done, "repeat": repeat, "trainer": trainer.state_dict(), "first_epochs": m.epoch}
                            if ckpt else None, _kept(out))
                    took = time.perf_counter() - t_cb
                    if ckpt:
                        last_ckpt, ckpt_cost = time.monotonic(), took
                    spent["checkpoint_seconds" if ckpt else "report_seconds"] += took
                if fault:  # once per attempt
                    _inject(fault, trainer)
                    fault = None

            result = train_trial(cfg, callback=on_epoch, resume=resume)
            if result.pretrain is not None:
                (metrics["pt_hits"] if result.pretrain.store_hit else metrics["pt_trained"]).inc()
            if repeat == first:
                first_epochs = len(result.history)
                os.replace(os.path.join(rdir, "predictions.parquet"), os.path.join(out, "predictions.parquet"))
            for fold in [None] if result.folds == 1 else range(result.folds):
                os.replace(os.path.join(rdir, model_file(0, fold)), os.path.join(out, model_file(repeat, fold)))
            shutil.rmtree(rdir, ignore_errors=True)
            done.append(_record(result))
        summary = _summary(done)
        summary["epoch"] = first_epochs + 1  # one past the last epoch: ASHA's max_t leaves room for it
        summary.update(node_id=node_id, **spent)
        _report(summary, {"done": done, "repeat": last, "first_epochs": first_epochs}, files=_kept(out))
    finally:
        shutil.rmtree(out, ignore_errors=True)
