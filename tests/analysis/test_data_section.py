"""Data quality where the user looks during a study (issue 14.5): `tlsearch run` prints one line per dataset
and keeps the record (data.json); the report and summary.json have a "Data" section with every skipped id and
its reason. Real data loading on a folder with the five kinds of bad entry; the study itself is the report's
fake (tests/analysis/test_labels.py), nothing trains."""

from __future__ import annotations


from tests.analysis.test_labels import fake_experiment
from tests.cli.test_data_cmd import five_broken_entries


def test_run_prints_a_line_per_dataset_and_the_report_lists_every_skipped_entry(tmp_path, capsys):
    from tlsearch.analysis.report import build_report
    from tlsearch.cli.search_cmd import _print_data
    from tlsearch.search.checks import check_datasets
    from tlsearch.search.spec import spec_from_dict

    d = five_broken_entries(tmp_path / "crystals")
    emt = "emt:alloys?n=12&seed=1"
    spec = {"name": "broken", "data": {"target": {"dataset": f"folder:{d}", "property": "target",
                                                  "label": "my crystals"},
                                       "pretrain_sources": [{"dataset": emt, "property": "formation_energy_per_atom"}],
                                       "mpt_properties": [{"dataset": emt, "property": p}
                                                          for p in ("formation_energy_per_atom", "volume_per_atom")]},
            "search": {"strategy": ["scratch", "finetune", "mpt"], "ft_size": [2]}, "budget": {"trials": 3}}
    data = check_datasets(spec_from_dict(spec, "space.yaml"))
    q = data[0]
    assert [x["role"] for x in data] == ["data.target", "data.pretrain_sources.0", "data.mpt_properties.0",
                                         "data.mpt_properties.1"] and all(x["used"] == 12 for x in data[1:])
    assert (q["role"], q["label"], q["entries"], q["used"], q["skipped"]) == ("data.target", "my crystals", 7, 3, 4)
    assert q["skipped_by_reason"] == {"unparsable structure": 1, "no finite target": 1,
                                      "duplicate id, values differ": 1, "missing file": 1}
    assert q["test"] + q["pool"] == 3 and q["target"]["count"] == 3
    exp = fake_experiment(tmp_path / "exp", spec)
    _print_data(data, exp)
    line = capsys.readouterr().out
    assert len(line.splitlines()) == 4 and "data (pretrain_sources.0): " in line
    assert line.startswith("data (target): my crystals: 3 used, 4 skipped: ") and "1 missing file" in line, line
    report = build_report(exp)
    summary = report.summary
    assert [e["id"] for e in summary["data"][0]["skipped_entries"]] == ["broken.vasp", "nan.vasp", "Si.vasp",
                                                                         "gone.vasp"]
    md = report.markdown.read_text().split("Data", 1)[1]
    for needle in ("my crystals", "skipped gone.vasp: missing file", "skipped Si.vasp: duplicate id, values differ "
                   "(kept the first entry (target=1), dropped this one (target=1.5))", "--graphs"):
        assert needle in md, (needle, md[:2000])


def test_an_experiment_without_a_data_record_says_so(tmp_path):
    from tests.analysis.test_labels import SPEC
    from tlsearch.analysis.report import build_report

    report = build_report(fake_experiment(tmp_path / "exp", SPEC))
    assert "No data record" in report.markdown.read_text()
    assert report.summary["data"] == []


def _folder_with_isolated_atoms(root):
    """Twelve good crystals and three bad entries, two properties (a, b) per structure: an unparsable POSCAR and
    two structures whose graph fails at the 8 A cutoff: a lone Cu in a 30 A cell, and (made with ase) a Cu
    dimer in a corner of a 20 A cubic cell with an Al atom in its middle, more than 8 A from every other atom."""
    import numpy as np
    from ase import Atoms as AseAtoms
    from ase.io import write
    from jarvis.core.atoms import Atoms

    from tests.conftest import structures

    root.mkdir()
    rows = ["file,a,b"]
    for i, s in enumerate(structures(12)):
        s.write_poscar(str(root / f"good{i}.vasp"))
        rows.append(f"good{i}.vasp,{1 + i / 10},{2 - i / 10}")
    Atoms(lattice_mat=np.eye(3) * 30.0, coords=[[0, 0, 0]], elements=["Cu"], cartesian=False).write_poscar(
        str(root / "lonely.vasp"))
    far = AseAtoms("Cu2Al", positions=[[0, 0, 0], [2.5, 0, 0], [10, 10, 10]], cell=[20, 20, 20], pbc=True)
    write(str(root / "far.vasp"), far, format="vasp")
    (root / "broken.vasp").write_text("this is not a POSCAR\n")
    rows += ["lonely.vasp,3.0,4.0", "far.vasp,3.5,4.5", "broken.vasp,4.0,5.0"]
    (root / "id_prop.csv").write_text("\n".join(rows) + "\n")
    return root


def test_run_lists_what_the_trials_skip_at_graph_level_once_per_dataset(tmp_path, capsys, monkeypatch):
    """issue 26.5: a structure whose atoms have no neighbour within the cutoff was counted as used by `run` and
    never listed by the report, though every trial skipped it. Now `run` builds the graphs as the trials do
    (they find them in the cache): the data line, data.json and the report list it with its reason. A dataset
    used in several roles (two targets that are each other's PT source) lists its skipped entries once."""
    import json

    import yaml

    from tlsearch.analysis.report import build_report
    from tlsearch.cli import search_cmd
    from tlsearch.graphs import GraphParams
    from tlsearch.prepared import prepare
    from tlsearch.search.experiment import Experiment

    d = _folder_with_isolated_atoms(tmp_path / "crystals")
    ref = f"folder:{d}"
    spec = {"name": "isolated", "data": {"targets": [{"dataset": ref, "property": "a", "label": "A"},
                                                     {"dataset": ref, "property": "b"}],
                                         "pretrain_sources": [{"dataset": ref, "property": "a"},
                                                              {"dataset": ref, "property": "b"}]},
            "search": {"strategy": ["scratch", "finetune"], "ft_size": [4]}, "budget": {"trials": 4}}
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(spec))
    # `tlsearch run` up to the study itself (Ray is not started here)
    monkeypatch.setattr("tlsearch.search.runner.run_study", lambda *a, **k: None)
    monkeypatch.setattr(search_cmd, "_print_status", lambda exp: None)
    monkeypatch.setattr(search_cmd, "_report", lambda exp: None)
    search_cmd.run_cmd(path, name=None, storage=str(tmp_path / "exp"), address=None, warm_start=None)
    out = capsys.readouterr().out
    lines = [x for x in out.splitlines() if x.startswith("data (")]
    assert len(lines) == 4, out
    assert lines[0].startswith("data (targets.0): A: 12 used, 3 skipped: 2 graph: isolated atom, 1 unparsable "
                               "structure"), lines
    assert all("12 used, 3 skipped: 2 graph: isolated atom, 1 unparsable structure" in x for x in lines), lines
    exp = Experiment.open(tmp_path / "exp" / "isolated")
    data = json.loads(exp.data_path.read_text())
    q = data[0]
    assert q["graphs_checked"] and q["used"] == 12
    reasons = {e["id"]: e["reason"] for e in q["skipped_entries"]}
    assert reasons == {"broken.vasp": "unparsable structure", "lonely.vasp": "graph: isolated atom",
                       "far.vasp": "graph: isolated atom"}, reasons
    assert {e["detail"] for e in q["skipped_entries"] if e["id"] == "far.vasp"} == {
        "1 atom(s) without a neighbour within 8.0 A"}
    # what a trial gets: the graphs `run` built (a cache hit), without the two, and the test size data.json says
    prep = prepare(ref, GraphParams(), prop="a", test_fraction=0.1)
    assert prep.graphs.hit
    assert {s.id: s.reason for s in prep.skipped if s.reason == "isolated atom"} == {
        "lonely.vasp": "isolated atom", "far.vasp": "isolated atom"}
    assert len(prep) == q["used"] and len(prep.split.test) == q["test"] and len(prep.split.pool) == q["pool"]
    # the report: each skipped entry of the dataset once, naming every use of it
    md = build_report(exp).markdown.read_text().split("## Data", 1)[1]
    for entry in ("skipped lonely.vasp: graph: isolated atom (1 atom(s) without a neighbour within 8.0 A)",
                  "skipped far.vasp: graph: isolated atom", "skipped broken.vasp: unparsable structure"):
        assert md.count(entry) == 1, (entry, md)
    assert f"{ref} (A: targets.0, pretrain_sources.0; b: targets.1, pretrain_sources.1): 3 skipped entries" in md, md
    assert md.count("| 12 | 1 unparsable structure, 2 graph: isolated atom |") == 4, md
    assert "| A | pretrain_sources.0 |" in md  # the label written once names the data in every role
    assert "--graphs` lists them before a study" not in md  # the graphs were checked
