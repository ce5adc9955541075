"""`tlsearch models list | show | export | import` on real store entries (tiny real models), and every bad
input exiting 2 with the path and the reason."""

import io
import json
import os
import shutil

import pytest
import torch
from rich.console import Console

import tlsearch.cli.models_cmd as models_cmd
from tlsearch._io import write_checksummed
from tlsearch.cli.main import main
from tlsearch.training.config import ModelSpec
from tlsearch.training.model import PropertyModel
from tlsearch.training.store import PretrainStore

TINY = ModelSpec(alignn_layers=1, gcn_layers=1, hidden_features=16, embedding_features=8)


def make_entry(store, seed=0, head="linear"):
    material = {"sources": [["emt:alloys?n=40&seed=1", "formation_energy_per_atom"]], "seed": seed,
                "head": head, "model": TINY.model_dump()}

    def train():
        torch.manual_seed(seed)
        model = PropertyModel(TINY, head, 2 if head == "multi" else 1)
        return model.state_dict(), {"epochs": 3, "best_val": 0.125 + seed, "head": head, "n_train": 30,
                                    "history": [{"epoch": 1, "val_mae": 0.2}, {"epoch": 2, "val_mae": 0.125}]}

    return store.get_or_train(material, train)


@pytest.fixture(autouse=True)
def wide(monkeypatch):
    monkeypatch.setattr(models_cmd, "out", Console(width=250))


def err_of(capsys):
    return " ".join(capsys.readouterr().err.split())


def test_list_show_export_import_round_trip(tmp_path, capsys):
    store = PretrainStore()
    assert main(["models", "list"]) == 0
    assert "has no pre-trained models" in capsys.readouterr().out
    a, b = make_entry(store), make_entry(store, seed=1, head="multi")
    assert main(["models", "list"]) == 0
    text = capsys.readouterr().out
    for needle in (a.key[:12], b.key[:12], "single", "multi", "1+1 layers h16 e8 pure", "0.125", "1.125",
                   "emt:alloys?n=40&seed=1/formation_energy_per_atom", "2 pre-trained model(s)"):
        assert needle in text, needle

    assert main(["models", "show", a.key[:6]]) == 0
    text = capsys.readouterr().out
    assert f"key: {a.key}" in text and "material.model.hidden_features: 16" in text
    assert "history[1]: epoch=2, val_mae=0.125" in text and "best_val: 0.125" in text
    assert "note" not in text  # this installation computes the same key
    assert main(["models", "show", a.key, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["key"] == a.key and shown["meta"]["material"]["seed"] == 0 and "state" not in shown

    exported = tmp_path / "a.tlpt"
    assert main(["models", "export", a.key[:8], str(exported)]) == 0
    assert exported.read_bytes() == a.path.read_bytes()
    assert main(["models", "export", a.key[:8], str(tmp_path)]) == 0  # a directory: <dir>/<key>.pt
    assert (tmp_path / f"{a.key}.pt").is_file()
    capsys.readouterr()

    other = tmp_path / "other"
    assert main(["models", "import", str(exported), "--store", str(other)]) == 0
    assert f"{a.key} imported into {other}" in capsys.readouterr().out
    got = PretrainStore(other).load(a.key)
    assert got is not None and all(torch.equal(got.state[k], a.state[k]) for k in a.state)
    assert main(["models", "import", str(exported), "--store", str(other)]) == 0  # idempotent
    assert f"{a.key} already in the store" in capsys.readouterr().out
    # a trial asking the other store for that material now hits it
    hit = PretrainStore(other).get_or_train(a.meta["material"], lambda: pytest.fail("must not train"))
    assert hit.hit and hit.key == a.key


def test_ambiguous_and_unknown_keys_exit_2(tmp_path, capsys):
    store = PretrainStore()
    keys = [make_entry(store, seed=s).key for s in range(17)]  # 17 keys: two share a first hex digit
    first = next(k[0] for k in keys if sum(x[0] == k[0] for x in keys) > 1)
    assert main(["models", "show", first]) == 2
    err = err_of(capsys)
    assert f"key '{first}': ambiguous" in err and "give more digits" in err
    for bad, needle in (("0" * 32 if "0" * 32 not in keys else "f" * 32, "no entry in the store"),
                        ("xyz", "a key is hexadecimal")):
        assert main(["models", "show", bad]) == 2
        assert needle in err_of(capsys)
    assert main(["models", "export", "zz", str(tmp_path / "x.pt")]) == 2
    assert main(["models", "export", keys[0], str(tmp_path / "no" / "dir" / "x.pt")]) == 2
    assert "does not exist" in err_of(capsys)


def _flip(data: bytes) -> bytes:
    b = bytearray(data)
    b[-40] ^= 1
    return bytes(b)


def _foreign_format(path, _data):
    buf = io.BytesIO()
    torch.save({"w": torch.zeros(2)}, buf)
    write_checksummed(path, buf.getvalue(), {"format": "tlsearch-graphs-v1", "key": "0" * 32, "meta": {}})


def _evil(path, _data):
    class RunsCode:
        def __reduce__(self):
            return (os.system, (f"touch {path.parent / 'PWNED'}",))

    buf = io.BytesIO()
    torch.save({"w": torch.zeros(2), "x": RunsCode()}, buf)
    write_checksummed(path, buf.getvalue(), {"format": "tlsearch-pretrained-v1", "key": "0" * 32, "meta": {}})


def _bad_key(path, _data):
    buf = io.BytesIO()
    torch.save({"w": torch.zeros(2)}, buf)
    write_checksummed(path, buf.getvalue(), {"format": "tlsearch-pretrained-v1", "key": "../../etc/x", "meta": {}})


@pytest.mark.parametrize("damage, reason", [
    (lambda p, d: p.write_bytes(d[:-100]), "truncated"),
    (lambda p, d: p.write_bytes(_flip(d)), "checksum mismatch"),
    (lambda p, d: p.write_bytes(b""), "bad magic or truncated"),
    (lambda p, d: p.write_text("name: not a model\n"), "not a tlsearch checksummed file"),
    (lambda p, d: torch.save({"format": "tlsearch-model-v1", "state": {}}, p), "not a tlsearch checksummed file"),
    (_foreign_format, "format 'tlsearch-graphs-v1' is not a tlsearch pre-trained model entry"),
    (_evil, "the weights do not load as plain tensors"),
    (_bad_key, "header has no valid key"),
    (lambda p, d: None, "does not exist"),
])
def test_bad_import_files_exit_2_with_path_and_reason(tmp_path, capsys, damage, reason):
    entry = make_entry(PretrainStore(tmp_path / "src"))
    path = tmp_path / "in.pt"
    damage(path, entry.path.read_bytes())
    assert main(["models", "import", str(path), "--store", str(tmp_path / "dst")]) == 2
    err = err_of(capsys)
    assert f"{path}:" in err and reason in err, err
    assert not (tmp_path / "PWNED").exists()
    assert not list((tmp_path / "dst").glob("*.pt")) if (tmp_path / "dst").exists() else True


def test_import_of_an_entry_made_by_other_versions_says_trials_will_not_reuse_it(tmp_path, capsys):
    entry = make_entry(PretrainStore(tmp_path / "src"))
    moved = tmp_path / "old.pt"
    shutil.copyfile(entry.path, moved)
    data = moved.read_bytes()
    foreign_key = "a" * 32
    from tlsearch._io import read_checksummed

    header, payload = read_checksummed(moved)
    write_checksummed(moved, bytes(payload), {"format": header["format"], "key": foreign_key,
                                              "meta": {**header["meta"], "versions": {"torch": "1.0"}}})
    assert data != moved.read_bytes()
    assert main(["models", "import", str(moved)]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert f"{foreign_key} imported" in out and "trials here will not reuse it" in out


def test_list_names_files_that_are_not_entries(capsys):
    store = PretrainStore()
    good = make_entry(store)
    (store.root / ("b" * 32 + ".pt")).write_bytes(good.path.read_bytes()[:50])
    assert main(["models", "list"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "1 pre-trained model(s)" in out and good.key[:12] in out
    assert f"not an entry {store.root / ('b' * 32 + '.pt')}" in out


def test_show_summarises_the_held_out_exclusion_instead_of_printing_every_key(tmp_path, capsys):
    """A real PT entry excludes hundreds of structure keys: show says how many, --json lists them."""
    from tlsearch.cli.main import main
    from tlsearch.training.store import PretrainStore

    import torch

    store = PretrainStore(tmp_path)
    material = {"sources": [["emt:x", "p"]], "exclude": [f"{i:032x}" for i in range(300)]}
    store.get_or_train(material, lambda: ({"w": torch.zeros(1)}, {"epochs": 1, "best_val": 0.5, "history": []}))
    assert main(["models", "show", store.key(material)[:8], "--store", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert "material.exclude: 300 structures" in text and f"{299:032x}" not in text, text
    assert main(["models", "show", store.key(material)[:8], "--store", str(tmp_path), "--json"]) == 0
    assert f"{299:032x}" in capsys.readouterr().out
