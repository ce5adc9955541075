"""Runner helpers that need no Ray."""

from __future__ import annotations


def test_a_busy_dashboard_port_falls_back_to_a_free_one():
    import socket

    from tlsearch.search.runner import _free_port, _port_free

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert not _port_free("127.0.0.1", port)
        other = _free_port("127.0.0.1")
        assert other != port and _port_free("127.0.0.1", other)


def test_a_time_budget_stop_in_a_two_objective_study_names_the_epochs_tune_ran(tmp_path):
    """Optuna keeps no intermediate values for a two-objective study: the line that says a trial was stopped by
    the time budget takes its epochs from Tune's last result (it said 0 epochs before). A real Optuna journal
    in a real experiment directory; a formula stands in for the trials."""
    import io

    import optuna
    import yaml
    from rich.console import Console

    from tests.search.test_run import SMOKE
    from tlsearch.search.experiment import NOTE_ATTR, RAY_TRIAL_ATTR, TIME_BUDGET, Experiment
    from tlsearch.search.runner import _close_unfinished
    from tlsearch.search.spec import spec_from_dict

    data = yaml.safe_load(SMOKE.read_text())
    data["objectives"] = ["val_mae", "cost"]
    data["budget"]["time_budget_s"] = 60
    spec = spec_from_dict(data)
    exp = Experiment.create(spec, str(tmp_path / "exp"))
    study = optuna.create_study(study_name=spec.name, storage=exp.optuna_storage(), directions=["minimize"] * 2)
    running = study.ask()  # Tune stopped it at the budget, after its 7th epoch
    running.set_user_attr(RAY_TRIAL_ATTR, "aaaa0001")
    noted = study.ask()  # the searcher already closed this one (Tune told it complete once the budget ran out)
    noted.set_user_attr(RAY_TRIAL_ATTR, "aaaa0002")
    noted.set_user_attr(NOTE_ATTR, TIME_BUDGET)
    study.tell(noted, state=optuna.trial.TrialState.PRUNED)
    out = io.StringIO()
    _close_unfinished(spec, exp, Console(file=out, width=200), {"aaaa0001": 7, "aaaa0002": 3})
    said = out.getvalue()
    assert "optuna trial 0: stopped by the study's time budget (60 s) after 7 epoch(s)" in said, said
    assert "optuna trial 1: stopped by the study's time budget (60 s) after 3 epoch(s)" in said, said
    assert [t.state.name for t in optuna.load_study(study_name=spec.name, storage=exp.optuna_storage()).trials] == [
        "PRUNED", "PRUNED"]
