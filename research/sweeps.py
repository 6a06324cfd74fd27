"""W&B sweep files, run offline: the YAML that `wandb agent` runs online is searched here with Optuna.

A trial runs the sweep file's `command` with its parameters formatted exactly as `wandb agent` formats
them (`--key=value`, value as Python's `str`), plus the runner's own `--run.out/--run.name/--run.wandb`.
Trials live in an SQLite Optuna study (`runs/<group>/study.db`), one coordinator process starts up to
`workers` run.py subprocesses at once, and a rerun resumes: see `recover` for what is retried.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import optuna
import yaml
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import FrozenTrial, TrialState

DEFAULT_COMMAND = ["${env}", "${interpreter}", "${program}", "${args}"]  # wandb agent's default
METHODS = ("grid", "random", "bayes")


class SweepError(ValueError):
    """A sweep file this runner cannot run (the message names the key)."""


def load_sweep(path: str | Path) -> dict[str, Any]:
    """Read and check a W&B sweep file; `name` defaults to the file's stem."""
    sweep = yaml.safe_load(Path(path).read_text())
    sweep.setdefault("name", Path(path).stem)
    if sweep.get("method") not in METHODS:
        raise SweepError(f"{path}: method must be one of {', '.join(METHODS)}, not {sweep.get('method')!r}")
    if not sweep.get("program") or not sweep.get("parameters"):
        raise SweepError(f"{path}: a sweep file needs `program` and `parameters`")
    if "name" not in sweep.get("metric", {}):
        raise SweepError(f"{path}: the runner needs `metric: {{name: ..., goal: ...}}` (the trial value)")
    for key, spec in sweep["parameters"].items():
        for value in spec.get("values", [spec["value"]] if "value" in spec else []):
            if isinstance(value, (list, dict)):
                raise SweepError(f'{path}: parameter {key}: give lists as comma strings ("face,voice")')
        if sweep["method"] == "grid" and "value" not in spec and "values" not in spec:
            raise SweepError(f"{path}: parameter {key}: a grid sweep takes `value` or `values` only")
        if "value" not in spec:
            distribution(key, spec)  # raises on an unsupported distribution
    return sweep


def group(sweep: dict[str, Any]) -> str:
    """The study's W&B group (the `run.group` constant) or the sweep name: also its folder under runs/."""
    return str(constants(sweep).get("run.group") or sweep["name"])


def constants(sweep: dict[str, Any]) -> dict[str, Any]:
    return {k: spec["value"] for k, spec in sweep["parameters"].items() if "value" in spec}


def distribution(key: str, spec: dict[str, Any]) -> BaseDistribution:
    """A sweep-file parameter spec as an Optuna distribution (the W&B names; min/max ints = int_uniform)."""
    if "values" in spec:
        return CategoricalDistribution(spec["values"])
    ints = isinstance(spec.get("min"), int) and isinstance(spec.get("max"), int)
    name = spec.get("distribution", "int_uniform" if ints else "uniform")
    low, high = spec.get("min"), spec.get("max")
    if name == "int_uniform":
        return IntDistribution(int(low), int(high))
    if name == "uniform":
        return FloatDistribution(float(low), float(high))
    if name == "q_uniform":
        return FloatDistribution(float(low), float(high), step=float(spec.get("q", 1.0)))
    if name == "log_uniform_values":
        return FloatDistribution(float(low), float(high), log=True)
    raise SweepError(
        f"parameter {key}: distribution {name!r} is not supported offline "
        "(use values, int_uniform, uniform, q_uniform or log_uniform_values)"
    )


def search_space(sweep: dict[str, Any]) -> dict[str, BaseDistribution]:
    return {k: distribution(k, spec) for k, spec in sweep["parameters"].items() if "value" not in spec}


def grid_points(sweep: dict[str, Any]) -> list[dict[str, Any]]:
    """Every combination of the `values` of a grid sweep, as {key: value}."""
    space = {k: spec["values"] for k, spec in sweep["parameters"].items() if "value" not in spec}
    return [dict(zip(space, combo, strict=True)) for combo in itertools.product(*space.values())]


def agent_args(params: dict[str, Any]) -> list[str]:
    """`--key=value` per parameter, as wandb agent's `${args}` (wandb/sdk/launch/sweeps/utils.py)."""
    return [f"--{key}={value}" for key, value in params.items()]


def command_line(sweep: dict[str, Any], params: dict[str, Any], interpreter: str = sys.executable) -> list[str]:
    """The sweep's `command` with its macros expanded as wandb agent does (${env} needs no binary here)."""
    macros = {"${env}": [], "${interpreter}": [interpreter], "${program}": [sweep["program"]]}
    macros["${args}"] = agent_args(params)
    line = []
    for part in map(str, sweep.get("command", DEFAULT_COMMAND)):
        if part.startswith("${") and part.endswith("}"):
            if part not in macros:
                raise SweepError(f"command macro {part} is not supported offline (use {', '.join(macros)})")
            line += macros[part]
        else:
            line.append(part)
    return line


def trial_params(sweep: dict[str, Any], searched: dict[str, Any]) -> dict[str, Any]:
    """Constants and searched values in the sweep file's order: the parameters a run receives."""
    every = constants(sweep) | searched
    return {k: every[k] for k in sweep["parameters"]}


def run_name(sweep: dict[str, Any], searched: dict[str, Any]) -> str:
    """`sweep-key=value-...` over the searched values; W&B run ids reject `:;,#?/'` so they become `+`.
    Equal parameters give the same name, so a retried trial resumes its run directory."""
    text = "-".join([sweep["name"], *(f"{k}={v}" for k, v in searched.items())])
    return re.sub(r"[^A-Za-z0-9._+=-]", "+", text)


def open_study(sweep: dict[str, Any], folder: Path, seed: int) -> optuna.Study:
    """The sweep's study in folder/study.db, created or loaded, with the sampler of its method."""
    folder.mkdir(parents=True, exist_ok=True)
    goal = sweep["metric"].get("goal", "minimize")  # W&B's default goal
    study = optuna.create_study(
        study_name=sweep["name"],
        storage=f"sqlite:///{folder / 'study.db'}",
        direction="maximize" if goal == "maximize" else "minimize",
        load_if_exists=True,
    )
    # The seed moves on by the trials made so far, so a rerun draws new points instead of the first ones.
    study.sampler = sampler(sweep["method"], seed + len(study.get_trials(deepcopy=False)))
    return study


def sampler(method: str, seed: int) -> optuna.samplers.BaseSampler:
    """Random and TPE search (constant liar: parallel trials do not all sample the same region).
    A grid is queued point by point (`recover`), so the sampler only draws random and bayes trials."""
    if method == "bayes":
        return optuna.samplers.TPESampler(seed=seed, constant_liar=True)
    return optuna.samplers.RandomSampler(seed=seed)


def _key(params: dict[str, Any]) -> str:
    return json.dumps(params, sort_keys=True)


def killed(trial: FrozenTrial) -> bool:
    """A failed trial whose run never returned an exit status (its worker or run was killed)."""
    return trial.state == TrialState.FAIL and "exit_code" not in trial.user_attrs


def recover(study: optuna.Study, sweep: dict[str, Any]) -> int:
    """Prepare a (re)run; returns the number of trials queued.

    Trials left RUNNING by a killed coordinator fail; then a grid queues every point without a COMPLETE
    trial (never tried, failed or killed), and random / bayes search queue the parameters of killed
    trials (a run that failed on its own counts towards `run_cap`, as in W&B).
    """
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study.tell(trial.number, state=TrialState.FAIL)
    trials = study.get_trials(deepcopy=False)
    settled = {_key(t.params) for t in trials if t.state == TrialState.COMPLETE}
    settled |= {_key(t.user_attrs["queued"]) for t in trials if t.state == TrialState.WAITING}  # no params yet
    if sweep["method"] == "grid":
        todo = grid_points(sweep)
    else:
        todo = [t.params for t in trials if killed(t) and len(t.params) == len(search_space(sweep))]
    queued = {_key(p): p for p in todo if _key(p) not in settled}
    for params in queued.values():
        study.enqueue_trial(params, user_attrs={"queued": params})
    return len(queued)


def slots_left(study: optuna.Study, sweep: dict[str, Any], count: int | None, running: int) -> bool:
    """Whether another trial may start: a queued one always; a new random / bayes one below the cap."""
    trials = study.get_trials(deepcopy=False)
    if any(t.state == TrialState.WAITING for t in trials):
        return True
    if sweep["method"] == "grid":
        return False
    cap = count or sweep.get("run_cap")
    if cap is None:
        raise SweepError(f"{sweep['name']}: {sweep['method']} search needs `run_cap` in the file or --count")
    done = sum(t.state == TrialState.COMPLETE or (t.state == TrialState.FAIL and not killed(t)) for t in trials)
    return done + running < cap


def outcome(run_dir: Path, metric: str, returncode: int) -> tuple[TrialState, float | None, str]:
    """(state, value, reason) of a finished run.py process, from its exit status and record.json."""
    path = run_dir / "record.json"
    record = json.loads(path.read_text()) if path.exists() else {}
    status = record.get("status", "no record")
    if returncode != 0 or status != "finished":
        return TrialState.FAIL, None, f"exit {returncode}, status {status}: {record.get('error') or ''}".strip()
    value = record.get("summary", {}).get(metric)
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        return TrialState.FAIL, None, f"finished without a finite {metric} in its summary"
    return TrialState.COMPLETE, float(value), "finished"


def run_study(
    sweep: dict[str, Any], out: Path, workers: int = 1, wandb: str = "offline", count: int | None = None, seed: int = 0
) -> optuna.Study:
    """Run the sweep's trials, at most `workers` run.py processes at a time, until none is left to run.

    Each process gets OMP_NUM_THREADS = cores / workers (unless set) so parallel runs do not fight over
    cores. Interrupting the runner stops its runs; their trials stay RUNNING and are retried on rerun.
    """
    folder = out / group(sweep)
    study = open_study(sweep, folder, seed)
    queued = recover(study, sweep)
    print(f"{sweep['name']}: {queued} queued trial(s); runs and study.db in {folder}", flush=True)
    threads = os.environ.get("OMP_NUM_THREADS") or str(max(1, (os.cpu_count() or 1) // workers))
    env = os.environ | {"OMP_NUM_THREADS": threads}
    running: dict[subprocess.Popen, tuple[optuna.Trial, Path, float]] = {}
    try:
        while True:
            while len(running) < workers and slots_left(study, sweep, count, len(running)):
                trial = study.ask(search_space(sweep))
                proc, run_dir = start(sweep, trial, folder, wandb, env)
                running[proc] = (trial, run_dir, time.time())
            if not running:
                return study
            proc = wait_any(list(running))
            trial, run_dir, started = running.pop(proc)
            finish(study, trial, run_dir, proc.returncode, sweep["metric"]["name"], time.time() - started)
    finally:
        for proc in running:
            proc.terminate()
            proc.wait()


def start(
    sweep: dict[str, Any], trial: optuna.Trial, folder: Path, wandb: str, env: dict[str, str]
) -> tuple[subprocess.Popen, Path]:
    """Launch one run: the agent's command line, then where the run writes and how it logs."""
    searched = {k: trial.params[k] for k in sweep["parameters"] if k in trial.params}
    name = run_name(sweep, searched)
    run_dir = folder / name
    run_dir.mkdir(parents=True, exist_ok=True)
    trial.set_user_attr("name", name)
    line = command_line(sweep, trial_params(sweep, searched))
    line += [f"--run.out={folder}", f"--run.name={name}", f"--run.wandb={wandb}", "--run.progress=false"]
    print(f"start  {name}", flush=True)
    with open(run_dir / "sweep.log", "ab") as log:  # appended: a retry keeps the earlier attempt's output
        return subprocess.Popen(line, stdout=log, stderr=subprocess.STDOUT, env=env), run_dir


def wait_any(procs: list[subprocess.Popen]) -> subprocess.Popen:
    while True:
        for proc in procs:
            if proc.poll() is not None:
                return proc
        time.sleep(0.2)


def finish(
    study: optuna.Study, trial: optuna.Trial, run_dir: Path, returncode: int, metric: str, seconds: float
) -> None:
    """Tell Optuna the run's outcome; a run killed by a signal gets no exit_code (so it counts as killed)."""
    state, value, reason = outcome(run_dir, metric, returncode)
    if returncode >= 0:
        trial.set_user_attr("exit_code", returncode)
    trial.set_user_attr("reason", reason)
    study.tell(trial, value, state=state)
    result = f"{metric}={value:.4f}" if state == TrialState.COMPLETE else f"FAILED ({reason}; see {run_dir}/sweep.log)"
    print(f"finish {run_dir.name}: {result} in {seconds:.0f} s", flush=True)
