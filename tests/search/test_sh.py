"""Synchronous successive halving per FT size (GroupedSH): pure rung/quota arithmetic, then real Ray Tune runs
with a formula objective standing in for training (validation MAE = size offset + penalty, and one
configuration that overfits after its first epoch)."""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time

import pytest

from tlsearch.search._sh_bracket import _Bracket, config_key, quotas, rungs

SIZES = [100, 800]
OFFSET = {100: 10.0, 800: 1.0}
PENALTIES = [0.1 * i for i in range(1, 12)]  # 11 configurations per size, the paper's grid size


def test_rungs_are_geometric_and_below_the_last_epoch():
    assert rungs(1, 3, 15) == [1, 3, 9]
    assert rungs(5, 3, 15) == [5]
    assert rungs(2, 2, 15) == [2, 4, 8]
    assert rungs(1, 1.5, 6) == [1, 2, 3, 5]  # rounded, no repeats
    assert rungs(15, 3, 15) == []  # nothing to halve: every trial runs to the end


def test_quotas_follow_the_size_cycle():
    assert quotas([100, 800], 22) == {"100": 11, "800": 11}
    assert quotas([100, 800], 7) == {"100": 4, "800": 3}
    assert quotas([10, 100, 800], 4) == {"10": 2, "100": 1, "800": 1}


def test_bracket_halves_by_best_value_so_far_and_keeps_at_least_one():
    b = _Bracket(5, [1, 3], 3.0)
    for t in "abcde":
        b.add(t)
    assert not b.ready()
    b.at_rung.update(a=0.5, b=0.1, c=0.3, d=0.2)
    assert not b.ready()
    b.at_rung["e"] = 0.4
    assert b.ready() and b.full()
    keep, drop = b.halve()
    assert keep == ["b", "d"] and sorted(drop) == ["a", "c", "e"] and b.rung() == 3
    b.at_rung.update(b=0.2, d=0.3)
    assert b.halve() == (["b"], ["d"]) and b.rung() is None and b.stopped == 4


def test_bracket_with_the_family_rule_keeps_each_familys_best_and_survives_a_restore():
    b = _Bracket(6, [1, 3], 3.0, protect=True)
    for t, fam in zip("abcdef", ["scratch", "ft", "ft", "ft", "mpt", "mpt"]):
        b.add(t)
        b.families[t] = fam
    b.at_rung.update(a=0.9, b=0.1, c=0.2, d=0.3, e=0.8, f=0.7)
    keep, drop = b.halve()  # top 1/3: b, c; then the best of the two families not in it: f (mpt), a (scratch)
    assert keep == ["b", "c", "f", "a"] and sorted(drop) == ["d", "e"]
    again = _Bracket.from_dict(b.to_dict())
    assert again.protect and again.families == b.families
    plain = _Bracket(6, [1, 3], 3.0)  # the default: top 1/3 only
    for t in "abcdef":
        plain.add(t)
    plain.at_rung.update(a=0.9, b=0.1, c=0.2, d=0.3, e=0.8, f=0.7)
    assert plain.halve()[0] == ["b", "c"]
    old_state = {k: v for k, v in b.to_dict().items() if k not in ("protect", "families")}
    assert not _Bracket.from_dict(old_state).protect  # a bracket saved by an older tlsearch



def _halved_bracket() -> _Bracket:
    """7 members with configurations; rung 1 decided (a, b, c go on), the way a driver left it when it died."""
    b = _Bracket(7, [1, 3], 3.0)
    for i, t in enumerate("abcdefg"):
        b.add(t)
        b.configs[t] = config_key({"lr": i})
    b.at_rung.update(a=0.1, b=0.2, c=0.3, d=0.4, e=0.5, f=0.6, g=0.7)
    keep, _ = b.halve()
    b.go.update(keep)
    return b


def test_an_orphans_replacement_takes_its_place_dropped_or_alive():
    """After a driver crash a member the resumed Tune does not know is an orphan: the trial the searcher plans
    again with its configuration takes its place, so the bracket keeps its size and its decisions (a place it
    had dropped stays dropped; an alive one trains to the current rung again)."""
    b = _halved_bracket()
    b.best.update(c=0.3)
    b.orphan("c")  # alive, cleared to go on
    b.orphan("g")  # dropped at rung 1
    assert b.orphans == {"c", "g"} and b.full() and "c" in b.alive and "c" not in b.go and "c" not in b.best
    assert not b.adopt(config_key({"lr": 99}), "x")  # a new configuration takes no place
    assert b.adopt(config_key({"lr": 6}), "g2") and "g2" not in b.alive  # dropped: stays dropped
    assert b.adopt(config_key({"lr": 2}), "c2") and "c2" in b.alive and "c" not in b.alive
    assert b.members == ["a", "b", "c2", "d", "e", "f", "g2"] and not b.orphans and b.full()
    b.at_rung.update(a=0.1, b=0.2)
    assert not b.ready()  # the replacement must reach rung 3 first
    b.at_rung["c2"] = 0.05
    assert b.ready() and b.halve() == (["c2"], ["a", "b"])
    again = _Bracket.from_dict(_halved_bracket().to_dict())
    assert again.configs == _halved_bracket().configs and again.orphans == set()


def test_orphans_nobody_replans_stop_holding_the_bracket_and_old_states_drop_them():
    b = _halved_bracket()
    b.orphan("c")
    b.at_rung.update(a=0.1, b=0.2)
    assert not b.ready() and b.abandon_orphans() and b.ready() and not b.orphans
    old = _halved_bracket().to_dict()
    del old["configs"], old["orphans"]  # a state written by an older tlsearch: no configurations recorded
    b = _Bracket.from_dict(old)
    b.orphan("c")
    assert b.members == ["a", "b", "d", "e", "f", "g"] and b.alive == {"a", "b"} and not b.full()
    done = _halved_bracket()
    done.done.add("a")
    done.orphan("a")  # it finished before the crash: its place stays taken
    assert done.members[0] == "a" and not done.orphans


class _Trial:
    """As Tune's Trial: a directory once started (a PENDING one has none; its paths raise, as Ray 2.60's)."""

    def __init__(self, trial_id: str, status: str, config: dict) -> None:
        self.trial_id, self.status, self.config, self.is_saving = trial_id, status, config, False
        self.dir = None if status == "PENDING" else f"t_{trial_id}"

    @property
    def local_path(self) -> str:
        if self.dir is None:
            raise RuntimeError("Should not access `trial_driver_staging_path` without setting `trial_dir_name`")
        return self.dir

    def init_local_path(self) -> None:
        self.dir = self.dir or f"t_{self.trial_id}"


class _Controller:
    """What GroupedSH asks of Tune's controller: the trials, stop one, sync the experiment."""

    def __init__(self, trials: list[_Trial]) -> None:
        self.trials, self.stopped = trials, []

    def get_trials(self) -> list[_Trial]:
        return self.trials

    def stop_trial(self, t: _Trial) -> None:
        self.stopped.append(t.trial_id)
        t.status = "TERMINATED"

    def checkpoint(self, force: bool = False, wait: bool = False) -> None:
        pass


def test_a_pause_that_is_not_the_brackets_is_resumed(tmp_path):
    """Tune keeps the decisions of saves in flight in its experiment snapshot and applies them after a resume:
    a trial its dead driver was pausing at rung 1 is paused again after it reruns epoch 1, although its bracket
    had already cleared it to go on. Paused, alive and not waiting at a rung: the scheduler runs it again
    (before, the study waited for it forever: CI, 2026-12-02)."""
    from tlsearch.search._sh import GroupedSH

    state = tmp_path / "sh_state.json"
    configs = {t: {"ft_size": 40, "lr": i} for i, t in enumerate("abcdefg")}
    b = _halved_bracket()
    b.configs = {t: config_key(c) for t, c in configs.items()}
    state.write_text(json.dumps({"40": [b.to_dict()]}))
    sched = GroupedSH("ft_size", 40, {"40": 7}, [1, 3], 3.0, max_concurrent=2, state_path=str(state))
    sched.restore(str(state))
    sched.relocate(str(state))
    trials = [_Trial(t, s, configs[t]) for t, s in (("a", "RUNNING"), ("b", "PAUSED"), ("c", "PAUSED"))]
    ctl = _Controller(trials)
    for t in trials:
        sched.on_trial_add(ctl, t)
    (bracket,) = sched._brackets["40"]
    bracket.at_rung["c"] = 0.3  # c waits at rung 3
    bracket.go -= {"b", "c"}  # b reported epoch 1 again and Tune paused it (the stale decision)
    assert sched.choose_trial_to_run(ctl) is trials[1]
    assert sched.choose_trial_to_run(ctl) is trials[1] and "c" not in bracket.go  # c keeps waiting
    # the orphans of the crash (d..g were never in Tune's snapshot) keep their places; c's replan of d's
    # configuration takes d's place, dropped
    new = _Trial("d2", "PENDING", configs["d"])
    ctl.trials.append(new)
    sched.on_trial_add(ctl, new)
    assert bracket.members == ["a", "b", "c", "d2", "e", "f", "g"] and "d2" not in bracket.alive
    sched.choose_trial_to_run(ctl)
    assert "d2" in ctl.stopped  # stopped before it runs: its place had been dropped at rung 1
    assert new.local_path == "t_d2"  # with a directory, which Tune reads for every trial at the end


class _Search:
    def __init__(self, finished: bool) -> None:
        self.finished = finished

    def is_finished(self) -> bool:
        return self.finished


def test_orphans_wait_for_their_replan_until_the_searcher_has_finished(tmp_path):
    """Right after a resume every member Tune knows can be waiting at rung 1 while the searcher has not yet been
    asked for the orphans' configurations: nothing runs, but the bracket must wait for them (it was cut short, a
    second bracket opened for them: /tmp/shstress run2). Once the searcher has finished, orphans nobody took stop
    holding the bracket back and it is halved with what it has."""
    from tlsearch.search._sh import GroupedSH

    state = tmp_path / "sh_state.json"
    configs = {t: {"ft_size": 40, "lr": i} for i, t in enumerate("abcde")}
    b = _Bracket(7, [1, 3], 3.0)
    for t in "abcde":
        b.add(t)
        b.configs[t] = config_key(configs[t])
    b.at_rung.update(a=0.3, b=0.1, c=0.2)  # d and e were running when the driver died, after Tune's snapshot
    state.write_text(json.dumps({"40": [b.to_dict()]}))
    sched = GroupedSH("ft_size", 40, {"40": 7}, [1, 3], 3.0, max_concurrent=2, state_path=str(state))
    sched.relocate(str(state))
    trials = [_Trial(t, "PENDING", configs[t]) for t in "abc"]
    ctl = _Controller(trials)
    for t in trials:
        sched.on_trial_add(ctl, t)
    ctl.search_alg = _Search(finished=False)
    assert sched.choose_trial_to_run(ctl) is None
    (bracket,) = sched._brackets["40"]
    assert bracket.orphans == {"d", "e"} and bracket.k == 0 and not ctl.stopped  # waiting, not halved
    d2 = _Trial("d2", "PENDING", configs["d"])  # the searcher plans d's configuration again
    ctl.trials.append(d2)
    sched.on_trial_add(ctl, d2)
    assert bracket.members == ["a", "b", "c", "d2", "e"] and "d2" in bracket.alive
    bracket.at_rung["d2"] = 0.05
    d2.status = "PAUSED"
    ctl.search_alg.finished = True  # e was never planned again (the budget ran out)
    sched.choose_trial_to_run(ctl)
    assert bracket.k == 1 and bracket.alive == {"d2", "b"} and not bracket.orphans, bracket.to_dict()


def _formula_trainable(config: dict) -> None:
    """Checkpoints every epoch (a paused trial resumes from it); records when it runs, to count concurrency."""
    from ray import tune
    from ray.tune import Checkpoint

    start = 1
    ckpt = tune.get_checkpoint()
    if ckpt is not None:
        with ckpt.as_directory() as d, open(os.path.join(d, "s.json")) as fh:
            start = json.load(fh)["epoch"] + 1
    log = config["log"]
    for epoch in range(start, 10):
        t0 = time.time()
        time.sleep(0.05)
        # penalty 1.1 overfits: best of all at epoch 1, worst after; its best epoch is what it delivers, so
        # best-so-far keeps it (ranking by the current epoch would drop it at rung 3)
        p = config["penalty"]
        val = OFFSET[config["ft_size"]] + ((0.05 if epoch == 1 else 2.0) if p > 1.0 else p * (1 + 1 / epoch))
        with open(log, "a") as fh:
            fh.write(json.dumps({"p": config["penalty"], "s": config["ft_size"], "e": epoch, "t0": t0,
                                 "t1": time.time(), "pid": os.getpid()}) + "\n")
        with tempfile.TemporaryDirectory() as d:
            with open(os.path.join(d, "s.json"), "w") as fh:
                json.dump({"epoch": epoch}, fh)
            tune.report({"val_mae": val, "epoch": epoch}, checkpoint=Checkpoint.from_directory(d))
    tune.report({"val_mae": OFFSET[config["ft_size"]] + config["penalty"], "final": True, "epoch": 10})


def _check_grouped_sh(tmp: str, quota: int = 11) -> None:
    """Run in a fresh process (Ray state of earlier in-process tests must not leak in). 4 CPUs, so only the
    limiter and the scheduler keep the study at max_concurrent=2."""
    from pathlib import Path

    import ray
    from ray import cloudpickle, tune
    from ray.tune.search import Searcher

    from tlsearch.search._sh import GroupedSH, PauseAwareLimiter

    class ListSearcher(Searcher):  # the configurations in order, like the sampler's cover
        def __init__(self, configs: list[dict]) -> None:
            super().__init__(metric="val_mae", mode="min")
            self.configs = list(configs)

        def suggest(self, trial_id: str) -> dict | str:
            return self.configs.pop(0) if self.configs else Searcher.FINISHED

        def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
            pass

    tmp_path = Path(tmp)
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ray.init(address="local", num_cpus=4, include_dashboard=False, log_to_driver=False,
             _temp_dir=str(tmp_path / "ray"))
    log = str(tmp_path / "epochs.jsonl")
    try:
        # quota > 11: the brackets never fill (a searcher that ran out of configurations); once nothing runs,
        # they are halved with what they have
        sched = GroupedSH("ft_size", 100, quotas(SIZES, 2 * quota), rungs(1, 3, 9), 3.0, max_concurrent=2)
        configs = [{"ft_size": s, "penalty": p, "log": log} for p in PENALTIES[::-1] for s in SIZES]
        tuner = tune.Tuner(
            tune.with_resources(_formula_trainable, {"cpu": 1}),
            tune_config=tune.TuneConfig(metric="val_mae", mode="min", scheduler=sched, num_samples=len(configs),
                                        search_alg=PauseAwareLimiter(ListSearcher(configs), 2, sched),
                                        reuse_actors=True),
            run_config=tune.RunConfig(storage_path=str(tmp_path), name="sh", verbose=0))
        results = tuner.fit()
        assert len(results) == 22 and not results.errors, results.errors
        final = {(r.config["ft_size"], round(r.config["penalty"], 1)) for r in results if r.metrics.get("final")}
        assert final == {(s, p) for s in SIZES for p in (0.1, 1.1)}, final  # 11 -> 4 -> 2 per size
        rows = [json.loads(line) for line in open(log)]
        epochs = {}
        for r in rows:
            epochs.setdefault((r["s"], round(r["p"], 1)), []).append(r["e"])
        for key, es in epochs.items():
            assert es == sorted(set(es)), (key, es)  # resumed from the rung checkpoint: no epoch twice
        per_size = {s: sorted(len(es) for (sz, _), es in epochs.items() if sz == s) for s in SIZES}
        for s in SIZES:  # 7 trials stopped at rung 1, 2 at rung 3, 2 ran all 9 epochs
            assert per_size[s] == [1] * 7 + [3] * 2 + [9] * 2, per_size
        # at most max_concurrent trials train at any moment (4 CPUs would allow 4)
        events = sorted([(r["t0"], 1) for r in rows] + [(r["t1"], -1) for r in rows])
        live = peak = 0
        for _, d in events:
            live += d
            peak = max(peak, live)
        assert peak <= 2, peak
        assert sched.stopped() == {"100": 9, "800": 9}, sched.stopped()
    finally:
        ray.shutdown()


@pytest.mark.timeout(600)
@pytest.mark.parametrize("quota", [11, 13])
def test_grouped_sh_waits_for_the_bracket_and_runs_the_best_to_the_end(quota):
    from tests.search.test_scheduling import in_fresh_process

    in_fresh_process("test_sh", f"_check_grouped_sh(sys.argv[1], {quota})")
