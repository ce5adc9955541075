"""The one table of search dimensions (search/dimensions.py): everything that names a dimension is derived from
it, and a new dimension is one entry (the worked example of docs/architecture.md, run here)."""

from __future__ import annotations

import optuna
import pytest

from tests.search.test_space import COMMON, TRANSFER, make_spec, run_fixed
from tlsearch.errors import UserInputError
from tlsearch.search import dimensions as dims
from tlsearch.search.space import Space, check_trial_configs, resolve, train_config
from tlsearch.search.spec import FloatRange
from tlsearch.training.config import TrainConfig


def _field(model: type, path: str) -> bool:
    """Whether a dotted path names a field of a pydantic model (through nested models)."""
    head, _, rest = path.partition(".")
    field = model.model_fields.get(head)
    if field is None:
        return False
    if not rest:
        return True
    nested = next((a for a in getattr(field.annotation, "__args__", (field.annotation,))
                   if isinstance(a, type) and hasattr(a, "model_fields")), None)
    return nested is not None and _field(nested, rest)


def test_every_dimension_lands_on_a_train_config_field_and_has_its_report_columns():
    from tlsearch.analysis._schema import TRIALS
    from tlsearch.analysis.wandb_report import PARAMS

    for dim in dims.DIMENSIONS:
        assert _field(TrainConfig, dim.lands), f"{dim.name}: {dim.lands} is no TrainConfig field"
        for col, (dtype, _) in dim.columns().items():
            assert col in TRIALS and str(TRIALS[col][0]) == dtype, col
    assert PARAMS == dims.param_names() and len(set(PARAMS)) == len(PARAMS)
    names = list(TRIALS)
    assert names.index("strategy") + 1 == names.index("family")  # the family right after the strategy


def test_the_space_suggests_in_table_order():
    """The define-by-run function's order of suggest calls is the table's (a seeded sampler's draws depend on it)."""
    spec = make_spec()
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    for _ in range(30):
        t = study.ask()
        Space(spec)(t)
        order = [p for p in t.params]
        expected = [p for p in dims.param_names() if p in t.params]
        assert [p for p in order if not p.startswith("mpt_combo_")] == expected, order
        study.tell(t, 1.0)


def test_family_key_and_family_label_come_from_the_family_dimensions():
    spec = make_spec()
    params = {"strategy": "mpt", "mpt_size": 2, "mpt_combo_2": 3, **TRANSFER, **COMMON}
    assert dims.family_key(params) == "mpt mpt_combo_2=3 mpt_size=2"  # as schedulers stored it before the table
    v = resolve(spec, params)
    assert dims.family_label(v) == f"MPT({' + '.join(v['mpt_properties'])})"
    assert dims.family_key({"strategy": "scratch", "ft_lr": 1e-3}) == "scratch"


def test_a_new_dimension_is_one_entry(monkeypatch):
    """docs/architecture.md's worked example: AdamW's weight decay searched as a range. One table entry (here
    declared by a function instead of a spec field) and the space suggests it, resolve and status show it, the
    trial config carries it, the report has its column, and validate rejects a range no trial could train."""
    declared = {"dim": FloatRange(low=1e-6, high=1e-3, log=True)}
    entry = dims.Dimension("weight_decay", "all", lambda spec: declared["dim"], "train.optim.weight_decay", float,
                           "Float64", "AdamW weight decay")
    monkeypatch.setattr(dims, "DIMENSIONS", (*dims.DIMENSIONS, entry))
    spec = make_spec()
    params = {"strategy": "finetune", "pt_source": spec.data.pretrain_sources[0].label, **TRANSFER, **COMMON,
              "weight_decay": 2e-4}
    assert run_fixed(Space(spec), params) == params  # suggested, and nothing else new
    assert resolve(spec, params)["weight_decay"] == 2e-4
    assert train_config(spec, params).train.optim.weight_decay == 2e-4
    from tlsearch.analysis._schema import _dimension_columns
    from tlsearch.search.status import details

    assert _dimension_columns()["weight_decay"][1] == "AdamW weight decay"
    assert "weight_decay=0.0002" in details(resolve(spec, params), params)
    assert "weight_decay" in dims.param_names()
    declared["dim"] = FloatRange(low=-1e-3, high=1e-3)  # AdamW takes no negative decay
    with pytest.raises(UserInputError, match="weight_decay"):
        check_trial_configs(spec)
