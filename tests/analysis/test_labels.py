"""A data entry's ``label:`` names its dataset wherever a person reads it (conclusions, report tables, plots,
``tlsearch status``, W&B), while trials.parquet, trial parameters and keys keep the ``dataset/property``
identity, so existing experiments and PT models still load (issue 17.10: folder datasets were named by their
path, ``/data/mp_elastic_K/target``, in every conclusion).

The experiment directory is written from the real file formats (spec.json, the Optuna journal, Ray Tune's
``result.json`` per trial); nothing trains."""

from __future__ import annotations

import copy
import json

import optuna
import polars as pl
import pytest

from tlsearch.search.experiment import RAY_TRIAL_ATTR, Experiment
from tlsearch.search.spec import spec_from_dict

K, G, GAP, EV = ("folder:/data/mp_elastic_K", "folder:/data/mp_elastic_G", "folder:/data/mp_gap", "folder:/data/2d")
SPEC = {
    "name": "labels",
    "data": {
        "target": {"dataset": K, "property": "target", "label": "K_VRH (MP)"},
        "pretrain_sources": [{"dataset": G, "property": "target", "label": "G_VRH (MP)"}],
        # the same data unlabelled here: it takes the label given above
        "mpt_properties": [{"dataset": G, "property": "target"},
                           {"dataset": GAP, "property": "target", "label": "band gap (MP)"}],
        "eval_sets": [{"dataset": EV, "property": "bandgap", "label": "2D band gap"}],
    },
    "search": {"strategy": ["scratch", "finetune", "mpt"], "ft_size": [100]},
    "budget": {"trials": 3, "max_epochs": 2, "repeats": 2},
}
# (params, test MAE per repeat): transfer beats scratch
TRIALS = [({"strategy": "scratch"}, [0.50, 0.52]), ({"strategy": "finetune"}, [0.40, 0.41]),
          ({"strategy": "mpt"}, [0.45, 0.46])]


def unlabelled(spec: dict) -> dict:
    out = copy.deepcopy(spec)
    for v in out["data"].values():
        for e in v if isinstance(v, list) else [v]:
            e.pop("label", None)
    return out


def fake_experiment(root, spec_dict: dict) -> Experiment:
    """An ended study of three finished trials, as `tlsearch run` leaves it on disk."""
    spec = spec_from_dict(spec_dict, "test")
    exp = Experiment.create(spec, root)
    study = optuna.create_study(study_name=spec.name, storage=exp.optuna_storage(), direction="minimize")
    dist = {"strategy": optuna.distributions.CategoricalDistribution(["scratch", "finetune", "mpt"])}
    for i, (params, test) in enumerate(TRIALS):
        rid = f"t{i}"
        val = sum(test) / 2 - 0.01
        study.add_trial(optuna.trial.create_trial(params=params, distributions=dist, value=val,
                                                  user_attrs={RAY_TRIAL_ATTR: rid}))
        d = exp.tune_dir / f"trainable_{rid}"
        d.mkdir(parents=True)
        base = {"trial_id": rid, "config": params, "timestamp": 1000 + i}
        rows = [{**base, "training_iteration": e, "epoch": e, "val_mae": val + 0.1 / e} for e in (1, 2)]
        rows.append({**base, "training_iteration": 3, "final": True, "val_mae": val, "repeats": 2,
                     "val_mae_per_repeat": [val, val], "test_mae": sum(test) / 2, "test_mae_std": 0.007,
                     "test_mae_per_repeat": test, "test_r2": 0.8, "n_train": 90, "epochs_run": 4,
                     f"eval/{EV}/bandgap/mae": 0.7 + i / 10})
        (d / "result.json").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return exp


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    from tlsearch.analysis.report import build_report

    out = {}
    for kind, spec in (("labelled", SPEC), ("plain", unlabelled(SPEC))):
        exp = fake_experiment(tmp_path_factory.mktemp(kind), spec)
        out[kind] = (exp, build_report(exp))
    return out


def test_labels_name_the_data_in_the_conclusions(reports):
    line = reports["labelled"][1].conclusions[0]
    assert line.startswith("K_VRH (MP), 100 samples: PT on G_VRH (MP) -> FT with all layers retrained"), line
    assert "/data/" not in line and "folder:" not in line


def test_without_labels_the_conclusions_read_as_before(reports):
    line = reports["plain"][1].conclusions[0]
    assert line.startswith("/data/mp_elastic_K/target, 100 samples: PT on /data/mp_elastic_G/target -> FT with "
                           "all layers retrained, lr 1.0e-03 beats scratch by "), line


def test_labels_name_the_data_in_the_report_tables(reports):
    md = reports["labelled"][1].markdown.read_text()
    for name in ("Target property: K_VRH (MP)", "PT->FT(G_VRH (MP))", "MPT(G_VRH (MP) + band gap (MP))",
                 "| 2D band gap |", "| PT source | G_VRH (MP) |", "| MPT set | G_VRH (MP) + band gap (MP) |"):
        assert name in md, name
    assert f"{K}/target" in md  # what each label stands for is stated once
    plain = reports["plain"][1].markdown.read_text()
    assert f"PT->FT({G}/target)" in plain and f"| {EV}/bandgap |" in plain and "K_VRH" not in plain


def test_labels_change_no_identity_in_trials_parquet_or_summary(reports):
    """Keys stay ``dataset/property``: an experiment's tables, eval-set MAEs and PT sources do not depend on
    whether its spec labels the data."""
    cols = ["trial", "family", "pt_source", "mpt_properties", "eval_mae", "test_mae"]
    a, b = (pl.read_parquet(reports[k][1].trials).select(cols) for k in ("labelled", "plain"))
    assert a.equals(b)
    assert a["family"].to_list() == ["scratch", f"PT->FT({G}/target)", f"MPT({G}/target + {GAP}/target)"]
    s = reports["labelled"][1].summary
    assert s["target"] == f"{K}/target" and s["eval_sets"] == [f"{EV}/bandgap"]
    assert s["labels"] == {f"{K}/target": "K_VRH (MP)", f"{G}/target": "G_VRH (MP)",
                           f"{GAP}/target": "band gap (MP)", f"{EV}/bandgap": "2D band gap"}
    assert reports["plain"][1].summary["labels"] == {}


def test_labels_name_the_data_in_the_plots():
    from tlsearch.analysis._plots import _fam

    names = {f"{G}/target": "G_VRH (MP)"}
    assert _fam(f"MPT({G}/target + {GAP}/target)", names=names) == "MPT(G_VRH (MP) + target)"
    assert _fam(f"MPT({G}/target + {GAP}/target)") == "MPT(target + target)"


def test_labels_name_the_data_in_the_wandb_report(reports):
    from tlsearch.analysis._wandb_text import intro as _intro

    text = _intro(reports["labelled"][1].summary)
    assert "Target property: K_VRH (MP)" in text and "| PT->FT(G_VRH (MP)) |" in text
    assert "Target property: `folder:/data/mp_elastic_K/target`" in _intro(reports["plain"][1].summary)
    from tlsearch.search.tracking import run_notes  # every W&B run of the study says what the labels stand for

    assert run_notes(spec_from_dict(SPEC)).startswith(f"data labels: K_VRH (MP) = {K}/target; G_VRH (MP) = ")
    assert run_notes(spec_from_dict(unlabelled(SPEC))) is None

