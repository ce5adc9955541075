"""The matminer2018 source on a small sdist written by the test in the real files' format."""

import csv
import io
import tarfile

import numpy as np
import pytest
from jarvis.io.vasp.inputs import Poscar

from tests.conftest import diamond, fcc, rocksalt
from tlsearch.data import load_dataset
from tlsearch.data._matminer import parse_rows
from tlsearch.errors import DataFileError, SourceUnavailableError, UnknownChoiceError

ROOT = "matminer-0.4.1/matminer/datasets/"


def _pmg_dict(atoms):
    return str({"lattice": {"matrix": np.asarray(atoms.lattice_mat).tolist()}, "@class": "Structure",
                "sites": [{"species": [{"element": e, "occu": 1}], "abc": list(map(float, f)), "label": e}
                          for e, f in zip(atoms.elements, np.asarray(atoms.frac_coords))]})


def _csv(header, rows, leading_index):
    buf = io.StringIO()
    buf.write("# ref: a test reference\n")
    w = csv.writer(buf)
    w.writerow(header)
    for i, row in enumerate(rows):
        w.writerow(([i] if leading_index else []) + row)
    return buf.getvalue()


@pytest.fixture
def sdist(tmp_path):
    dielectric = _csv(
        ["idx", "band_gap", "n", "poly_electronic", "poly_total", "poscar", "material_id"],
        [
            [0, 1.9, 1.86, 3.44, 6.23, Poscar(rocksalt()).to_string(), "mp-1"],
            [1, 0.6, 3.5, 12.0, 12.5, Poscar(diamond()).to_string(), "mp-2"],
            [2, "", "nan", "", "", Poscar(fcc()).to_string(), "mp-3"],         # no finite target
            [3, 1.0, 2.0, 4.0, 5.0, "not a poscar", "mp-4"],                    # unparsable
            [4, 1.1, 2.1, 4.1, 5.1, Poscar(rocksalt(5.5)).to_string(), "mp-1"],  # duplicate id
            [5, 2.0, 2.2, 4.8, 9.9, Poscar(fcc("Ag", 4.09)).to_string(), "mp-5"],
        ],
        leading_index=True,
    )
    flla = _csv(
        ["material_id", "formula", "e_above_hull", "nsites", "structure", "formation_energy_per_atom"],
        [["mp-10", "{}", 0.1, 2, _pmg_dict(rocksalt()), -2.1], ["mp-11", "{}", 0.0, 1, _pmg_dict(fcc()), 0.0]],
        leading_index=False,
    )
    path = tmp_path / "matminer-0.4.1.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for name, text in [("dielectric_constant.csv", dielectric), ("flla_2015.csv", flla)]:
            data = text.encode()
            info = tarfile.TarInfo(ROOT + name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_dielectric_rows_validated(sdist):
    ds = load_dataset(f"matminer2018:dielectric_constant?sdist={sdist}")
    assert ds.ids == ["mp-1", "mp-2", "mp-5"]
    assert ds.properties == ("n", "poly_electronic", "poly_total", "band_gap")
    assert ds.records[0].targets == {"band_gap": 1.9, "n": 1.86, "poly_electronic": 3.44, "poly_total": 6.23}
    assert ds.records[0].atoms.elements == ["Na", "Cl"]
    assert ds.skipped_by_reason() == {"no finite target": 1, "unparsable structure": 1, "duplicate id, values differ": 1}
    assert ds.provenance["sdist_sha256"] and ds.provenance["package"] == "matminer==0.4.1"


def test_pymatgen_dict_structures(sdist):
    ds = load_dataset(f"matminer2018:flla_2015?sdist={sdist}")
    assert ds.ids == ["mp-10", "mp-11"]
    np.testing.assert_allclose(ds.records[0].atoms.lattice_mat, rocksalt().lattice_mat)
    assert ds.values("formation_energy_per_atom").tolist() == [-2.1, 0.0]


def test_cached_parse_is_reused_and_equal(sdist, tmp_path):
    ref = f"matminer2018:flla_2015?sdist={sdist}"
    a = load_dataset(ref)
    sdist.unlink()  # the second load must not need the source any more
    b = load_dataset(ref)
    assert a.ids == b.ids and [r.targets for r in a.records] == [r.targets for r in b.records]


def test_leading_index_column_is_dropped():
    text = "# ref\nidx,a,b\n0,0,1,2\n1,1,3,4\n"
    assert list(parse_rows(text)) == [{"idx": "0", "a": "1", "b": "2"}, {"idx": "1", "a": "3", "b": "4"}]


def test_unknown_dataset_lists_choices(sdist):
    with pytest.raises(UnknownChoiceError, match="dielectric_constant, elastic_tensor, flla_2015"):
        load_dataset("matminer2018:dielectric")


def test_missing_or_damaged_sdist(tmp_path):
    with pytest.raises(DataFileError, match="no such file"):
        load_dataset(f"matminer2018:flla_2015?sdist={tmp_path / 'nope.tar.gz'}")
    bad = tmp_path / "matminer-0.4.1.tar.gz"
    bad.write_bytes(b"not a tarball")
    with pytest.raises(DataFileError, match="cannot read"):
        load_dataset(f"matminer2018:flla_2015?sdist={bad}")


def test_download_failure_names_the_offline_fix(monkeypatch, tmp_path):
    import tlsearch.data._matminer as mm

    monkeypatch.setattr(mm, "PACKAGE", "tlsearch-no-such-package-xyz==0.0.1")
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")  # nothing listens: fails at once
    monkeypatch.setenv("PIP_RETRIES", "0")
    monkeypatch.delenv("TLSEARCH_MATMINER_SDIST", raising=False)
    with pytest.raises(SourceUnavailableError, match="sdist="):
        load_dataset("matminer2018:piezoelectric_tensor")


@pytest.mark.slow
@pytest.mark.network
def test_real_sdist_from_package_index():
    """The real files: 1,056 / 941 / 1,181 / 3,938 structures (needs the package index)."""
    sizes = {"dielectric_constant": 1056, "piezoelectric_tensor": 941, "elastic_tensor": 1181, "flla_2015": 3938}
    for name, n in sizes.items():
        assert len(load_dataset(f"matminer2018:{name}")) == n
