"""The quickstart's shipped PT models are the ones its trials ask the store for: same store keys. When the key
material moves (a training default, the graph, a version pin), this fails and names the files to re-make with
`tlsearch pretrain search_spaces/quickstart.yaml` (search_spaces/pretrained/README.md); otherwise `make run`
would silently pre-train for half an hour."""

from __future__ import annotations

from pathlib import Path

import pytest

from tlsearch.search.pt_plan import plan
from tlsearch.search.spec import load_spec
from tlsearch.training._store_io import verify
from tlsearch.training.store import PretrainStore
from tlsearch.training.trial import _held_out_keys, pt_material

QUICKSTART = Path(__file__).resolve().parents[2] / "search_spaces" / "quickstart.yaml"
REMAKE = "re-make them: see search_spaces/pretrained/README.md"


def _shipped() -> dict[str, dict]:
    spec = load_spec(QUICKSTART)
    out = {}
    for path in spec.data.pretrained:
        header, _ = verify(path)
        out[header["key"]] = header["meta"]
    return out


def test_shipped_models_match_the_trials_key_material_and_versions():
    """Without the data: everything but the held-out exclusion (taken from the file) must give the file's key."""
    shipped = _shipped()
    models = plan(load_spec(QUICKSTART))
    assert len(models) == len(shipped) == 2
    for m in models:
        stored = next(meta for meta in shipped.values() if [list(s) for s in meta["material"]["sources"]] ==
                      [list(s) for s in pt_material(m.config, set())["sources"]])
        key = PretrainStore.key(pt_material(m.config, set(stored["material"]["exclude"])))
        assert key in shipped, f"{m.strategy} {m.label}: the trials now compute key {key}; {REMAKE}"


@pytest.mark.network
def test_shipped_models_exclude_the_targets_held_out_test_set():
    """With the data (the matminer sdist is fetched): the trials' own keys, held-out exclusion included."""
    shipped = _shipped()
    for m in plan(load_spec(QUICKSTART)):
        key = PretrainStore.key(pt_material(m.config, _held_out_keys(m.config)))
        assert key in shipped, f"{m.strategy} {m.label}: the trials compute key {key}; {REMAKE}"
