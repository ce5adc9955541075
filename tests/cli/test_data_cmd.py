"""The `tlsearch data` commands, run as a user runs them (subprocess for exit codes and stderr)."""

import json
import subprocess
import sys

import pytest

from tlsearch.cli.main import main


def run_cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "tlsearch.cli.main", *args], capture_output=True, text=True,
                          env=env, timeout=300)


def test_list_shows_every_source(capsys):
    assert main(["data", "list"]) == 0
    text = capsys.readouterr().out
    for ref in ("matminer2018:dielectric", "jarvis:dft_3d", "folder:<path>", "emt:alloys"):
        assert ref in text


def test_prepare_and_describe_emt(capsys):
    assert main(["data", "prepare", "emt:alloys?n=15&seed=3"]) == 0
    out = capsys.readouterr().out
    assert "15 records" in out and "graphs built: 15 ok, 0 failed" in out
    assert main(["data", "prepare", "emt:alloys?n=15&seed=3"]) == 0
    assert "graphs cache hit" in capsys.readouterr().out
    assert main(["data", "describe", "emt:alloys?n=15&seed=3", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    fe = info["properties"]["formation_energy_per_atom"]
    assert info["records"] == 15 and fe["count"] == 15 and fe["pool"] + fe["test"] == 15 and fe["test"] == 2


@pytest.mark.parametrize(
    "args, needle",
    [
        (["data", "describe", "nocolon"], "must look like 'source:dataset"),
        (["data", "describe", "nosuch:thing"], "unknown source 'nosuch'; valid sources: emt, folder, jarvis"),
        (["data", "describe", "matminer2018:dielectric"], "valid datasets: dielectric_constant"),
        (["data", "describe", "emt:alloys?n=zero"], "parameter 'n'"),
        (["data", "describe", "emt:alloys?colour=red"], "unknown parameter"),
        (["data", "prepare", "folder:/no/such/dir"], "/no/such/dir"),
        (["data", "prepare", "emt:alloys?n=3", "--cutoff", "-1"], "cutoff must be > 0"),
    ],
)
def test_user_mistakes_exit_2_without_traceback(args, needle):
    proc = run_cli(*args)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    assert needle in " ".join(proc.stderr.split()), proc.stderr


def test_version():
    proc = run_cli("--version")
    assert proc.returncode == 0 and proc.stdout.startswith("tlsearch ")


def test_train_command_writes_result(tmp_path):
    cfg = tmp_path / "t.yaml"
    cfg.write_text(
        "mode: scratch\n"
        "target: {dataset: 'emt:alloys?n=30&seed=1', property: energy_per_atom}\n"
        "train: {sample_size: 20, optim: {epochs: 2, batch_size: 8}}\n"
        "model: {alignn_layers: 1, gcn_layers: 1, hidden_features: 16, embedding_features: 8}\n")
    proc = run_cli("train", str(cfg), "-o", str(tmp_path / "out"))
    assert proc.returncode == 0, proc.stderr
    assert "held-out test" in proc.stdout
    result = json.loads((tmp_path / "out" / "result.json").read_text())
    assert result["mode"] == "scratch" and len(result["history"]) == 2 and result["test"]["n"] == 3
    assert (tmp_path / "out" / "predictions.parquet").exists()


def test_train_command_bad_yaml_exit_2(tmp_path):
    cfg = tmp_path / "t.yaml"
    cfg.write_text("mode: [unclosed\n")
    proc = run_cli("train", str(cfg))
    assert proc.returncode == 2 and "not valid YAML" in proc.stderr and "Traceback" not in proc.stderr
    proc = run_cli("train", str(tmp_path / "missing.yaml"))
    assert proc.returncode == 2 and "missing.yaml" in proc.stderr


def five_broken_entries(root):
    """A folder with two good structures and the five kinds of bad entry a user's data has: an unparsable
    POSCAR, a NaN target, an isolated atom (parses, fails at graph building), a duplicated id with a different
    value and a missing file."""
    import numpy as np
    from jarvis.core.atoms import Atoms

    from tests.data.test_folder import cu, si

    root.mkdir()
    si().write_poscar(str(root / "Si.vasp"))
    cu().write_poscar(str(root / "Cu.vasp"))
    Atoms(lattice_mat=np.eye(3) * 30.0, coords=[[0, 0, 0]], elements=["Cu"], cartesian=False).write_poscar(
        str(root / "lonely.vasp"))
    (root / "broken.vasp").write_text("this is not a POSCAR\n")
    cu().write_poscar(str(root / "nan.vasp"))
    (root / "id_prop.csv").write_text("Si.vasp,1.0\nCu.vasp,2.0\nlonely.vasp,3.0\nbroken.vasp,4.0\nnan.vasp,nan\n"
                                      "Si.vasp,1.5\ngone.vasp,5.0\n")
    return root


def test_describe_lists_every_skipped_entry_with_its_reason(tmp_path):
    """issue 14.5: ids and distinct reasons, in the table and --json; the isolated atom once graphs exist."""
    d = five_broken_entries(tmp_path / "crystals")
    env = {**__import__("os").environ, "TLSEARCH_CACHE": str(tmp_path / "cache"), "COLUMNS": "200"}
    proc = run_cli("data", "describe", f"folder:{d}", "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    reasons = {e["id"]: e["reason"] for e in info["skipped_entries"]}
    assert reasons == {"broken.vasp": "unparsable structure", "nan.vasp": "no finite target",
                       "Si.vasp": "duplicate id, values differ", "gone.vasp": "missing file"}, reasons
    assert info["records"] == 3 and not info["graphs_checked"]
    proc = run_cli("data", "describe", f"folder:{d}", "--json", "--graphs", env=env)
    info = json.loads(proc.stdout)
    reasons = {e["id"]: e["reason"] for e in info["skipped_entries"]}
    assert reasons["lonely.vasp"] == "graph: isolated atom" and len(reasons) == 5 and info["records"] == 2
    assert info["properties"]["target"]["used"] == 2
    table = run_cli("data", "describe", f"folder:{d}", "--graphs", env=env).stdout
    for needle in ("skipped entries (5)", "gone.vasp", "missing file", "values differ", "graph: isolated atom",
                   "kept the first entry (target=1), dropped this one (target=1.5)"):
        assert needle in table, (needle, table)
