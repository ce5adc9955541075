"""Successive halving's pure parts (no Ray): ``scheduler: {type: sh}`` (its spec, decision epochs and
factory; the scheduler itself is ``_sh.GroupedSH``), rung epochs, each FT size's share of the budget, and one
bracket's bookkeeping (who is alive, who waits at the current rung with what value, who may go on, and the
places of members a dead driver started that the resumed Tune does not know)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from tlsearch.search._plugin import SchedulerPlugin, SchedulerSpec, ft_size_groups

if TYPE_CHECKING:
    from tlsearch.search.spec import SearchSpec


class SuccessiveHalving(SchedulerSpec):
    """Synchronous successive halving per FT size: every trial of a size waits at each rung
    (``grace_period * reduction_factor**i`` epochs) and the best ``1/reduction_factor`` go on (see _sh.py)."""
    type: Literal["sh"]
    grace_period: int = Field(1, ge=1)
    reduction_factor: float = Field(3.0, gt=1)
    # off by default: screening the grid from epoch 1 to one winner is what meets the search-efficiency target
    protect_families: bool = False


def rungs(grace_period: int, eta: float, max_epochs: int) -> list[int]:
    """Rung epochs: grace_period * eta**i below the last epoch (a finished trial's summary comes after it)."""
    out, e = [], float(grace_period)
    while round(e) < max_epochs:
        if not out or round(e) > out[-1]:
            out.append(round(e))
        e *= eta
    return out


def quotas(sizes: list[Any], trials: int) -> dict[str, int]:
    """Each FT size's (each condition's: ``conditions.group_names``) share of the trial budget, as the sampler's
    cycle hands them out (first ones first)."""
    n = len(sizes)
    return {str(s): trials // n + (1 if j < trials % n else 0) for j, s in enumerate(sizes)}


class _Bracket:
    def __init__(self, capacity: int, rung_epochs: list[int], eta: float, protect: bool = False) -> None:
        self.capacity, self.rungs, self.eta = capacity, list(rung_epochs), eta
        self.protect = protect  # each strategy family's best at a rung goes on too
        self.families: dict[str, str] = {}  # trial -> strategy family
        self.members: list[str] = []
        self.alive: set[str] = set()
        self.best: dict[str, float] = {}  # best validation MAE so far
        self.at_rung: dict[str, float] = {}  # trials waiting at the current rung, with their value there
        self.k = 0  # current rung
        self.go: set[str] = set()  # paused trials cleared to go on
        self.done: set[str] = set()  # completed (not stopped): rerun from their checkpoint if a resume asks
        self.stopped = 0
        self.configs: dict[str, str] = {}  # trial -> config_key of its configuration
        self.orphans: set[str] = set()  # members the resumed Tune does not know: their places wait for a replan

    def add(self, trial_id: str) -> None:
        self.members.append(trial_id)
        self.alive.add(trial_id)

    def rung(self) -> int | None:
        return self.rungs[self.k] if self.k < len(self.rungs) else None

    def full(self) -> bool:
        return len(self.members) >= self.capacity

    def ready(self) -> bool:
        return self.rung() is not None and bool(self.alive) and all(t in self.at_rung for t in self.alive)

    def halve(self) -> tuple[list[str], list[str]]:
        ranked = sorted(self.alive, key=lambda t: (self.at_rung[t], self.members.index(t)))
        n_keep = max(1, math.ceil(len(ranked) / self.eta))
        keep = ranked[:n_keep]
        if self.protect:  # ranked best first: the first of a family not yet kept is that family's best
            kept = {self.families.get(t) for t in keep}
            for t in ranked[n_keep:]:
                if self.families.get(t, t) not in kept:
                    keep.append(t)
                    kept.add(self.families.get(t, t))
        drop = [t for t in ranked if t not in keep]
        self.alive, self.at_rung, self.k = set(keep), {}, self.k + 1
        self.stopped += len(drop)
        return keep, drop

    def remove(self, trial_id: str) -> None:
        self.alive.discard(trial_id)
        self.at_rung.pop(trial_id, None)
        self.go.discard(trial_id)

    def orphan(self, trial_id: str) -> None:
        """A member the resumed Tune does not know (a dead driver started it after Tune's last snapshot). The
        searcher plans its configuration again; the new trial takes its place (``adopt``), alive if it was, and
        trains up to the current rung again (its value there is gone with its checkpoint). A member without a
        recorded configuration (a state written by an older tlsearch) leaves the bracket instead."""
        if trial_id in self.done:  # it finished: its place is taken for good
            return
        self.at_rung.pop(trial_id, None)
        self.best.pop(trial_id, None)
        self.go.discard(trial_id)
        if trial_id in self.configs:
            self.orphans.add(trial_id)
        else:
            self.members.remove(trial_id)
            self.alive.discard(trial_id)

    def adopt(self, key: str, trial_id: str) -> bool:
        """Give ``trial_id`` (configuration ``key``) the place of an orphan with that configuration, if any."""
        old = next((t for t in self.members if t in self.orphans and self.configs.get(t) == key), None)
        if old is None:
            return False
        self.orphans.discard(old)
        self.members[self.members.index(old)] = trial_id
        if old in self.alive:
            self.alive.discard(old)
            self.alive.add(trial_id)
        self.configs[trial_id] = self.configs.pop(old)
        if old in self.families:
            self.families[trial_id] = self.families.pop(old)
        return True

    def abandon_orphans(self) -> bool:
        """Orphans whose configuration was not planned again (nothing else runs or waits to start) stop
        holding their bracket back: they leave the alive set. Whether any did."""
        gone = self.orphans & self.alive
        self.alive -= gone
        self.orphans -= gone
        return bool(gone)

    def to_dict(self) -> dict[str, Any]:
        return {"capacity": self.capacity, "rungs": self.rungs, "eta": self.eta, "members": self.members,
                "alive": sorted(self.alive), "best": self.best, "at_rung": self.at_rung, "k": self.k,
                "go": sorted(self.go), "done": sorted(self.done), "stopped": self.stopped, "protect": self.protect,
                "families": self.families, "configs": self.configs, "orphans": sorted(self.orphans)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> _Bracket:
        b = cls(d["capacity"], d["rungs"], d["eta"], d.get("protect", False))  # older state: no family rule
        b.families = dict(d.get("families", {}))
        b.configs, b.orphans = dict(d.get("configs", {})), set(d.get("orphans", []))  # older state: none
        b.members, b.alive, b.best, b.at_rung = list(d["members"]), set(d["alive"]), dict(d["best"]), dict(d["at_rung"])
        b.k, b.go, b.done, b.stopped = d["k"], set(d["go"]), set(d["done"]), d["stopped"]
        return b


def config_key(config: dict[str, Any]) -> str:
    """A trial's configuration as one string: a configuration the searcher plans again after a driver crash
    gets the same key."""
    return json.dumps(config, sort_keys=True, default=str)


def decision_epochs(spec: SearchSpec) -> set[int]:
    """The rungs: a trial pauses after these epochs of its first repeat (and resumes from its checkpoint there)."""
    sch = spec.scheduler
    return set(rungs(sch.grace_period, sch.reduction_factor, spec.budget.max_epochs))


def make(spec: SearchSpec, searcher: Any, state_path: Path) -> tuple[Any, Any]:
    """GroupedSH, its brackets kept in ``state_path`` (Tune does not restore a scheduler's state on resume), and
    the limiter that does not count the trials waiting at a rung."""
    from tlsearch.search._sh import GroupedSH, PauseAwareLimiter

    from tlsearch.search.conditions import group_names

    res, sch = spec.resources, spec.scheduler
    scheduler = GroupedSH(*ft_size_groups(spec), quotas(group_names(spec), spec.budget.trials),
                          rungs(sch.grace_period, sch.reduction_factor, spec.budget.max_epochs), sch.reduction_factor,
                          res.max_concurrent, state_path=str(state_path), protect_families=sch.protect_families)
    return PauseAwareLimiter(searcher, res.max_concurrent, scheduler), scheduler


PLUGIN = SchedulerPlugin(SuccessiveHalving, make, decision_epochs, pauses=True)
