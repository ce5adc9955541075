"""space.yaml loading: every shipped spec is usable, every mistake is one clean ``file: field: message``
line, and no input makes the loader raise anything but UserInputError. Pure Python, no training."""

from __future__ import annotations

import copy
import re
import warnings
from pathlib import Path

import optuna
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tlsearch.errors import UserInputError
from tlsearch.search.space import Space, train_config
from tlsearch.search.spec import SearchSpec, load_spec, spec_from_dict
from tlsearch.training.config import TrainConfig

SPACES = Path(__file__).resolve().parents[2] / "search_spaces"
SPEC_FILES = sorted([*SPACES.glob("*.yaml"), *SPACES.glob("*.yml")])
SMOKE = yaml.safe_load((SPACES / "smoke.yaml").read_text())


class Pick:
    """A stand-in trial that answers every suggestion with its first (or last) choice and records it."""

    def __init__(self, last: bool = False, **forced) -> None:
        self.last, self.forced, self.params = last, forced, {}

    def _put(self, name, value):
        value = self.forced.get(name, value)
        self.params[name] = value
        return value

    def suggest_categorical(self, name, choices):
        return self._put(name, choices[-1 if self.last else 0])

    def suggest_int(self, name, low, high, *, step=1, log=False):
        return self._put(name, high - (high - low) % step if self.last else low)

    def suggest_float(self, name, low, high, *, step=None, log=False):
        return self._put(name, high if self.last else low)


# ---------------------------------------------------------------------------------------------------------
# every shipped spec


def test_spec_files_exist():
    assert SPACES / "smoke.yaml" in SPEC_FILES


@pytest.mark.parametrize("path", SPEC_FILES, ids=lambda p: p.name)
def test_shipped_spec_loads_and_maps_to_train_configs(path):
    spec = load_spec(path)
    assert isinstance(spec, SearchSpec)
    space = Space(spec)
    for strategy in spec.search.strategy:
        for last in (False, True):  # the first and the last choice of every dimension
            pick = Pick(last=last, strategy=strategy)
            space(pick)
            trial = optuna.trial.FixedTrial(pick.params)
            with warnings.catch_warnings():
                warnings.simplefilter("error")  # a value outside its distribution warns in FixedTrial
                space(trial)
            cfg = train_config(spec, trial.params)
            assert isinstance(cfg, TrainConfig)
            assert cfg.mode == strategy
            # the trial trains one of the spec's targets (its dataset and property; a label is the spec's only)
            assert cfg.target.model_dump() in [t.model_dump(exclude={"name"}) for t in spec.data.ft_targets]
            assert (cfg.pretrain is None) == (strategy == "scratch")
            assert cfg.train.optim.epochs == spec.budget.max_epochs


def test_smoke_spec_values():
    spec = load_spec(SPACES / "smoke.yaml")
    assert spec.name == "smoke"
    assert spec.search.strategy == ["scratch", "finetune", "mpt"]
    assert spec.scheduler.type == "asha" and spec.scheduler.grace_period == 2
    assert len(spec.mpt_candidates) == 3
    assert spec_from_dict(copy.deepcopy(SMOKE)) == spec


def test_scheduler_type_defaults_to_asha():
    spec = spec_from_dict({**SMOKE, "scheduler": {"grace_period": 1}})
    assert spec.scheduler.type == "asha" and spec.scheduler.grace_period == 1
    assert spec_from_dict({k: v for k, v in SMOKE.items() if k != "scheduler"}).scheduler.type == "asha"
    assert spec_from_dict({**SMOKE, "scheduler": {"type": "none"}}).scheduler.type == "none"


# ---------------------------------------------------------------------------------------------------------
# bad input: one readable line per field


def _mutate(fn):
    def text() -> str:
        d = copy.deepcopy(SMOKE)
        fn(d)
        return yaml.safe_dump(d, sort_keys=False)
    return text


def _set(section, **kv):
    return _mutate(lambda d: d.setdefault(section, {}).update(kv))


def _top(**kv):
    return _mutate(lambda d: d.update(kv))


def _drop(section, key=None):
    return _mutate(lambda d: d.pop(section) if key is None else d[section].pop(key))


STRATEGIES = ("'scratch'", "'finetune'", "'mpt'")
FREEZES = ("'all_unfrozen'", "'2b'", "'3b'", "'new_head'", "'last_layer'")

# id, file text, fragments the message must contain
BAD = [
    ("malformed-yaml", lambda: "name: smoke\ndata: {target: [unclosed\n", ["not valid YAML"]),
    ("tab-indent-yaml", lambda: "name: x\n\tdata: 1\n", ["not valid YAML"]),
    ("top-level-list", lambda: "- name\n- data\n", ["expected a mapping"]),
    ("top-level-scalar", lambda: "smoke\n", ["expected a mapping"]),
    ("empty-file", lambda: "", ["expected a mapping"]),
    ("binary-file", lambda: b"\xff\xfe\x00name: \x9c\n", ["not a text file"]),
    ("missing-name", _drop("name"), ["name: Field required"]),
    ("bad-name-chars", _top(name="my study/1"), ["name:", "'my study/1'"]),
    ("missing-target", _drop("data", "target"),
     ["data: give the FT target as data.target (one) or data.targets", "one of them is required"]),
    ("target-not-mapping", _set("data", target="emt:alloys"), ["data.target:"]),
    ("source-missing-property", _set("data", pretrain_sources=[{"dataset": "emt:alloys"}]),
     ["data.pretrain_sources.0.property: Field required"]),
    ("unknown-top-key", _top(colour="red"), ["colour: Extra inputs are not permitted"]),
    ("unknown-nested-key", _set("search", colour="red"), ["search.colour: Extra inputs are not permitted"]),
    ("unknown-range-key", _set("search", ft_lr={"low": 0.001, "high": 0.01, "lg": True}),
     ["search.ft_lr.lg: Extra inputs are not permitted"]),
    ("wrong-type", _set("budget", trials="many"), ["budget.trials:", "valid integer", "'many'"]),
    ("trials-zero", _set("budget", trials=0), ["budget.trials:", "greater than or equal to 1"]),
    ("gpus-negative", _set("resources", gpus_per_trial=-1),
     ["resources.gpus_per_trial:", "greater than or equal to 0"]),
    ("test-fraction-1.5", _set("data", test_fraction=1.5), ["data.test_fraction:", "less than 1", "1.5"]),
    ("float-range-low-ge-high", _set("search", ft_lr={"low": 0.01, "high": 0.001}),
     ["search.ft_lr:", "low (0.01) must be < high (0.001)"]),
    ("float-range-low-eq-high", _set("search", ft_lr={"low": 0.01, "high": 0.01}), ["search.ft_lr:", "must be <"]),
    ("int-range-low-gt-high", _set("search", batch_size={"low": 32, "high": 8}),
     ["search.batch_size:", "low (32) must be <= high (8)"]),
    ("int-range-step-zero", _set("search", batch_size={"low": 8, "high": 32, "step": 0}),
     ["search.batch_size.step:", "greater than or equal to 1"]),
    ("float-range-infinite", _set("search", ft_lr={"low": 0.001, "high": float("inf")}),
     ["search.ft_lr:", "finite"]),
    ("log-range-low-zero", _set("search", ft_lr={"low": 0.0, "high": 0.01, "log": True}),
     ["search.ft_lr:", "log range needs low > 0"]),
    ("log-range-low-negative", _set("search", pt_lr={"low": -1.0, "high": 0.01, "log": True}),
     ["search.pt_lr:", "log range needs low > 0"]),
    ("range-missing-high", _mutate(lambda d: d["search"]["architecture"].update(hidden_features={"low": 8})),
     ["search.architecture.hidden_features.high: Field required"]),
    ("dim-wrong-type", _set("search", batch_size="big"),
     ["search.batch_size:", "a fixed value, a list of choices or a {low, high} range", "'big'"]),
    ("dim-list-bad-item", _set("search", ft_lr=[0.001, "fast"]), ["search.ft_lr.1:", "'fast'"]),
    ("unknown-strategy", _set("search", strategy=["scratch", "transfer"]),
     ["search.strategy.1:", "'transfer'", *STRATEGIES]),
    ("empty-strategy", _set("search", strategy=[]), ["search.strategy:", "at least 1"]),
    ("unknown-freeze", _set("search", freeze=["all_unfrozen", "4b"]), ["search.freeze.1:", "'4b'", *FREEZES]),
    ("unknown-sampling", _set("search", sampling=["kmeans"]), ["search.sampling.0:", "'random'", "'stratified'"]),
    ("ft-size-word", _set("search", ft_size=["some"]), ["search.ft_size.0:", "'all'", "'some'"]),
    ("mpt-max-below-min", _set("search", mpt_subset={"min_size": 3, "max_size": 2}),
     ["search.mpt_subset:", "max_size (2) must be >= min_size (3)"]),
    ("scheduler-hyperband", _top(scheduler={"type": "hyperband"}), ["scheduler:", "'hyperband'", "'asha'", "'none'"]),
    ("scheduler-bad-type", _top(scheduler={"type": None}), ["scheduler:", "'asha'", "'none'"]),
    ("scheduler-no-type-bad-field", _top(scheduler={"grace_period": 0}),
     ["scheduler.grace_period:", "greater than or equal to 1"]),
    ("asha-bad-field", _top(scheduler={"type": "asha", "grace_period": 0}),
     ["scheduler.grace_period:", "greater than or equal to 1"]),
    ("none-scheduler-extra", _top(scheduler={"type": "none", "grace_period": 2}),
     ["scheduler.grace_period: Extra inputs are not permitted"]),
    ("tracking-mode", _set("tracking", mode="cloud"), ["tracking.mode:", "'offline'", "'disabled'"]),
    ("dashboard-port", _set("cluster", dashboard_port=70000), ["cluster.dashboard_port:", "65535"]),
    ("finetune-without-sources", _set("data", pretrain_sources=[]),
     ["search.strategy", "'finetune'", "data.pretrain_sources"]),
    ("mpt-too-few-properties", _mutate(lambda d: d["data"].update(mpt_properties=d["data"]["mpt_properties"][:1])),
     ["search.strategy", "'mpt'", "data.mpt_properties", "search.mpt_subset.min_size=2"]),
    ("mpt-target-does-not-count", _mutate(lambda d: d["data"].update(
        mpt_properties=[d["data"]["target"], d["data"]["mpt_properties"][0]])),
     ["data.mpt_properties has 1 properties other than the target"]),
    ("several-errors", _mutate(lambda d: (d["budget"].update(trials=0), d["search"].update(colour=1))),
     ["budget.trials:", "search.colour:"]),
]


@pytest.mark.parametrize("make, fragments", [pytest.param(m, f, id=i) for i, m, f in BAD])
def test_bad_spec_is_one_clean_line_per_field(tmp_path, make, fragments):
    path = tmp_path / "space.yaml"
    content = make()
    path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content)
    with pytest.raises(UserInputError) as info:
        load_spec(path)
    msg = str(info.value)
    for fragment in fragments:
        assert fragment in msg, f"{fragment!r} not in:\n{msg}"
    assert "Traceback" not in msg and "errors.pydantic.dev" not in msg and "https://" not in msg
    for line in msg.split("\n"):
        assert line.startswith(f"{path}: "), line


def test_missing_file_names_the_path(tmp_path):
    path = tmp_path / "nope.yaml"
    with pytest.raises(UserInputError, match="cannot read"):
        load_spec(path)
    with pytest.raises(UserInputError, match="cannot read"):
        load_spec(tmp_path)  # a directory


def test_spec_from_dict_names_its_source():
    with pytest.raises(UserInputError, match=r"^somewhere\.yaml: name: Field required$"):
        spec_from_dict({k: v for k, v in SMOKE.items() if k != "name"}, "somewhere.yaml")
    with pytest.raises(UserInputError, match="expected a mapping"):
        spec_from_dict(["name", "smoke"])


# ---------------------------------------------------------------------------------------------------------
# fuzz: nothing but UserInputError ever escapes

KEYS = sorted({"name", "data", "search", "budget", "scheduler", "resources", "tracking", "cluster", "graph",
               "target", "dataset", "property", "pretrain_sources", "mpt_properties", "strategy", "freeze",
               "freeze_depth", "ft_lr", "pt_lr", "batch_size", "low", "high", "log", "step", "type", "trials",
               "min_size", "max_size", "mpt_subset", "architecture", "hidden_features", "test_fraction", "seed"})
WORDS = ["all", "asha", "none", "scratch", "finetune", "mpt", "2b", "emt:alloys", "1e-3", "inf", "nan", ""]
SCALARS = (st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=True)
           | st.text(max_size=12) | st.sampled_from(WORDS))
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=6) | st.integers(), inner,
                                        max_size=4),
                      max_leaves=24)


def _check(data):
    try:
        spec = spec_from_dict(data, "fuzz.yaml")
    except UserInputError as exc:
        msg = str(exc)
        assert msg and "Traceback" not in msg and "errors.pydantic.dev" not in msg
        assert all(line.startswith("fuzz.yaml: ") for line in msg.split("\n")), msg
    else:
        assert isinstance(spec, SearchSpec)


FUZZ = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(VALUES)
def test_fuzz_random_values(data):
    _check(data)


@FUZZ
@given(st.dictionaries(st.sampled_from(KEYS), VALUES, max_size=6))
def test_fuzz_random_top_level_mappings(data):
    _check(data)


@FUZZ
@given(st.data())
def test_fuzz_mutated_smoke_spec(data):
    doc = copy.deepcopy(SMOKE)
    for _ in range(data.draw(st.integers(1, 3), label="mutations")):
        parent, key = None, None
        node = doc
        while isinstance(node, (dict, list)) and node and data.draw(st.booleans(), label="descend"):
            parent = node
            key = data.draw(st.sampled_from(sorted(node, key=str)) if isinstance(node, dict)
                            else st.integers(0, len(node) - 1), label="key")
            node = node[key]
        if parent is None:  # mutate the top level itself
            parent, key = doc, data.draw(st.sampled_from(sorted(doc, key=str)), label="top key") if doc else "x"
        action = data.draw(st.sampled_from(["delete", "replace", "add"]), label="action")
        if action == "delete" and key in (parent if isinstance(parent, dict) else range(len(parent))):
            del parent[key]
        elif action == "add" and isinstance(parent, dict):
            parent[data.draw(st.sampled_from(KEYS) | st.text(max_size=6), label="new key")] = data.draw(VALUES)
        else:
            value = data.draw(VALUES, label="value")
            if isinstance(parent, list) and not parent:
                parent.append(value)
            else:
                parent[key] = value
    _check(doc)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_fuzz_load_spec_on_random_files(tmp_path_factory, content):
    path = tmp_path_factory.mktemp("fuzz") / "space.yaml"
    path.write_bytes(content)
    try:
        load_spec(path)
    except UserInputError as exc:
        assert str(path) in str(exc)


@pytest.mark.parametrize("search, needle", [
    ({"strategy": ["scratch"], "ft_lr": {"low": 0.1, "high": 3.0}}, "train.optim.lr"),
    ({"strategy": ["scratch"], "architecture": {"hidden_features": [2, 64]}}, "model.hidden_features"),
    ({"strategy": ["scratch"], "ft_size": [1]}, "sample_size"),
])
def test_values_every_trial_would_reject_fail_at_load(tmp_path, search, needle):
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump({"name": "x", "search": search,
                                    "data": {"target": {"dataset": "emt:alloys", "property": "bulk_modulus"}}}))
    with pytest.raises(UserInputError, match=needle) as exc:
        load_spec(path)
    assert str(path) in str(exc.value) and "invalid trial" in str(exc.value)


def test_renamed_spec_takes_the_name_everywhere_and_rejects_a_bad_one():
    from tlsearch.errors import UserInputError
    from tlsearch.search.spec import load_spec

    s = load_spec("search_spaces/smoke.yaml")
    assert s.renamed(None) is s and s.renamed("other-1").name == "other-1"
    assert s.renamed("other-1").model_dump(exclude={"name"}) == s.model_dump(exclude={"name"})
    with pytest.raises(UserInputError, match="--name: 'a b' is not a valid study name"):
        s.renamed("a b")


# ---------------------------------------------------------------------------------------------------------
# a data entry's label (issue 17.10): the name a reader sees, never what identifies the data

LABELLED = {"name": "k", "search": {"strategy": ["scratch", "finetune", "mpt"]},
            "data": {"target": {"dataset": "folder:/some/path", "property": "target", "label": "K_VRH (MP)"},
                     "pretrain_sources": [{"dataset": "folder:/g", "property": "target", "label": "G (MP)"}],
                     "mpt_properties": [{"dataset": "folder:/some/path", "property": "target"},
                                        {"dataset": "folder:/g", "property": "target"},
                                        {"dataset": "folder:/gap", "property": "target", "label": "gap"}],
                     "eval_sets": [{"dataset": "folder:/2d", "property": "gap", "label": "2D gap"}]}}


def test_a_data_label_names_the_data_and_leaves_its_identity_alone():
    s = spec_from_dict(copy.deepcopy(LABELLED))
    d = s.data
    assert d.target.label == "folder:/some/path/target" and d.target.name == "K_VRH (MP)"
    assert d.names() == {"folder:/some/path/target": "K_VRH (MP)", "folder:/g/target": "G (MP)",
                         "folder:/gap/target": "gap", "folder:/2d/gap": "2D gap"}
    # the target is still left out of the MPT candidates although only its target entry carries the label
    assert [p.label for p in s.mpt_candidates] == ["folder:/g/target", "folder:/gap/target"]
    # trial configs (and so every cache and PT store key) are those of the unlabelled spec
    plain = copy.deepcopy(LABELLED)
    for v in plain["data"].values():
        for e in v if isinstance(v, list) else [v]:
            e.pop("label", None)
    p = spec_from_dict(plain)
    assert p.data.names() == {} and p.data.target.name is None
    for params in ({"strategy": "scratch"}, {"strategy": "finetune"}, {"strategy": "mpt"}):
        assert train_config(s, params).model_dump() == train_config(p, params).model_dump()
    # spec.json keeps the label (written as `label`) and is unchanged for a spec without one
    assert SearchSpec.model_validate_json(s.model_dump_json()) == s
    assert s.model_dump()["data"]["target"] == {"dataset": "folder:/some/path", "property": "target",
                                                "label": "K_VRH (MP)"}
    assert p.model_dump()["data"]["target"] == {"dataset": "folder:/some/path", "property": "target"}
    assert s.renamed("k2").data == s.data


@pytest.mark.parametrize("where, label", [("target", ""), ("target", "   "), ("eval_sets", ""), ("target", 3)])
def test_a_bad_data_label_is_an_error_naming_the_field(where, label):
    data = copy.deepcopy(LABELLED)
    entry = data["data"][where] if where == "target" else data["data"][where][0]
    entry["label"] = label
    loc = "data.target.label" if where == "target" else "data.eval_sets.0.label"
    with pytest.raises(UserInputError, match=rf"^space\.yaml: {re.escape(loc)}: ") as exc:
        spec_from_dict(data)
    assert "\n" not in str(exc.value)


@pytest.mark.parametrize("change, needle", [
    (lambda d: d["mpt_properties"][1].update(label="other"),
     "space.yaml: data: mpt_properties.1.label 'other' and pretrain_sources.0.label 'G (MP)' name the same data "
     "(folder:/g/target)"),
    (lambda d: d["eval_sets"][0].update(label="gap"),
     "space.yaml: data: eval_sets.0.label 'gap' also names folder:/gap/target (mpt_properties.2)"),
])
def test_a_label_names_one_dataset_property(change, needle):
    data = copy.deepcopy(LABELLED)
    change(data["data"])
    with pytest.raises(UserInputError) as exc:
        spec_from_dict(data)
    assert needle in str(exc.value), str(exc.value)
