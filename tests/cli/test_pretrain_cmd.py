"""`tlsearch pretrain`: trains, through the trials' own code path, every PT model a study would ask for, so a
trial of that study then finds it in the store under the same key."""

import subprocess
import sys

import pytest
import yaml

from tlsearch.cli.main import main
from tlsearch.search.pt_plan import plan
from tlsearch.search.space import train_config
from tlsearch.search.spec import load_spec
from tlsearch.training import train_trial
from tlsearch.training.store import PretrainStore

SRC = "emt:alloys?n=40&seed=1"
SPEC = {
    "name": "pt",
    "data": {"target": {"dataset": "emt:alloys?n=40&seed=0", "property": "bulk_modulus"},
             "pretrain_sources": [{"dataset": SRC, "property": "formation_energy_per_atom"}],
             "mpt_properties": [{"dataset": SRC, "property": p} for p in
                                ("formation_energy_per_atom", "volume_per_atom", "energy_per_atom")]},
    "search": {"strategy": ["scratch", "finetune", "mpt"], "freeze": ["all_unfrozen", "last_layer"],
               "ft_size": [20], "mpt_subset": {"min_size": 2, "max_size": 3},
               "architecture": {"alignn_layers": 1, "gcn_layers": 1, "hidden_features": 16, "embedding_features": 8}},
    "budget": {"trials": 2, "max_epochs": 1, "pt_epochs": 1},
}


def write(tmp_path, spec=SPEC, **changes):
    data = yaml.safe_load(yaml.safe_dump(spec))
    for section, values in changes.items():
        data[section] = {**data[section], **values}
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_plan_has_one_model_per_source_and_mpt_subset(tmp_path):
    spec = load_spec(write(tmp_path))
    models = plan(spec)
    assert [m.strategy for m in models] == ["finetune"] + ["mpt"] * 4  # C(3,2) + C(3,3)
    assert len({m.label for m in models}) == 5
    assert len(plan(spec, only="mpt")) == 4 and len(plan(spec, only="finetune")) == 1
    grid = load_spec(write(tmp_path, search={"architecture": {"hidden_features": [16, 32], "alignn_layers": 1,
                                                              "gcn_layers": 1, "embedding_features": 8}}))
    assert len(plan(grid, only="finetune")) == 2


def test_pretrain_then_the_trial_hits_the_store_with_the_same_key(tmp_path, capsys):
    path = write(tmp_path, search={"strategy": ["finetune", "mpt"], "mpt_subset": {"min_size": 3}})
    assert main(["pretrain", str(path)]) == 0
    text = capsys.readouterr().out
    assert "2 PT model(s)" in text and text.count("trained 1 epochs") == 2
    store = PretrainStore()
    assert len(list(store.root.glob("*.pt"))) == 2
    spec = load_spec(path)
    for params in ({"strategy": "finetune", "freeze": "last_layer"}, {"strategy": "mpt"}):
        cfg = train_config(spec, params)  # what a trial builds (the store: $TLSEARCH_CACHE/pretrained)
        result = train_trial(cfg)
        assert result.pretrain.store_hit is True, params
        assert result.pretrain.key in text and store.path(result.pretrain.key).is_file()
    assert main(["pretrain", str(path), "--only", "mpt"]) == 0
    again = capsys.readouterr().out
    assert "already in the store" in again and "trained 1 epochs" not in again


def test_store_option(tmp_path, capsys):
    path = write(tmp_path, search={"strategy": ["finetune"]})
    assert main(["pretrain", str(path), "--store", str(tmp_path / "elsewhere")]) == 0
    out = capsys.readouterr().out
    assert len(list((tmp_path / "elsewhere").glob("*.pt"))) == 1 and "elsewhere" in out
    assert not PretrainStore().root.exists()


@pytest.mark.parametrize("changes, needles", [
    ({"search": {"strategy": ["scratch"]}}, ["search.strategy is ['scratch']", "no trial of this study pre-trains"]),
    ({"search": {"pt_lr": [0.001, 0.01]}}, ["search.pt_lr is searched", "give search.pt_lr one value"]),
    ({"search": {"pt_lr": {"low": 0.0001, "high": 0.01, "log": True}}}, ["search.pt_lr is searched"]),
    ({"search": {"architecture": {"hidden_features": {"low": 8, "high": 520, "step": 8}, "alignn_layers": [1, 2]}}},
     ["search.architecture allows 130 architectures", "fix: narrow search.architecture"]),
])
def test_nothing_to_train_ahead_is_exit_2(tmp_path, capsys, changes, needles):
    path = write(tmp_path, **changes)
    assert main(["pretrain", str(path)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert str(path) in err and all(n in err for n in needles), err
    assert not PretrainStore().root.exists()


def test_exit_2_without_traceback_and_bad_only(tmp_path):
    path = write(tmp_path, search={"strategy": ["scratch", "finetune"]})
    proc = subprocess.run([sys.executable, "-m", "tlsearch.cli.main", "pretrain", str(path), "--only", "mpt"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "without strategy 'mpt'" in " ".join(proc.stderr.split())
    proc = subprocess.run([sys.executable, "-m", "tlsearch.cli.main", "pretrain", str(path), "--only", "nope"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "nope" in proc.stderr


def test_progress_sees_every_pt_epoch_and_a_hit_sees_none(tmp_path):
    from tlsearch.training.trial import pretrained_entry

    spec = load_spec(write(tmp_path, budget={"pt_epochs": 2}))
    cfg = plan(spec, only="finetune")[0].config
    seen = []
    entry = pretrained_entry(cfg, lambda m, trainer: seen.append((m.epoch, trainer.optim.epochs, m.val_mae)))
    assert [e for e, _, _ in seen] == [1, 2] and all(n == 2 for _, n, _ in seen) and not entry.hit
    assert entry.meta["best_val"] == min(v for _, _, v in seen)
    again = pretrained_entry(cfg, lambda *a: pytest.fail("a store hit trains nothing"))
    assert again.hit and again.key == entry.key
