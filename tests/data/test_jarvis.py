"""The ``jarvis`` source, offline: small JARVIS-format files written by the tests, no network."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from jarvis.core.atoms import Atoms

from tlsearch.data._registry import load_dataset
from tlsearch.errors import BadReferenceError, DataFileError, SourceUnavailableError, UnknownChoiceError


def si() -> Atoms:
    a = 2.715
    return Atoms(lattice_mat=[[0, a, a], [a, 0, a], [a, a, 0]], coords=[[0, 0, 0], [0.25, 0.25, 0.25]],
                 elements=["Si", "Si"], cartesian=False)


def nacl() -> Atoms:
    a = 2.82
    return Atoms(lattice_mat=[[0, a, a], [a, 0, a], [a, a, 0]], coords=[[0, 0, 0], [0.5, 0.5, 0.5]],
                 elements=["Na", "Cl"], cartesian=False)


def cu() -> Atoms:
    a = 1.805
    return Atoms(lattice_mat=[[0, a, a], [a, 0, a], [a, a, 0]], coords=[[0, 0, 0]], elements=["Cu"], cartesian=False)


def entries() -> list[dict]:
    return [
        {"jid": "JVASP-1002", "atoms": si().to_dict(), "formula": "Si", "formation_energy_peratom": 0.0,
         "optb88vdw_bandgap": 0.731, "mbj_bandgap": 1.277, "exfoliation_energy": "na", "spg_number": 227,
         "elastic_tensor": [[1, 2], [3, 4]], "custom_numeric": "2.5"},
        {"jid": "JVASP-23862", "atoms": nacl().to_dict(), "formula": "NaCl", "formation_energy_peratom": -1.9,
         "optb88vdw_bandgap": 5.0, "mbj_bandgap": "na", "exfoliation_energy": "na", "spg_number": 225},
        {"jid": "JVASP-816", "atoms": cu().to_dict(), "formula": "Cu", "formation_energy_peratom": 0.0,
         "optb88vdw_bandgap": 0.0, "mbj_bandgap": 0.0, "exfoliation_energy": "na"},
        {"jid": "JVASP-BAD", "atoms": {"lattice_mat": [[1, 0, 0]], "elements": ["Si"]},  # no coords
         "formation_energy_peratom": 0.1},
        {"jid": "JVASP-1002", "atoms": si().to_dict(), "formation_energy_peratom": 9.9},  # duplicate id
    ]


def write_json(path: Path, data: list[dict]) -> Path:
    path.write_text(json.dumps(data))
    return path


def write_zip(path: Path, member: str, data: list[dict]) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(member, json.dumps(data))
    return path


@pytest.fixture(autouse=True)
def no_download(monkeypatch: pytest.MonkeyPatch) -> list:
    """Never touch the network: jarvis.db.figshare.data raises like it does without internet."""
    from jarvis.db import figshare

    calls: list = []

    def offline(dataset: str = "dft_2d", store_dir: str | None = None) -> list:
        calls.append((dataset, store_dir))
        raise OSError("Failed to establish a new connection: [Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(figshare, "data", offline)
    return calls


def test_plain_json(tmp_path: Path) -> None:
    f = write_json(tmp_path / "dft_3d.json", entries())
    ds = load_dataset(f"jarvis:dft_3d?file={f}", cache=tmp_path / "cache")
    assert ds.ids == ["JVASP-1002", "JVASP-23862", "JVASP-816"]
    assert ds.records[0].targets["optb88vdw_bandgap"] == pytest.approx(0.731)
    assert ds.records[0].targets["custom_numeric"] == 2.5  # undeclared numeric key passes through
    assert "custom_numeric" in ds.properties and "formation_energy_peratom" in ds.properties
    assert "formula" not in ds.properties and "elastic_tensor" not in ds.properties
    assert "spg_number" not in ds.properties and "jid" not in ds.properties
    # "na" is a missing value, not a number
    assert "exfoliation_energy" not in ds.records[0].targets
    assert "mbj_bandgap" not in ds.records[1].targets
    assert np.isnan(ds.values("mbj_bandgap")[1])
    assert ds.records[1].atoms.elements == ["Na", "Cl"]
    reasons = ds.skipped_by_reason()
    assert reasons == {"unparsable structure": 1, "duplicate id, values differ": 1}  # 9.9 vs 0.0
    bad = [s for s in ds.skipped if s.reason == "unparsable structure"][0]
    assert bad.id == "JVASP-BAD" and "Atoms.from_dict" in bad.detail
    prov = ds.provenance
    assert prov["source_file"] == str(f.resolve())
    assert len(prov["source_sha256"]) == 64 and "npj Comput. Mater. 6, 173 (2020)" in prov["citation"]
    assert prov["jarvis_tools_version"]


def test_figshare_zip_and_cache(tmp_path: Path) -> None:
    from jarvis.db.figshare import get_db_info

    member = get_db_info()["dft_2d"][1]
    f = write_zip(tmp_path / f"{member}.zip", member, entries()[:3])
    ref = f"jarvis:dft_2d?file={f}"
    ds = load_dataset(ref, cache=tmp_path / "cache")
    assert len(ds) == 3 and ds.skipped == []
    again = load_dataset(ref, cache=tmp_path / "cache")  # from the parquet cache
    assert again.ids == ds.ids and again.properties == ds.properties
    assert again.records[0].targets == ds.records[0].targets


def test_zip_with_other_member_name(tmp_path: Path) -> None:
    f = write_zip(tmp_path / "mine.zip", "whatever.json", entries()[:2])
    ds = load_dataset(f"jarvis:dft_3d?file={f}", cache=tmp_path / "cache")
    assert ds.ids == ["JVASP-1002", "JVASP-23862"]


def test_id_key_param(tmp_path: Path) -> None:
    data = [{"id": f"mp-{i}", "atoms": a.to_dict(), "e_form": -float(i)} for i, a in enumerate([si(), nacl(), cu()])]
    f = write_json(tmp_path / "megnet.json", data)
    ds = load_dataset(f"jarvis:megnet?file={f}", cache=tmp_path / "cache")  # megnet's default id key is "id"
    assert ds.ids == ["mp-0", "mp-1", "mp-2"]
    with pytest.raises(DataFileError, match="id_key"):
        load_dataset(f"jarvis:dft_3d?file={f}", cache=tmp_path / "cache")
    ds = load_dataset(f"jarvis:dft_3d?file={f}&id_key=id", cache=tmp_path / "cache")
    assert ds.ids == ["mp-0", "mp-1", "mp-2"]


def test_missing_and_malformed_file(tmp_path: Path) -> None:
    with pytest.raises(DataFileError, match="nope.json"):
        load_dataset(f"jarvis:dft_3d?file={tmp_path / 'nope.json'}", cache=tmp_path / "cache")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(DataFileError, match="bad.json"):
        load_dataset(f"jarvis:dft_3d?file={bad}", cache=tmp_path / "cache")
    obj = write_json(tmp_path / "obj.json", {"jid": "x"})  # type: ignore[arg-type]
    with pytest.raises(DataFileError, match="list"):
        load_dataset(f"jarvis:dft_3d?file={obj}", cache=tmp_path / "cache")
    badzip = tmp_path / "two.zip"
    with zipfile.ZipFile(badzip, "w") as zf:
        zf.writestr("a.json", "[]")
        zf.writestr("b.json", "[]")
    with pytest.raises(DataFileError, match="two.zip"):
        load_dataset(f"jarvis:dft_3d?file={badzip}", cache=tmp_path / "cache")


def test_no_network_gives_offline_fix(tmp_path: Path, no_download: list) -> None:
    cache = tmp_path / "cache"
    with pytest.raises(SourceUnavailableError) as err:
        load_dataset("jarvis:dft_3d", cache=cache)
    msg = str(err.value)
    assert "download" in msg and "?file=" in msg and ".json" in msg and "cache" in msg
    assert no_download and no_download[0][0] == "dft_3d"
    assert Path(no_download[0][1]) == cache / "sources" / "jarvis"


def test_partial_download_is_removed(tmp_path: Path) -> None:
    from jarvis.db.figshare import get_db_info

    store = tmp_path / "cache" / "sources" / "jarvis"
    store.mkdir(parents=True)
    partial = store / (get_db_info()["dft_2d"][1] + ".zip")
    partial.write_bytes(b"<html>truncated")
    with pytest.raises(SourceUnavailableError):
        load_dataset("jarvis:dft_2d", cache=tmp_path / "cache")
    assert not partial.exists()


def test_download_path_uses_figshare_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from jarvis.db import figshare

    monkeypatch.setattr(figshare, "data", lambda dataset, store_dir=None: entries()[:3])
    ds = load_dataset("jarvis:dft_2d", cache=tmp_path / "cache")
    assert len(ds) == 3
    assert ds.provenance["figshare_url"].startswith("https://")


def test_bad_refs(tmp_path: Path) -> None:
    with pytest.raises(UnknownChoiceError, match="dft_3d"):
        load_dataset("jarvis:dft_4d", cache=tmp_path)
    with pytest.raises(BadReferenceError, match="colour"):
        load_dataset("jarvis:dft_3d?colour=red", cache=tmp_path)


def test_editing_file_invalidates_cache(tmp_path: Path) -> None:
    f = write_json(tmp_path / "d.json", entries()[:3])
    ref = f"jarvis:dft_3d?file={f}"
    assert load_dataset(ref, cache=tmp_path / "c").records[0].targets["optb88vdw_bandgap"] == pytest.approx(0.731)
    data = entries()[:3]
    data[0]["optb88vdw_bandgap"] = 1.111
    write_json(f, data)
    assert load_dataset(ref, cache=tmp_path / "c").records[0].targets["optb88vdw_bandgap"] == pytest.approx(1.111)
