"""data.pretrained: PT models shipped as `tlsearch models export` files next to a space.yaml, checked by
`validate` and imported into the store by `pretrain` and `run` before anything trains."""

import pytest
import yaml

from tlsearch.cli.main import main
from tlsearch.search.pt_plan import plan
from tlsearch.search.spec import load_spec
from tlsearch.training.store import PretrainStore
from tlsearch.training.trial import pretrained_entry

from test_pretrain_cmd import SPEC


def shipped_spec(tmp_path, files):
    data = yaml.safe_load(yaml.safe_dump(SPEC))
    data["search"]["strategy"] = ["scratch", "finetune"]
    data["data"]["pretrained"] = files
    ship = tmp_path / "ship"
    ship.mkdir(exist_ok=True)
    path = ship / "space.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_shipped_model_is_imported_and_reused(tmp_path, monkeypatch, capsys):
    path = shipped_spec(tmp_path, ["models/ft.pt"])  # relative to the spec's directory
    spec = load_spec(path)
    assert spec.data.pretrained == [str(tmp_path / "ship" / "models" / "ft.pt")]
    # the author pre-trains and exports into the spec's folder
    (model,) = plan(spec)
    entry = pretrained_entry(model.config)
    (tmp_path / "ship" / "models").mkdir()
    assert main(["models", "export", entry.key, str(tmp_path / "ship" / "models" / "ft.pt")]) == 0

    # a user with an empty cache, elsewhere
    monkeypatch.setenv("TLSEARCH_CACHE", str(tmp_path / "fresh"))
    monkeypatch.chdir(tmp_path)
    assert main(["validate", str(path)]) == 0
    assert not PretrainStore().root.exists(), "validate checks the files, it imports nothing"
    capsys.readouterr()
    assert main(["pretrain", str(path)]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert f"data.pretrained.0: {entry.key[:12]} imported into {tmp_path / 'fresh' / 'pretrained'}" in text
    assert "already in the store" in text and "trained 1 epochs" not in text
    assert PretrainStore().path(entry.key).is_file()
    assert main(["pretrain", str(path)]) == 0
    assert f"data.pretrained.0: {entry.key[:12]} already in the store" in " ".join(capsys.readouterr().out.split())


def _corrupt(p):
    p.write_bytes(b"TLSCHK01" + b"\x05\x00\x00\x00{bad}")


@pytest.mark.parametrize("command", ["validate", "pretrain", "run"])
@pytest.mark.parametrize("make, reason", [(None, "does not exist"), (_corrupt, "not a valid tlsearch pre-trained"),
                                          (lambda p: p.write_text("hello"), "bad magic")])
def test_bad_shipped_file_exits_2_naming_field_and_path(tmp_path, capsys, command, make, reason):
    path = shipped_spec(tmp_path, ["ok.pt", "models/bad.pt"])
    good = PretrainStore(tmp_path / "src").get_or_train({"x": 1}, lambda: ({"w": __import__("torch").ones(2)}, {}))
    (tmp_path / "ship" / "ok.pt").write_bytes(good.path.read_bytes())
    bad = tmp_path / "ship" / "models" / "bad.pt"
    if make:
        bad.parent.mkdir()
        make(bad)
    assert main([command, str(path)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert f"{path}: data.pretrained.1: {bad}:" in err and reason in err, err
    assert "Traceback" not in err
