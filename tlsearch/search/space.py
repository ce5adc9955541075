"""The study's search space as a pure Optuna define-by-run function (only ``suggest_*`` calls, no I/O),
and the mapping from sampled parameters to a :class:`TrainConfig`.

Conditional structure: PT source, freeze strategy and PT learning rate exist only for transfer
strategies; the MPT property subset only for ``mpt`` (its size first, then which combination, so every
parameter keeps one fixed distribution). Fixed values (scalars in the spec) are not suggested.
"""

from __future__ import annotations

import math
from itertools import combinations
from typing import Any

from tlsearch.errors import UserInputError
from tlsearch.search.spec import FloatRange, IntRange, SearchSpec
from tlsearch.training.config import TrainConfig, config_from_dict


def _suggest(trial: Any, name: str, dim: Any) -> Any:
    if isinstance(dim, FloatRange):
        return trial.suggest_float(name, dim.low, dim.high, log=dim.log)
    if isinstance(dim, IntRange):
        return trial.suggest_int(name, dim.low, dim.high, step=dim.step)
    if isinstance(dim, list):
        return dim[0] if len(dim) == 1 else trial.suggest_categorical(name, list(dim))
    return dim


def mpt_combinations(n: int, k: int) -> list[tuple[int, ...]]:
    return list(combinations(range(n), k))


class Space:
    """Picklable define-by-run function (Ray saves the searcher, space included, with the experiment)."""

    def __init__(self, spec: SearchSpec) -> None:
        self.spec = spec

    def __call__(self, trial: Any) -> None:
        spec = self.spec
        s = spec.search
        n_mpt = len(spec.mpt_candidates)
        max_k = min(s.mpt_subset.max_size or n_mpt, n_mpt)
        strategy = _suggest(trial, "strategy", list(s.strategy))
        if strategy != "scratch":
            if strategy == "finetune":
                _suggest(trial, "pt_source", [p.label for p in spec.data.pretrain_sources])
            else:
                k = _suggest(trial, "mpt_size", IntRange(low=s.mpt_subset.min_size, high=max_k)
                             if max_k > s.mpt_subset.min_size else s.mpt_subset.min_size)
                n_combo = math.comb(n_mpt, k)
                if n_combo > 1:
                    trial.suggest_int(f"mpt_combo_{k}", 0, n_combo - 1)
            if s.freeze_depth is not None:
                _suggest(trial, "freeze_depth", s.freeze_depth)
            else:
                _suggest(trial, "freeze", list(s.freeze))
            _suggest(trial, "reinit_head", list(s.reinit_head))
            _suggest(trial, "pt_lr", s.pt_lr)
            _suggest(trial, "body_lr_factor", s.body_lr_factor)
        _suggest(trial, "ft_size", list(s.ft_size))
        _suggest(trial, "sampling", list(s.sampling))
        _suggest(trial, "ft_lr", s.ft_lr)
        _suggest(trial, "batch_size", s.batch_size)
        a = s.architecture
        for name in ("alignn_layers", "gcn_layers", "hidden_features", "embedding_features"):
            _suggest(trial, name, getattr(a, name))
        return None


def family_key(params: dict[str, Any]) -> str:
    """The strategy family of a trial's sampled parameters: scratch, PT->FT per PT source, MPT per property
    set (what the report compares, and what a scheduler must not drop wholesale)."""
    pt = [f"{k}={params[k]}" for k in sorted(params) if k == "pt_source" or k.startswith("mpt_")]
    return " ".join([str(params.get("strategy", "")), *pt])


def make_space(spec: SearchSpec) -> Space:
    return Space(spec)


def _fixed(dim: Any) -> Any:
    """The value of a dimension that was not suggested (a scalar or a one-element list; for a range, its low
    end, used only when checking configs)."""
    if isinstance(dim, list):
        return dim[0]
    if isinstance(dim, (FloatRange, IntRange)):
        return dim.low
    return dim


def resolve(spec: SearchSpec, params: dict[str, Any]) -> dict[str, Any]:
    """Every searched dimension's value: sampled ones from ``params`` (NaN = not sampled), the rest fixed."""
    s, a = spec.search, spec.search.architecture

    def get(name: str, dim: Any) -> Any:
        v = params.get(name)
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return _fixed(dim)
        return v

    strategy = get("strategy", s.strategy)
    out: dict[str, Any] = {"strategy": strategy}
    for name, dim in (("ft_size", s.ft_size), ("sampling", s.sampling), ("ft_lr", s.ft_lr),
                      ("batch_size", s.batch_size), ("alignn_layers", a.alignn_layers),
                      ("gcn_layers", a.gcn_layers), ("hidden_features", a.hidden_features),
                      ("embedding_features", a.embedding_features)):
        out[name] = get(name, dim)
    if strategy != "scratch":
        if s.freeze_depth is not None:
            out["freeze_depth"] = int(get("freeze_depth", s.freeze_depth.low))
        else:
            out["freeze"] = get("freeze", s.freeze)
        for name, dim in (("reinit_head", s.reinit_head), ("pt_lr", s.pt_lr), ("body_lr_factor", s.body_lr_factor)):
            out[name] = get(name, dim)
        if strategy == "finetune":
            out["pt_source"] = get("pt_source", [p.label for p in spec.data.pretrain_sources])
        else:
            n = len(spec.mpt_candidates)
            k = int(get("mpt_size", s.mpt_subset.min_size))
            combo = mpt_combinations(n, k)[int(get(f"mpt_combo_{k}", 0))]
            out["mpt_properties"] = [spec.mpt_candidates[i].label for i in combo]
    return out


def _ref(entry: Any) -> dict[str, Any]:
    """A data entry as a trial config holds it: without its label, which names the data for a reader and
    changes nothing a trial trains (nor any cache or PT store key)."""
    return entry.model_dump(exclude={"name"})


def train_config(spec: SearchSpec, params: dict[str, Any], repeat: int = 0, **paths: Any) -> TrainConfig:
    """The TrainConfig of one trial (and one repeat: repeats differ in the FT sample and the seed)."""
    v = resolve(spec, params)
    d, b = spec.data, spec.budget
    cfg: dict[str, Any] = {
        "name": f"{spec.name}",
        "mode": v["strategy"],
        "target": _ref(d.target),
        "eval_sets": [_ref(e) for e in d.eval_sets],
        "test_fraction": d.test_fraction,
        "split_seed": d.split_seed,
        "seed": spec.seed + repeat,
        "graph": spec.graph.model_dump(),
        "model": {"backend": spec.search.architecture.backend, "alignn_layers": int(v["alignn_layers"]),
                  "gcn_layers": int(v["gcn_layers"]), "hidden_features": int(v["hidden_features"]),
                  "embedding_features": int(v["embedding_features"])},
        "train": {"sample_size": v["ft_size"], "sampling": v["sampling"], "sample_seed": spec.seed + repeat,
                  "optim": {"epochs": b.max_epochs, "lr": float(v["ft_lr"]), "batch_size": int(v["batch_size"])}},
        **{k: str(p) for k, p in paths.items() if p is not None},
    }
    if v["strategy"] != "scratch":
        tr = cfg["train"]
        if "freeze_depth" in v:
            tr["freeze_depth"] = v["freeze_depth"]
        else:
            tr["freeze"] = v["freeze"]
        tr["reinit_head"] = bool(v["reinit_head"])
        tr["body_lr_factor"] = float(v["body_lr_factor"])
        labels = [v["pt_source"]] if v["strategy"] == "finetune" else v["mpt_properties"]
        by_label = {p.label: p for p in [*d.pretrain_sources, *d.mpt_properties]}
        cfg["pretrain"] = {"sources": [_ref(by_label[lab]) for lab in labels],
                           "sample_size": d.pt_sample_size,
                           "optim": {"epochs": b.pt_epochs, "lr": float(v["pt_lr"]), "batch_size": 32},
                           "seed": spec.seed}
    return config_from_dict(cfg, where=f"trial config of {spec.name}")


def _extremes(dim: Any) -> list[Any]:
    if isinstance(dim, (FloatRange, IntRange)):
        return [dim.low, dim.high]
    if isinstance(dim, list):
        return list(dim)
    return [dim]


def check_trial_configs(spec: SearchSpec) -> None:
    """Build the trial config at every choice and both ends of every range, one dimension at a time, so a
    value the spec accepts but every trial would reject (an lr above 1, a layer count out of bounds) is
    reported when the spec is loaded, not when the trials fail."""
    s, a = spec.search, spec.search.architecture
    dims = {"ft_lr": s.ft_lr, "pt_lr": s.pt_lr, "body_lr_factor": s.body_lr_factor, "batch_size": s.batch_size,
            "alignn_layers": a.alignn_layers, "gcn_layers": a.gcn_layers, "hidden_features": a.hidden_features,
            "embedding_features": a.embedding_features, "ft_size": s.ft_size}
    if s.freeze_depth is not None:
        dims["freeze_depth"] = s.freeze_depth
    for strategy in s.strategy:
        for name, dim in dims.items():
            if strategy == "scratch" and name in ("pt_lr", "body_lr_factor", "freeze_depth"):
                continue
            for value in _extremes(dim):
                train_config(spec, {"strategy": strategy, name: value})
    if s.freeze_depth is not None and set(s.strategy) - {"scratch"}:
        deepest = max(_extremes(s.freeze_depth))
        n_a, n_g = min(_extremes(a.alignn_layers)), min(_extremes(a.gcn_layers))
        if deepest > 1 + n_a + n_g:
            raise UserInputError(
                f"search.freeze_depth: {deepest} exceeds the {1 + n_a + n_g} blocks of the smallest searched model "
                f"(embeddings + {n_a} ALIGNN + {n_g} GCN layers); fix: freeze_depth at most {1 + n_a + n_g}, or "
                "more layers in search.architecture")
