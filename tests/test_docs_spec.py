"""docs/spec.md and the spec's pydantic models stay in step: every field is documented in its section with the
default the code has (the page once gave embedding_features' old default and a PT store location the code does
not use; issue 17.11)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import BaseModel

from tlsearch.search import spec as S
from tlsearch.search.schedulers import SCHEDULERS

DOC = (Path(__file__).resolve().parents[1] / "docs" / "spec.md").read_text()
SECTIONS = {"Top level": S.SearchSpec, "data": S.DataSpec, "graph": S.GraphSpec, "search": S.SearchDims,
            "budget": S.Budget, "resources": S.Resources, "tracking": S.Tracking, "cluster": S.Cluster}


def _section(title: str) -> str:
    m = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## )", DOC, re.S | re.M)
    assert m, f"docs/spec.md has no section '## {title}'"
    return m.group(1)


def _render(v: object) -> set[str]:
    def one(x: object) -> str:
        return "null" if x is None else str(x).lower() if isinstance(x, bool) else str(x)
    if isinstance(v, list):
        return {"`[" + ", ".join(one(x) for x in v) + "]`"}
    return {f"`{one(v)}`", f'`"{one(v)}"`'}


def _rows(model: type[BaseModel], prefix: str = "") -> list[tuple[str, object]]:
    out = []
    for name, field in model.model_fields.items():
        default = field.get_default()
        if isinstance(default, BaseModel) and prefix == "" and model is S.SearchDims:
            out += _rows(type(default), f"{name}.")  # search.mpt_subset.*, search.architecture.*
        else:
            out.append((prefix + name, "required" if field.is_required() else default))
    return out


CASES = [(title, name, default) for title, model in SECTIONS.items() for name, default in _rows(model)]


@pytest.mark.parametrize("title,name,default", CASES, ids=[f"{t}.{n}" for t, n, _ in CASES])
def test_every_field_is_documented_with_its_default(title, name, default):
    _check_row(title, name, default)


# a data entry ({dataset, property, label}: target, pretrain_sources, mpt_properties, eval_sets), by the key
# the user writes (its label is the field `name`, written `label`; issue 17.10)
ENTRY = [(f.alias or n, "required" if f.is_required() else f.get_default())
         for n, f in S.DataEntry.model_fields.items()]


@pytest.mark.parametrize("name,default", ENTRY, ids=[n for n, _ in ENTRY])
def test_every_data_entry_field_is_documented_with_its_default(name, default):
    _check_row("data", name, default)


def _check_row(title: str, name: str, default: object) -> None:
    row = re.search(rf"^\| `{re.escape(name)}` \|.*$", _section(title), re.M)
    assert row, f"docs/spec.md '## {title}' has no table row for `{name}`"
    cells = re.split(r"(?<!\\)\|", row.group(0))  # a cell may hold an escaped \| (`pure` \| `dgl`)
    documented = cells[3].strip()
    if isinstance(default, BaseModel) or default == "required":
        assert documented and (default != "required" or documented == "required"), (name, documented)
        return
    assert documented in _render(default), \
        f"`{name}`: docs/spec.md says {documented}, the code's default is {default!r}"


@pytest.mark.parametrize("model", [p.spec for p in SCHEDULERS.values()], ids=list(SCHEDULERS))
def test_every_scheduler_field_is_documented(model):
    text = _section("scheduler")
    for name in model.model_fields:
        assert f"`{name}`" in text, f"docs/spec.md '## scheduler' does not mention `{name}` of {model.__name__}"
    kind = model.model_fields["type"].annotation.__args__[0]
    assert re.search(rf"^\| `{kind}`", text, re.M), f"docs/spec.md '## scheduler' has no row for type `{kind}`"


def test_the_page_names_the_pt_store_the_code_uses():
    assert "`<experiment>/pretrained`" not in DOC and "$TLSEARCH_CACHE/pretrained" in DOC
