"""What every pydantic model of tlsearch shares: the strict base (unknown keys are errors, values are frozen)
and the one formatter of validation errors (one line per field: ``where: field.path: message (got value)``),
used by the spec (space.yaml) and the training config alike."""

from __future__ import annotations

from typing import Iterable

from pydantic import BaseModel, ConfigDict, ValidationError


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


_BRANCHES = {"float", "int", "bool", "str", "FloatRange", "IntRange", "TargetSpec", "CheckpointSpec"}


def _is_branch(part: object, branches: set[str]) -> bool:
    """A location part that names a union alternative (``int``, ``list[float]``, a model name), not a field."""
    p = str(part)
    return p in branches or "[" in p or p.startswith(("function-", "tagged-union"))


def _loc(loc: tuple, branches: set[str], tags: dict[str, set[str]]) -> str:
    parts = [str(p) if str(p).isprintable() and str(p) else repr(p) for p in loc if not _is_branch(p, branches)]
    if len(parts) > 1 and parts[1] in tags.get(parts[0], ()):
        del parts[1]
    return ".".join(parts) or "(top level)"


def format_errors(exc: ValidationError, where: str, branches: Iterable[str] = (),
                  tags: dict[str, set[str]] | None = None) -> str:
    """One line per field; union alternatives collapsed (a range's own check wins over 'not a list').
    ``branches``: more model names that appear in locations as union alternatives; ``tags``: field -> the tags
    of its discriminated union (pydantic puts the tag in the location)."""
    names, tags = _BRANCHES | set(branches), tags or {}
    groups: dict[str, list[dict]] = {}
    for e in exc.errors():
        groups.setdefault(_loc(e["loc"], names, tags), []).append(e)
    # a union whose chosen alternative (a list, a range) failed inside: report only the inner errors
    for loc in [k for k, errs in groups.items() if k != "(top level)"
                and any(o.startswith(k + ".") for o in groups)
                and not any(e["type"] == "value_error" for e in errs)]:
        del groups[loc]
    out = []
    for loc, errs in groups.items():
        chosen = [e for e in errs if e["type"] == "value_error"] or errs
        msgs = list(dict.fromkeys(e["msg"].removeprefix("Value error, ") for e in chosen))
        if len(msgs) > 1 and any(e["type"] == "list_type" for e in errs):
            msg = "expected a fixed value, a list of choices or a {low, high} range (" + "; ".join(msgs) + ")"
        elif len(msgs) > 1:
            msg = "; or ".join(msgs)
        else:
            msg = msgs[0]
        got = chosen[0].get("input")
        suffix = f" (got {got!r})" if got is not None and not isinstance(got, (dict, list)) else ""
        out.append(f"{where}: {loc}: {msg}{suffix}")
    return "\n".join(out)
