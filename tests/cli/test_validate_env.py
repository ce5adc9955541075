"""Mistakes every trial would hit are caught by `tlsearch validate` (and `run` before Ray starts): exit 2, one
line naming the field and the fix, no traceback."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

from tlsearch.cli.main import main

SMOKE = Path(__file__).resolve().parents[2] / "search_spaces" / "smoke.yaml"


def _spec(tmp_path: Path, change) -> str:
    data = yaml.safe_load(SMOKE.read_text())
    change(data)
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def _validate(path: str, capsys) -> tuple[int, str]:
    rc = main(["validate", path])
    cap = capsys.readouterr()
    return rc, " ".join((cap.out + cap.err).split())


def test_freeze_depth_deeper_than_the_model(tmp_path, capsys):
    def deep(d):
        d["search"].pop("freeze")
        d["search"]["freeze_depth"] = {"low": 1, "high": 4}  # 1+1 layers: embeddings + 2 blocks = 3

    rc, out = _validate(_spec(tmp_path, deep), capsys)
    assert rc == 2 and "search.freeze_depth: 4 exceeds the 3 blocks of the smallest searched model" in out, out
    assert "fix: freeze_depth at most 3" in out and "Traceback" not in out

    def fits(d):
        deep(d)
        d["search"]["freeze_depth"] = {"low": 1, "high": 3}

    assert _validate(_spec(tmp_path, fits), capsys)[0] == 0


def test_dgl_backend_without_the_dgl_extra(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "dgl", None)  # as on an install without the extra: `import dgl` fails
    for field, change in (("search.architecture.backend", lambda d: d["search"]["architecture"].update(backend="dgl")),
                          ("graph.builder", lambda d: d.update(graph={"builder": "dgl"}))):
        rc, out = _validate(_spec(tmp_path, change), capsys)
        assert rc == 2 and f"{field}: 'dgl' needs the dgl extra" in out, out
        assert "pip install -c constraints.txt 'tlsearch[dgl]'" in out


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has a GPU")
def test_gpus_per_trial_on_a_local_ray_without_gpu(tmp_path, capsys):
    rc, out = _validate(_spec(tmp_path, lambda d: d["resources"].update(gpus_per_trial=1)), capsys)
    assert rc == 2 and "resources.gpus_per_trial: 1 but this machine has no GPU" in out, out
    # on a cluster the GPUs are the workers': not checked on the driver
    cluster = _validate(_spec(tmp_path, lambda d: (d["resources"].update(gpus_per_trial=1),
                                                   d.update(cluster={"address": "auto"}))), capsys)
    assert cluster[0] == 0, cluster[1]
