"""The offline sweep runner (experiments/sweep.py) against a stub program: the agent's argument form,
parallel workers, the SQLite study, resume after a kill, retry of failed grid points, random / bayes caps."""

import json
import os
import signal
import subprocess
import time

import optuna
import pytest
from optuna.trial import TrialState
from wandb.sdk.launch.sweeps.utils import create_sweep_command_args

GRID = {
    "x": {"values": [1, 2, 3]},
    "run.seed": {"values": [0, 1]},
    "model.modalities": {"value": "face,voice"},
    "eval.plots": {"value": False},
    "optim.lr": {"value": 0.0003},
}


def study(out, name: str) -> optuna.Study:
    """The Optuna study of a sweep file without run.group: its folder is named like the sweep."""
    return optuna.load_study(study_name=name, storage=f"sqlite:///{out / name / 'study.db'}")


def by_point(calls: list[list[str]]) -> dict[tuple[str, str], int]:
    """How often each (x, seed) point was started."""
    counts = {}
    for argv in calls:
        args = dict(a[2:].split("=", 1) for a in argv)
        point = (args["x"], args["run.seed"])
        counts[point] = counts.get(point, 0) + 1
    return counts


def test_grid_runs_every_point_with_the_agents_arguments_and_stores_trials_in_sqlite(stub):
    path = stub.sweep_file("grid", "grid", GRID)
    done = stub.run(path, "--workers", "2", "--wandb", "disabled")
    assert done.returncode == 0, done.stderr
    calls = stub.calls()
    assert sorted(by_point(calls)) == [(str(x), str(s)) for x in (1, 2, 3) for s in (0, 1)]
    for argv in calls:
        args = dict(a[2:].split("=", 1) for a in argv)
        params = {k: (int(args[k]) if k in ("x", "run.seed") else v["value"]) for k, v in GRID.items()}
        agent = create_sweep_command_args({"args": {k: {"value": v} for k, v in params.items()}})["args"]
        assert argv[: len(agent)] == agent  # exactly what `wandb agent` puts in ${args}, in the file's order
        assert argv[len(agent) :] == [
            f"--run.out={stub.out / 'grid'}",
            f"--run.name={args['run.name']}",
            "--run.wandb=disabled",
            "--run.progress=false",
        ]
    trials = study(stub.out, "grid").get_trials()
    assert all(t.state == TrialState.COMPLETE for t in trials) and len(trials) == 6
    for t in trials:
        record = json.loads((stub.out / "grid" / t.user_attrs["name"] / "record.json").read_text())
        assert t.value == record["summary"]["val/acc"] == stub.value(t.params)
    assert stub.run(path).returncode == 0
    assert len(stub.calls()) == 6  # a rerun of a finished study starts nothing


def test_a_killed_sweep_resumes_and_retries_only_the_killed_trials(stub):
    path = stub.sweep_file("resume", "grid", GRID)
    env = stub.env | {"STUB_HANG": "x=2"}
    proc = subprocess.Popen(stub.command(path, "--workers", "2"), env=env, start_new_session=True)
    try:
        deadline = time.time() + 60
        while sum(1 for argv in stub.calls() if "--x=2" in argv) < 2:  # both workers hang on x=2
            assert time.time() < deadline and proc.poll() is None, "the sweep never reached x=2"
            time.sleep(0.2)
        time.sleep(0.5)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the runner and its runs, as a lost machine would
        proc.wait()
    first = by_point(stub.calls())
    assert stub.run(path, "--workers", "2").returncode == 0
    second = {k: v - first.get(k, 0) for k, v in by_point(stub.calls()).items() if v > first.get(k, 0)}
    assert second == {("2", "0"): 1, ("2", "1"): 1, ("3", "0"): 1, ("3", "1"): 1}  # x=1 ran once, before
    trials = study(stub.out, "resume").get_trials()
    complete = {(t.params["x"], t.params["run.seed"]): t.value for t in trials if t.state == TrialState.COMPLETE}
    assert complete == {(x, s): stub.value({"x": x, "run.seed": s}) for x in (1, 2, 3) for s in (0, 1)}
    assert sum(t.state == TrialState.FAIL and "exit_code" not in t.user_attrs for t in trials) == 2


def test_a_failed_grid_point_is_reported_and_retried_on_the_next_run(stub):
    path = stub.sweep_file("flaky", "grid", GRID)
    first = stub.run(path, STUB_FAIL="x=3")
    assert first.returncode == 1
    assert "failed: flaky-x=3-run.seed=0" in first.stderr and "stub failure" in first.stderr
    failed = [t for t in study(stub.out, "flaky").get_trials() if t.state == TrialState.FAIL]
    assert sorted(t.params["run.seed"] for t in failed) == [0, 1] and {t.user_attrs["exit_code"] for t in failed} == {1}
    assert stub.run(path).returncode == 0
    assert by_point(stub.calls())[("3", "0")] == 2 and by_point(stub.calls())[("1", "0")] == 1


@pytest.mark.parametrize("method", ["random", "bayes"])
def test_random_and_bayes_search_sample_the_space_up_to_run_cap(stub, method):
    space = {
        "x": {"distribution": "log_uniform_values", "min": 0.01, "max": 1.0},
        "run.seed": {"distribution": "int_uniform", "min": 0, "max": 5},
        "y": {"distribution": "q_uniform", "min": 0.0, "max": 1.0, "q": 0.25},
    }
    path = stub.sweep_file(method, method, space, run_cap=5)
    assert stub.run(path, "--workers", "2").returncode == 0
    trials = study(stub.out, method).get_trials()
    assert len(trials) == 5 and all(t.state == TrialState.COMPLETE for t in trials)
    for t in trials:
        assert 0.01 <= t.params["x"] <= 1.0 and t.params["run.seed"] in range(6)
        assert t.params["y"] in (0.0, 0.25, 0.5, 0.75, 1.0)
        assert t.value == pytest.approx(stub.value(t.params))
    assert len({t.params["x"] for t in trials}) == 5
    assert stub.run(path, "--count", "7").returncode == 0  # more trials on request, the first 5 kept
    assert len(stub.calls()) == 7
    assert len({t.params["x"] for t in study(stub.out, method).get_trials()}) == 7  # new draws, not the first again
