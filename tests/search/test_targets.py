"""Several FT targets in one study (issue 15.1): the target is a condition like the FT size; PT sources and MPT
sets leave the trial's target out; one PT model per source serves every target."""

from __future__ import annotations

import copy
from collections import Counter
from pathlib import Path

import optuna
import pytest
import yaml

from tlsearch.errors import UserInputError
from tlsearch.search.conditions import conditions, group_keys, group_names
from tlsearch.search.pt_plan import plan
from tlsearch.search.space import make_space, resolve, train_config
from tlsearch.search.spec import spec_from_dict

SMOKE = yaml.safe_load((Path(__file__).resolve().parents[2] / "search_spaces" / "smoke.yaml").read_text())
A = {"dataset": "emt:alloys?n=80&seed=0", "property": "bulk_modulus"}
B = {"dataset": "emt:alloys?n=80&seed=0", "property": "volume_per_atom"}
FE = {"dataset": "emt:alloys?n=120&seed=1", "property": "formation_energy_per_atom"}
LA, LB, LFE = (f"{d['dataset']}/{d['property']}" for d in (A, B, FE))


def _spec(**data_changes):
    d = copy.deepcopy(SMOKE)
    del d["data"]["target"]
    d["data"].update({"targets": [A, B], "pretrain_sources": [FE, A, B], **data_changes})
    d["search"].update(ft_size=[30, 60])
    d["budget"]["trials"] = 24
    return spec_from_dict(d, where="test spec")


def test_single_target_spec_is_unchanged_and_targets_is_the_other_way_to_write_it():
    one = spec_from_dict(copy.deepcopy(SMOKE))
    assert [t.label for t in one.data.ft_targets] == [f"{SMOKE['data']['target']['dataset']}/bulk_modulus"]
    assert group_keys(one) == ("ft_size", 40) and group_names(one) == ["40"]   # the groups of older studies
    several = _spec()
    assert [t.label for t in several.data.ft_targets] == [LA, LB]
    assert group_names(several) == [f"{LA} | 30", f"{LB} | 30", f"{LA} | 60", f"{LB} | 60"]
    assert conditions(several)[1] == {"target": LB, "ft_size": 30}


@pytest.mark.parametrize("change,fragment", [
    ({"target": A}, "not both"),
    ({"targets": [A, A]}, "data.targets.1 (emt:alloys?n=80&seed=0/bulk_modulus) repeats data.targets.0"),
])
def test_bad_target_lists_are_clear_errors(change, fragment):
    with pytest.raises(UserInputError) as info:
        _spec(**change)
    assert fragment in str(info.value)


def test_a_target_that_is_its_only_pt_source_is_an_error():
    with pytest.raises(UserInputError) as info:
        _spec(pretrain_sources=[A])
    assert f"no source other than the target {LA}" in str(info.value)


def test_each_trial_gets_a_condition_in_turn_and_never_pre_trains_on_its_own_target():
    from tlsearch.search._optuna import CycleSampler
    from tlsearch.search.runner import strategy_cover

    spec = _spec()
    labels = [t.label for t in spec.data.ft_targets]
    covers = [strategy_cover(spec, labels.index(c["target"])) for c in conditions(spec)]
    # per target: scratch, PT->FT from each of its two sources, MPT (the freeze grid would not fit in 6 trials)
    assert covers[0] == [{"strategy": "scratch"}, {"strategy": "finetune", "pt_source_t0": LFE},
                         {"strategy": "finetune", "pt_source_t0": LB}, {"strategy": "mpt"}]
    sampler = CycleSampler(optuna.samplers.TPESampler(seed=0), None, conditions(spec), cover=covers)
    study = optuna.create_study(sampler=sampler)
    space, seen = make_space(spec), []
    for _ in range(24):
        t = study.ask()
        space(t)
        v = resolve(spec, t.params)
        seen.append(v)
        study.tell(t, 1.0)
        cfg = train_config(spec, t.params)
        assert cfg.target.property == v["target"].rsplit("/", 1)[-1]
        if v["strategy"] == "finetune":
            assert v["pt_source"] != v["target"]
            assert [s.property for s in cfg.pretrain.held_out_of] == [
                lab.rsplit("/", 1)[-1] for lab in labels if lab != v["target"]]
        if v["strategy"] == "mpt":
            assert v["target"] not in v["mpt_properties"]
    assert Counter((v["target"], v["ft_size"]) for v in seen) == {(t, z): 6 for t in labels for z in (30, 60)}
    # the first four rounds of every condition are its cover, in order
    first = [(v["target"], v["ft_size"], v["strategy"], v.get("pt_source")) for v in seen[:16]]
    assert first[:4] == [(LA, 30, "scratch", None), (LB, 30, "scratch", None), (LA, 60, "scratch", None),
                         (LB, 60, "scratch", None)]
    assert {(f[0], f[3]) for f in first if f[2] == "finetune"} == {(LA, LFE), (LA, LB), (LB, LFE), (LB, LA)}


def test_one_pt_model_per_source_serves_every_target(tmp_path):
    """The PT data of a source leave out every target's held-out test set, so a trial on A and one on B ask the
    store for the same model (the same key), and `tlsearch pretrain` plans one model per source."""
    from tlsearch.training.trial import _held_out_keys, pt_material

    spec = _spec()
    cache = {"cache_dir": str(tmp_path / "cache")}
    on_a = train_config(spec, {"strategy": "finetune", "target": LA, "pt_source_t0": LFE}, **cache)
    on_b = train_config(spec, {"strategy": "finetune", "target": LB, "pt_source_t1": LFE}, **cache)
    keys_a, keys_b = _held_out_keys(on_a), _held_out_keys(on_b)
    assert keys_a == keys_b and len(keys_a) > 0
    assert pt_material(on_a, keys_a) == pt_material(on_b, keys_b)
    planned = [(m.strategy, m.label) for m in plan(spec)]
    assert [x for x in planned if x[0] == "finetune"] == [("finetune", LFE), ("finetune", LA), ("finetune", LB)]
