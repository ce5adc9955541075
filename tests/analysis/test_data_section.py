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
