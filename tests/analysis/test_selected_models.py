"""The report's "Selected models" of a study with several FT targets (issue 26.4): each row names its target, and
each printed `tlsearch predict` / `tlsearch export` command carries the `--target` that selects that row's model
(the atlas quickstart's report listed 8 rows without a target and the same two commands four times, none with
--target). The printed commands are split as a shell splits them and run through the real CLI (`main`), up to the
point where the model is loaded or written; the experiment is written from the real file formats, nothing trains."""

from __future__ import annotations

import json
import shlex

import optuna
import pytest

from tlsearch.search.experiment import RAY_TRIAL_ATTR, Experiment
from tlsearch.search.spec import spec_from_dict

# two targets share the property name 'target' (two folders: only dataset/property tells them apart; one path has
# a space, so the shell needs it quoted), the third has a property no other target has (the property is enough)
K, G, GAP = ("folder:/data/mp_elastic_K", "folder:/data/mp elastic_G", "folder:/data/mp_gap")
TARGETS = [{"dataset": K, "property": "target", "label": "K_VRH (MP)"}, {"dataset": G, "property": "target"},
           {"dataset": GAP, "property": "band_gap"}]
LABELS = [f"{t['dataset']}/{t['property']}" for t in TARGETS]
SIZES = ["100", "800"]
SPEC = {"name": "three-targets", "data": {"targets": TARGETS},
        "search": {"strategy": ["scratch"], "ft_size": [100, 800]}, "budget": {"trials": 6, "repeats": 2}}


def _experiment(root, spec_dict: dict) -> Experiment:
    """An ended study: one finished scratch trial per (target, FT size), each with a model directory."""
    spec = spec_from_dict(spec_dict, "test")
    exp = Experiment.create(spec, root)
    study = optuna.create_study(study_name=spec.name, storage=exp.optuna_storage(), direction="minimize")
    labels = [t.label for t in spec.data.ft_targets]
    dist = {"strategy": optuna.distributions.CategoricalDistribution(["scratch"]),
            "target": optuna.distributions.CategoricalDistribution(labels),
            "ft_size": optuna.distributions.CategoricalDistribution(SIZES)}
    combos = [(t, z) for z in SIZES for t in labels]
    for i, (target, size) in enumerate(combos):
        rid, val = f"t{i}", 0.5 + i / 100
        params = {"strategy": "scratch", "target": target, "ft_size": size}
        study.add_trial(optuna.trial.create_trial(params=params, distributions=dist, value=val,
                                                  user_attrs={RAY_TRIAL_ATTR: rid}))
        d = exp.tune_dir / f"trainable_{rid}"
        (d / "checkpoint_000000").mkdir(parents=True)
        (d / "checkpoint_000000" / "model.pt").write_bytes(b"")  # a model directory (never loaded here)
        base = {"trial_id": rid, "config": params, "timestamp": 1000 + i}
        rows = [{**base, "training_iteration": 1, "epoch": 1, "val_mae": val + 0.1},
                {**base, "training_iteration": 2, "final": True, "val_mae": val, "repeats": 2,
                 "val_mae_per_repeat": [val, val], "test_mae": val + 0.02, "test_mae_std": 0.01,
                 "test_mae_per_repeat": [val + 0.01, val + 0.03], "test_r2": 0.8, "n_train": 90, "epochs_run": 2}]
        (d / "result.json").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return exp


class _Loaded(Exception):
    """Raised where `tlsearch predict` loads the model it chose: which directory that is."""


def _run_printed(command: str, monkeypatch, tmp_path) -> str:
    """Run a printed command line through the real CLI, split as a shell splits it; the model directory it
    chose (predict: where it would load it; export: the selection it would write)."""
    from tlsearch.cli.main import main

    argv = shlex.split(command.replace("STRUCTURES", str(tmp_path / "new")).replace("OUT_DIR", str(tmp_path / "out")))
    assert argv[0] == "tlsearch"
    if argv[1] == "predict":
        def load_model(model_dir):
            raise _Loaded(str(model_dir))

        monkeypatch.setattr("tlsearch.training.predict.load_model", load_model)
        with pytest.raises(_Loaded) as picked:
            main(argv[1:])
        return str(picked.value)
    written = []

    def export_model(sel, out_dir):
        written.append(sel["model_dir"])
        return tmp_path / "out" / "m"

    monkeypatch.setattr("tlsearch.training.export.export_model", export_model)
    assert main(argv[1:]) == 0
    assert len(written) == 1
    return written[0]


def test_each_selected_model_names_its_target_and_its_commands_select_it(tmp_path, monkeypatch):
    from tlsearch.analysis.report import build_report

    exp = _experiment(tmp_path / "exp", SPEC)
    report = build_report(exp)
    models = report.summary["selected_models"]
    assert [(m["target"], m["ft_size"]) for m in models] == [(t, z) for t in LABELS for z in SIZES]
    assert len({m["model_dir"] for m in models}) == 6
    for m in models:  # each printed command, as a shell runs it, uses the model of its own row
        for kind in ("predict", "export"):
            command = m["commands"][kind]
            assert _run_printed(command, monkeypatch, tmp_path) == m["model_dir"], (kind, m["target"], command)
            assert f" --target {shlex.quote(m['target_option'])} " in command, command
    # the property where it names one target, else dataset/property; shell-quoted where it needs it
    assert [m["target_option"] for m in models] == [LABELS[0]] * 2 + [LABELS[1]] * 2 + ["band_gap"] * 2
    assert "--target 'folder:/data/mp elastic_G/target' --ft-size 800" in models[3]["commands"]["predict"]
    # the report's table has a target column: every row says which target and size it is
    md = report.markdown.read_text()
    section = md.split("## Selected models", 1)[1].split("\n## ", 1)[0]
    assert "| target | FT size | trial |" in section, section
    for m in models:
        assert f"| {m['target_name']} | {m['ft_size']} | {m['trial']} |" in section, (m["target_name"], section)
        assert f"{m['target_name']}, FT size {m['ft_size']}: `{m['commands']['predict']}`" in section
    assert "K_VRH (MP)" in section and "mp elastic_G/target" in section


def test_a_single_target_study_keeps_its_commands():
    from tlsearch.analysis.selected import commands, target_option

    assert commands("/x/exp", "100") == {
        "predict": "tlsearch predict /x/exp STRUCTURES --ft-size 100 --out predictions.csv",
        "export": "tlsearch export /x/exp OUT_DIR --ft-size 100"}
    targets = spec_from_dict({**SPEC, "data": {"targets": TARGETS}}, "t").data.ft_targets
    assert [target_option(targets, x) for x in LABELS] == [LABELS[0], LABELS[1], "band_gap"]
    # a label that is another target's property makes that property ambiguous for `choose`
    clash = [{**TARGETS[0], "label": "band_gap"}, TARGETS[2]]
    targets = spec_from_dict({**SPEC, "data": {"targets": clash}}, "t").data.ft_targets
    assert target_option(targets, LABELS[2]) == LABELS[2]
