"""The define-by-run search space and the params -> TrainConfig mapping (FixedTrial, in-memory study; no Ray,
no training)."""

from __future__ import annotations

import copy
import math
import pickle
import warnings
from collections import Counter
from itertools import combinations
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import FixedTrial

from tlsearch.search.space import Space, make_space, mpt_combinations, resolve, train_config
from tlsearch.search.spec import spec_from_dict
from tlsearch.training.config import TrainConfig

SMOKE = yaml.safe_load((Path(__file__).resolve().parents[2] / "search_spaces" / "smoke.yaml").read_text())
TARGET = SMOKE["data"]["target"]
SRC_A = {"dataset": "emt:alloys?n=120&seed=1", "property": "formation_energy_per_atom"}
SRC_B = {"dataset": "emt:alloys?n=120&seed=2", "property": "volume_per_atom"}
PROPS = [{"dataset": "emt:alloys?n=120&seed=1", "property": p}
         for p in ("formation_energy_per_atom", "volume_per_atom", "energy_per_atom", "bulk_modulus")]
TRANSFER_ONLY = {"pt_source", "freeze", "freeze_depth", "reinit_head", "pt_lr", "body_lr_factor"}


def make_spec(search=None, data=None, **top):
    """A spec searching every transfer dimension: two PT sources, four MPT candidates, ranges and lists."""
    d = copy.deepcopy(SMOKE)
    d["data"]["pretrain_sources"] = [SRC_A, SRC_B]
    d["data"]["mpt_properties"] = copy.deepcopy(PROPS)
    d["search"] = {"strategy": ["scratch", "finetune", "mpt"], "freeze": ["all_unfrozen", "2b", "last_layer"],
                   "reinit_head": [False, True], "ft_size": [40, 80], "sampling": ["random", "diverse"],
                   "ft_lr": {"low": 1e-4, "high": 1e-2, "log": True}, "pt_lr": [1e-3, 3e-3],
                   "body_lr_factor": {"low": 0.1, "high": 1.0}, "batch_size": {"low": 8, "high": 32, "step": 8},
                   "mpt_subset": {"min_size": 2, "max_size": 3},
                   "architecture": {"alignn_layers": [1, 2], "gcn_layers": 1, "hidden_features": 16,
                                    "embedding_features": 8}}
    d["search"].update(search or {})
    d["data"].update(data or {})
    d.update(top)
    return spec_from_dict(d, "test.yaml")


def run_fixed(space, params):
    """Run the space on a FixedTrial; returns what it suggested. Out-of-range values are errors, not warnings."""
    trial = FixedTrial(params)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        space(trial)
    return trial.params


COMMON = {"ft_size": 40, "sampling": "random", "ft_lr": 1e-3, "batch_size": 16, "alignn_layers": 1}
TRANSFER = {"freeze": "2b", "reinit_head": True, "pt_lr": 3e-3, "body_lr_factor": 0.5}


# ---------------------------------------------------------------------------------------------------------
# what is suggested


def test_scratch_suggests_no_transfer_params():
    got = run_fixed(Space(make_spec()), {"strategy": "scratch", **COMMON})
    assert got == {"strategy": "scratch", **COMMON}
    assert not TRANSFER_ONLY & got.keys() and not any(k.startswith("mpt_") for k in got)


def test_finetune_suggests_source_and_freeze_but_no_mpt():
    params = {"strategy": "finetune", "pt_source": f"{SRC_B['dataset']}/{SRC_B['property']}", **TRANSFER, **COMMON}
    got = run_fixed(Space(make_spec()), params)
    assert got == params
    assert not any(k.startswith("mpt_") for k in got)


@pytest.mark.parametrize("k, combo_param", [(2, "mpt_combo_2"), (3, "mpt_combo_3")])
def test_mpt_suggests_size_and_combination_but_no_source(k, combo_param):
    params = {"strategy": "mpt", "mpt_size": k, combo_param: 1, **TRANSFER, **COMMON}
    got = run_fixed(Space(make_spec()), params)  # 4 candidates: C(4,2)=6, C(4,3)=4 combinations
    assert got == params
    assert "pt_source" not in got


def test_mpt_single_combination_is_not_suggested():
    # three candidates, subset size 3 only: one combination, so neither size nor combination is searched
    spec = make_spec(search={"mpt_subset": {"min_size": 3, "max_size": 3}}, data={"mpt_properties": PROPS[:3]})
    got = run_fixed(Space(spec), {"strategy": "mpt", **TRANSFER, **COMMON})
    assert not any(k.startswith("mpt_") for k in got)
    assert resolve(spec, got)["mpt_properties"] == [f"{p['dataset']}/{p['property']}" for p in PROPS[:3]]
    # smoke: 3 candidates, sizes 2..3 -> size searched; C(3,3)=1 -> no combination at size 3
    smoke = spec_from_dict(copy.deepcopy(SMOKE))
    got = run_fixed(Space(smoke), {"strategy": "mpt", "mpt_size": 3, "freeze": "2b", "ft_lr": 1e-3})
    assert set(got) == {"strategy", "mpt_size", "freeze", "ft_lr"}
    got = run_fixed(Space(smoke), {"strategy": "mpt", "mpt_size": 2, "mpt_combo_2": 2, "freeze": "2b", "ft_lr": 1e-3})
    assert "mpt_combo_2" in got


def test_single_source_is_not_suggested():
    spec = make_spec(data={"pretrain_sources": [SRC_A]})
    got = run_fixed(Space(spec), {"strategy": "finetune", **TRANSFER, **COMMON})
    assert "pt_source" not in got
    assert train_config(spec, got).pretrain.sources[0].model_dump() == SRC_A


def test_freeze_depth_replaces_named_freeze():
    spec = make_spec(search={"freeze_depth": {"low": 0, "high": 3}})  # the model: embeddings + 1 + 1 layers
    params = {"strategy": "finetune", "pt_source": f"{SRC_A['dataset']}/{SRC_A['property']}", "freeze_depth": 3,
              **{k: v for k, v in TRANSFER.items() if k != "freeze"}, **COMMON}
    got = run_fixed(Space(spec), params)
    assert got == params and "freeze" not in got
    cfg = train_config(spec, got)
    assert cfg.train.freeze_depth == 3 and cfg.train.freeze == "all_unfrozen"
    scratch = train_config(spec, run_fixed(Space(spec), {"strategy": "scratch", **COMMON}))
    assert scratch.train.freeze_depth is None


def test_fixed_values_are_never_suggested():
    # smoke: everything but strategy, freeze, ft_lr (and the MPT subset) is fixed
    space = Space(spec_from_dict(copy.deepcopy(SMOKE)))
    assert run_fixed(space, {"strategy": "scratch", "ft_lr": 1e-3}) == {"strategy": "scratch", "ft_lr": 1e-3}
    assert set(run_fixed(space, {"strategy": "finetune", "freeze": "last_layer", "ft_lr": 1e-3})) == {
        "strategy", "freeze", "ft_lr"}
    # nothing searched at all: no suggestion, the trial needs no params
    spec = make_spec(search={"strategy": ["scratch"], "ft_size": [40], "sampling": ["random"], "ft_lr": 0.001,
                             "batch_size": 16, "architecture": {"alignn_layers": 1}, "pt_lr": 0.001,
                             "body_lr_factor": 1.0, "reinit_head": [False], "freeze": ["all_unfrozen"]})
    assert run_fixed(Space(spec), {}) == {}
    cfg = train_config(spec, {})
    assert cfg.mode == "scratch" and cfg.train.sample_size == 40 and cfg.train.optim.lr == 0.001


def test_missing_searched_param_raises():
    with pytest.raises(ValueError, match="ft_lr"):
        run_fixed(Space(make_spec()), {k: v for k, v in {"strategy": "scratch", **COMMON}.items() if k != "ft_lr"})


def test_space_is_pure_and_make_space_returns_a_space():
    spec = make_spec()
    space = make_space(spec)
    assert isinstance(space, Space) and space.spec is spec
    params = {"strategy": "mpt", "mpt_size": 2, "mpt_combo_2": 5, **TRANSFER, **COMMON}
    assert run_fixed(space, params) == run_fixed(space, params) == params


# ---------------------------------------------------------------------------------------------------------
# resolve and train_config


def test_mpt_combinations():
    assert mpt_combinations(4, 2) == list(combinations(range(4), 2))
    assert len(mpt_combinations(5, 3)) == math.comb(5, 3)
    assert mpt_combinations(3, 3) == [(0, 1, 2)]


def test_resolve_maps_mpt_choice_to_property_subsets_without_target():
    # the target (bulk_modulus of the target dataset) is listed among the MPT properties: never a candidate
    props = [TARGET, *PROPS]
    spec = make_spec(data={"mpt_properties": props}, search={"mpt_subset": {"min_size": 1, "max_size": 4}})
    target_label = f"{TARGET['dataset']}/{TARGET['property']}"
    labels = [f"{p['dataset']}/{p['property']}" for p in PROPS]
    assert [p.label for p in spec.mpt_candidates] == labels
    seen = set()
    for k in range(1, 5):
        for i, combo in enumerate(combinations(range(4), k)):
            params = {"strategy": "mpt", "mpt_size": k, **TRANSFER, **COMMON}
            if math.comb(4, k) > 1:
                params[f"mpt_combo_{k}"] = i
            assert run_fixed(Space(spec), params) == params
            got = resolve(spec, params)["mpt_properties"]
            assert got == [labels[j] for j in combo]
            assert target_label not in got
            seen.add(tuple(got))
            cfg = train_config(spec, params)
            assert [s.label for s in cfg.pretrain.sources] == got and cfg.mode == "mpt"
    assert len(seen) == 2**4 - 1  # every non-empty subset exactly once


def test_resolve_treats_nan_as_not_sampled():
    # Ray's results carry NaN for parameters a trial did not sample
    spec = make_spec()
    params = {"strategy": "scratch", **COMMON}
    nan = {k: float("nan") for k in (*TRANSFER_ONLY, "mpt_size", "mpt_combo_2")}
    assert resolve(spec, {**params, **nan}) == resolve(spec, params)
    assert set(resolve(spec, params)) == {"strategy", "target", *COMMON, "gcn_layers", "hidden_features",
                                          "embedding_features"}


def test_train_config_from_spec_and_params():
    spec = make_spec(seed=7, budget={"trials": 3, "max_epochs": 9, "pt_epochs": 4})
    params = {"strategy": "finetune", "pt_source": f"{SRC_B['dataset']}/{SRC_B['property']}", "freeze": "last_layer",
              "reinit_head": True, "pt_lr": 3e-3, "body_lr_factor": 0.25, "ft_size": 80, "sampling": "diverse",
              "ft_lr": 2e-3, "batch_size": 24, "alignn_layers": 2}
    cfg = train_config(spec, run_fixed(Space(spec), params))
    assert isinstance(cfg, TrainConfig)
    assert cfg.mode == "finetune" and cfg.name == spec.name
    assert cfg.target.model_dump() == TARGET
    assert [s.model_dump() for s in cfg.pretrain.sources] == [SRC_B]
    assert cfg.pretrain.optim.epochs == 4 and cfg.pretrain.optim.lr == 3e-3 and cfg.pretrain.seed == 7
    assert cfg.pretrain.sample_size == spec.data.pt_sample_size
    t = cfg.train
    assert (t.freeze, t.freeze_depth, t.reinit_head, t.body_lr_factor) == ("last_layer", None, True, 0.25)
    assert (t.sample_size, t.sampling, t.sample_seed) == (80, "diverse", 7)
    assert (t.optim.epochs, t.optim.lr, t.optim.batch_size) == (9, 2e-3, 24)
    assert (cfg.model.alignn_layers, cfg.model.gcn_layers, cfg.model.hidden_features) == (2, 1, 16)
    assert cfg.seed == 7 and cfg.test_fraction == spec.data.test_fraction


def test_train_config_scratch_has_no_pretraining_and_paths_pass_through(tmp_path):
    spec = make_spec()
    cfg = train_config(spec, {"strategy": "scratch", **COMMON, "freeze": "2b"},  # stray freeze ignored
                       cache_dir=tmp_path / "cache", store_dir=None)
    assert cfg.mode == "scratch" and cfg.pretrain is None
    assert cfg.train.freeze == "all_unfrozen" and cfg.train.reinit_head is False
    assert cfg.cache_dir == str(tmp_path / "cache") and cfg.store_dir is None


@pytest.mark.parametrize("strategy", ["scratch", "finetune", "mpt"])
def test_repeat_changes_only_the_seeds(strategy):
    spec = make_spec(seed=3)
    params = {"strategy": strategy, **COMMON}
    if strategy != "scratch":
        params.update(TRANSFER)
        params.update({"pt_source": f"{SRC_A['dataset']}/{SRC_A['property']}"} if strategy == "finetune"
                      else {"mpt_size": 2, "mpt_combo_2": 4})
    base = train_config(spec, params, repeat=0).model_dump()
    for repeat in (1, 2):
        cfg = train_config(spec, params, repeat=repeat).model_dump()
        assert cfg["seed"] == 3 + repeat and cfg["train"]["sample_seed"] == 3 + repeat
        cfg["seed"], cfg["train"]["sample_seed"] = base["seed"], base["train"]["sample_seed"]
        assert cfg == base  # the pre-training (and its seed) is shared by the repeats


def test_space_pickles():
    spec = make_spec()
    space = make_space(spec)
    clone = pickle.loads(pickle.dumps(space))
    assert clone.spec == spec
    params = {"strategy": "mpt", "mpt_size": 3, "mpt_combo_3": 2, **TRANSFER, **COMMON}
    assert run_fixed(clone, params) == run_fixed(space, params)


# ---------------------------------------------------------------------------------------------------------
# a real (in-memory) optuna study


def test_tpe_study_covers_the_space_and_every_trial_maps_to_a_train_config():
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    spec = make_spec()
    space = make_space(spec)

    def objective(trial):
        space(trial)
        p = trial.params
        v = abs(math.log10(p["ft_lr"]) + 3) + (p["batch_size"] - 16) ** 2 / 256
        v += {"scratch": 1.0, "finetune": 0.3, "mpt": 0.5}[p["strategy"]]
        if p["strategy"] != "scratch":
            v += {"all_unfrozen": 0.0, "2b": 0.2, "last_layer": 0.4}[p["freeze"]]
        return v

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # optuna's experimental-feature warnings
        study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0), direction="minimize")
        study.optimize(objective, n_trials=40)
    trials = study.trials
    assert len(trials) == 40 and all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    strategies = Counter(t.params["strategy"] for t in trials)
    assert set(strategies) == {"scratch", "finetune", "mpt"}
    assert {t.params["freeze"] for t in trials if "freeze" in t.params} == {"all_unfrozen", "2b", "last_layer"}
    assert {t.params["pt_source"] for t in trials if "pt_source" in t.params} == {
        f"{s['dataset']}/{s['property']}" for s in (SRC_A, SRC_B)}
    for t in trials:
        for repeat in (0, 1):
            cfg = train_config(spec, t.params, repeat=repeat)
            assert isinstance(cfg, TrainConfig) and cfg.mode == t.params["strategy"]
            assert cfg.train.optim.lr == pytest.approx(t.params["ft_lr"])
            assert cfg.train.optim.batch_size == t.params["batch_size"] and cfg.train.optim.batch_size % 8 == 0
            if cfg.mode == "mpt":
                assert 2 <= len(cfg.pretrain.sources) <= 3
                assert spec.data.target.label not in [src.label for src in cfg.pretrain.sources]
    best = study.best_trial.params
    assert best["strategy"] == "finetune"  # the formula's optimum is found


def test_strategy_cover_is_the_grid_when_each_size_has_room_for_it_else_the_families():
    from tlsearch.search.runner import strategy_cover
    from tlsearch.search.spec import IntRange, load_spec

    # the quickstart with 14 trials over 2 sizes: 7 per size < 11 combinations
    spec = load_spec(Path(__file__).resolve().parents[2] / "search_spaces" / "quickstart.yaml")
    small = spec.model_copy(update={"budget": spec.budget.model_copy(update={"trials": 14})})
    assert strategy_cover(small) == [{"strategy": s} for s in ("scratch", "finetune", "mpt")]
    grid = strategy_cover(spec)  # the quickstart as shipped: 22 trials, the whole grid at each size
    assert len(grid) == 11 and grid[0] == {"strategy": "scratch"}
    assert {(c["strategy"], c["freeze"]) for c in grid[1:]} == {
        (s, f) for s in ("finetune", "mpt") for f in ("all_unfrozen", "2b", "3b", "new_head", "last_layer")}
    depth = spec.search.model_copy(update={"freeze_depth": IntRange(low=0, high=3)})
    big = spec.model_copy(update={"search": depth, "budget": spec.budget.model_copy(update={"trials": 40})})
    assert strategy_cover(big) == [{"strategy": s} for s in ("scratch", "finetune", "mpt")]  # no freeze list
