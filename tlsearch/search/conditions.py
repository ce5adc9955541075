"""The study's conditions: what trials are compared within, never across (no Ray, no Optuna).

A condition is a value of the FT size and, in a study with several targets (``data.targets``), of the FT
target: a trial on 100 structures of one property has a validation MAE that says nothing about one on 800, or
on another property. From here come the order in which the sampler hands out conditions (every condition gets
its share of the trial budget: sizes in spec order, each with every target in spec order), the trial-config
keys the schedulers group by (one scheduler, or one bracket, per condition) and the name of each group.
A single-target study's conditions are its FT sizes, with the same group names as before targets existed
(so an older experiment resumes with the same groups).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tlsearch.search.spec import SearchSpec


def several_targets(spec: SearchSpec) -> bool:
    return len(spec.data.ft_targets) > 1


def conditions(spec: SearchSpec) -> list[dict[str, Any]]:
    """Each condition as the trial parameters that make it, in the order the sampler cycles through them."""
    sizes, targets = spec.search.ft_size, [t.label for t in spec.data.ft_targets]
    if not several_targets(spec):
        return [{"ft_size": z} for z in sizes]
    return [{"target": t, "ft_size": z} for z in sizes for t in targets]


def group_keys(spec: SearchSpec) -> tuple[str | tuple[str, ...], Any]:
    """(the trial-config key(s) a scheduler groups by, the value(s) for a config without them)."""
    if not several_targets(spec):
        return "ft_size", spec.search.ft_size[0]
    return ("target", "ft_size"), (spec.data.ft_targets[0].label, spec.search.ft_size[0])


def group_name(values: Any) -> str:
    """A group's name: the FT size (``"100"``), or ``"<target> | <size>"`` with several targets."""
    return " | ".join(str(v) for v in values) if isinstance(values, tuple) else str(values)


def group_names(spec: SearchSpec) -> list[str]:
    """Every condition's group name, in the sampler's order."""
    keys, _ = group_keys(spec)
    keys = keys if isinstance(keys, tuple) else (keys,)
    return [group_name(tuple(c[k] for k in keys) if len(keys) > 1 else c[keys[0]]) for c in conditions(spec)]
