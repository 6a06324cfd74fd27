"""Sweep files: W&B's own argument formatting, the parameter specs, and the shipped studies against the
real config schema (every grid point a valid run.py command line, preset included, without running it)."""

import json
import math
from pathlib import Path

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState
from wandb.sdk.launch.sweeps.utils import create_sweep_command_args

from experiments import run
from research import sweeps
from research.config import Config
from research.config_parse import apply_overrides, flatten, to_dict

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = sorted((ROOT / "experiments" / "sweeps").glob("*.yaml"))


def test_arguments_are_formatted_as_wandb_agent_formats_them():
    params = {"model.modalities": "face,voice", "eval.plots": False, "optim.lr": 1e-05, "run.seed": 2, "x": None}
    expected = create_sweep_command_args({"args": {k: {"value": v} for k, v in params.items()}})["args"]
    assert sweeps.agent_args(params) == expected
    assert expected[:3] == ["--model.modalities=face,voice", "--eval.plots=False", "--optim.lr=1e-05"]


def test_command_macros_expand_like_the_agent_and_unknown_ones_are_refused():
    sweep = {"program": "experiments/run.py"}
    assert sweeps.command_line(sweep, {"a": 1}, "py") == ["py", "experiments/run.py", "--a=1"]
    sweep["command"] = ["${env}", "${interpreter}", "-u", "${program}", "--config=synergy", "${args}"]
    assert sweeps.command_line(sweep, {"a": 1}, "py") == ["py", "-u", "experiments/run.py", "--config=synergy", "--a=1"]
    sweep["command"] = ["${interpreter}", "${program}", "${args_json}"]
    with pytest.raises(sweeps.SweepError, match="args_json"):
        sweeps.command_line(sweep, {"a": 1})


def test_parameter_specs_map_to_optuna_distributions():
    d = sweeps.distribution
    assert d("a", {"values": ["x", "y"]}) == CategoricalDistribution(["x", "y"])
    assert d("a", {"min": 1, "max": 4}) == IntDistribution(1, 4)  # W&B: integer bounds = int_uniform
    assert d("a", {"min": 0.0, "max": 1}) == FloatDistribution(0.0, 1.0)
    assert d("a", {"distribution": "log_uniform_values", "min": 1e-4, "max": 1e-2}) == FloatDistribution(
        1e-4, 1e-2, log=True
    )
    assert d("a", {"distribution": "q_uniform", "min": 0, "max": 1, "q": 0.25}) == FloatDistribution(0, 1, step=0.25)
    with pytest.raises(sweeps.SweepError, match="log_uniform"):
        d("a", {"distribution": "log_uniform", "min": -9, "max": -2})  # W&B's exponent form: not offline


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"method": "hyperband"}, "method"),
        ({"parameters": {"m": {"values": [["face", "voice"]]}}}, "comma strings"),
        ({"metric": {}}, "metric"),
        ({"parameters": {"lr": {"min": 0.1, "max": 1.0}}}, "grid sweep takes"),
    ],
)
def test_a_sweep_file_the_runner_cannot_run_is_refused_with_the_reason(tmp_path, spec, message):
    base = {"program": "p.py", "method": "grid", "metric": {"name": "val/acc"}, "parameters": {"a": {"value": 1}}}
    path = tmp_path / "s.yaml"
    path.write_text(json.dumps(base | spec))  # JSON is YAML
    with pytest.raises(sweeps.SweepError, match=message):
        sweeps.load_sweep(path)


def test_run_names_are_valid_wandb_ids_and_the_same_for_the_same_parameters():
    sweep = {"name": "s"}
    name = sweeps.run_name(sweep, {"model.modalities": "face,voice", "run.seed": 1})
    assert name == "s-model.modalities=face+voice-run.seed=1"
    assert not set(":;,#?/'") & set(name)
    assert sweeps.run_name(sweep, {"model.modalities": "face,text"}) != sweeps.run_name(
        sweep, {"model.modalities": "face"}
    )


@pytest.mark.parametrize(
    "returncode, record, expected",
    [
        (0, {"status": "finished", "summary": {"val/acc": 0.5}}, (TrialState.COMPLETE, 0.5)),
        (0, {"status": "finished", "summary": {"val/acc": math.nan}}, (TrialState.FAIL, None)),
        (0, {"status": "finished", "summary": {}}, (TrialState.FAIL, None)),
        (0, {"status": "interrupted", "summary": {"val/acc": 0.5}}, (TrialState.FAIL, None)),
        (1, {"status": "failed", "summary": {}}, (TrialState.FAIL, None)),
        (-9, None, (TrialState.FAIL, None)),
    ],
)
def test_a_trial_completes_only_with_a_finished_record_and_a_finite_metric(tmp_path, returncode, record, expected):
    if record is not None:
        (tmp_path / "record.json").write_text(json.dumps(record))
    assert sweeps.outcome(tmp_path, "val/acc", returncode)[:2] == expected


def sampled_points(sweep: dict) -> list[dict]:
    if sweep["method"] == "grid":
        return sweeps.grid_points(sweep)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    return [study.ask(sweeps.search_space(sweep)).params for _ in range(20)]


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_every_shipped_sweep_point_is_a_valid_run_py_command_line(path):
    sweep = sweeps.load_sweep(path)
    assert sweep["program"] == "experiments/run.py" and (ROOT / sweep["program"]).exists()
    assert "${args}" in sweep["command"]
    metric = {"name": "val/acc", "goal": "maximize"}  # closed set; open-set studies select by EER
    assert sweep["metric"] in (metric, {"name": "val/eer", "goal": "minimize"})
    constants = sweeps.constants(sweep)
    assert constants["run.group"] == sweeps.group(sweep) and sweeps.group(sweep) in constants["run.tags"]
    for point in sampled_points(sweep):
        cfg = point_config(sweep, point)  # raises ConfigError on an unknown preset, key or value
        assert cfg.run.group == sweeps.group(sweep)


def point_config(sweep: dict, point: dict) -> Config:
    """The config run.py builds for one point: the agent's command line after the program (a `--config=NAME`
    preset first, where the file's command has one), parsed by run.py's own parser."""
    line = sweeps.command_line(sweep, sweeps.trial_params(sweep, point), "python")
    return run.parse(line[line.index(sweep["program"]) + 1 :])


def study_configs(*names: str) -> list[Config]:
    """Every grid point's config of the named shipped sweep files."""
    found = []
    for name in names:
        sweep = sweeps.load_sweep(ROOT / "experiments" / "sweeps" / f"{name}.yaml")
        found += [point_config(sweep, p) for p in sampled_points(sweep)]
    return found


def test_the_fusion_modality_study_runs_every_subset_and_unimodal_rows_once():
    points = []
    for name in ("unimodal", "fusion_modality"):
        sweep = sweeps.load_sweep(ROOT / "experiments" / "sweeps" / f"{name}.yaml")
        points += [
            apply_overrides(Config(), sweeps.agent_args(sweeps.trial_params(sweep, p))) for p in sampled_points(sweep)
        ]
    cells = {(tuple(sorted(c.model.modalities)), c.model.fusion) for c in points}
    subsets = {m for m, _ in cells}
    assert len(subsets) == 7 and len(points) == 3 * len(cells)  # 3 seeds of every cell
    assert {f for m, f in cells if len(m) == 1} == {"late"}
    assert {f for m, f in cells if len(m) > 1} == {"late", "early", "cross_attn"}
    assert len(points) == 45


def test_the_age_study_trains_class_weighted_age_models_on_each_modality_and_all_three():
    configs = study_configs("age_group")
    assert {(c.data.target, c.loss.class_weights, c.data.split) for c in configs} == {("age", "balanced", "closed")}
    cells = sorted(tuple(sorted(c.model.modalities)) for c in configs)
    assert cells == sorted(5 * [("face",), ("voice",), ("text",), ("face", "text", "voice")])
    assert {c.run.seed for c in configs} == {0, 1, 2, 3, 4}


def test_the_face_voice_study_has_every_row_the_issue_lists_once_per_seed():
    configs = study_configs("face_voice_unimodal", "face_voice", "face_voice_features")
    assert {c.run.group for c in configs} == {"face_voice"} and {c.data.target for c in configs} == {"identity"}
    rows = [(tuple(sorted(c.model.modalities)), c.model.fusion, c.model.combine_features, c.run.seed) for c in configs]
    assert len(set(rows)) == len(rows) == 5 * 8
    face_voice = ("face", "voice")
    expected = {((m,), "late", "concat") for m in face_voice}  # the unimodal rows and the ensemble's members
    expected |= {(face_voice, f, "concat") for f in ("late", "stack", "cross_attn")}
    expected |= {(face_voice, "concat", c) for c in ("add", "mul", "concat")}
    assert {row[:3] for row in rows} == expected
    budgets = {repr((c.data, c.optim, c.model.layers, c.model.fusion_layers, c.eval)) for c in configs}
    assert len(budgets) == 1  # the same data and budget in the three files: one table


def test_the_margin_study_trains_every_margin_head_on_gated_fusion():
    configs = study_configs("margin_gated")
    assert {c.model.fusion for c in configs} == {"gated"}
    assert sorted({c.loss.name for c in configs}) == sorted(
        ["softmax", "sphereface", "sphereface_r", "sphereface2", "cosface", "arcface", "mask_proxy"]
    )
    assert len(configs) == 7 * 5


def test_the_siamese_study_compares_the_contrastive_loss_with_class_heads_on_unseen_speakers():
    configs = study_configs("siamese")
    assert {(c.model.modalities, c.data.split, c.data.sampler) for c in configs} == {(("voice",), "open", "pk")}
    assert {c.loss.name for c in configs} == {"contrastive", "softmax", "cosface", "arcface", "sphereface2"}
    assert {c.data.pk_identities * c.data.pk_samples for c in configs} == {configs[0].data.batch_size}
    assert len(configs) == 5 * 5


def test_the_match_study_crosses_the_cross_modal_loss_with_identity_heads_on_unseen_people():
    configs = study_configs("match")
    assert {(c.model.task, c.model.modalities, c.data.split, c.loss.name) for c in configs} == {
        ("match", ("face", "voice"), "open", "cross_modal")
    }
    rows = {(c.loss.cross_modal.kind, c.loss.identity_weight, c.run.seed) for c in configs}
    assert rows == {(k, w, s) for k in ("infonce", "sigmoid") for w in (0.0, 1.0) for s in range(5)}


def test_the_open_set_margin_study_trains_every_head_to_convergence_at_two_speaker_counts():
    configs = study_configs("margin_open")
    assert {(c.model.modalities, c.data.split, c.data.sampler) for c in configs} == {(("voice",), "open", "random")}
    assert {(c.optim.patience, c.optim.epochs) for c in configs} == {(5, 40)}
    heads = ("softmax", "sphereface", "sphereface_r", "sphereface2", "cosface", "arcface")
    rows = {(c.loss.name, c.data.synthetic.identities, c.run.seed) for c in configs}
    assert rows == {(h, n, s) for h in heads for n in (32, 96) for s in range(5)} and len(configs) == len(rows)


STUDY_RUNS = ROOT / "docs" / "studies" / "runs"


@pytest.mark.parametrize("group", sorted(p.name for p in STUDY_RUNS.iterdir()), ids=str)
def test_the_committed_study_records_are_the_shipped_sweep_files_runs(group):
    """docs/studies.md's tables regenerate from docs/studies/runs/GROUP/: every grid point of the group's
    shipped sweep files has a finished record there, trained with exactly the file's configuration (data,
    model, loss, optimiser, evaluation and seed), so the budgets the docs state are the files' budgets."""
    files = [s for s in map(sweeps.load_sweep, SHIPPED) if sweeps.group(s) == group]
    assert files, f"no shipped sweep file has run.group={group}"
    default = flatten(to_dict(Config()))
    for sweep in files:
        for point in sweeps.grid_points(sweep):
            path = STUDY_RUNS / group / sweeps.run_name(sweep, point) / "record.json"
            record = json.loads(path.read_text())
            assert record["status"] == "finished", path
            trained = flatten(record["config"])
            expected = flatten(json.loads(json.dumps(to_dict(point_config(sweep, point)))))  # tuples as JSON lists
            for key, value in expected.items():
                if key.split(".")[0] in ("data", "model", "loss", "optim", "eval") or key == "run.seed":
                    # a field added after the run was recorded is checked to be at its default
                    assert trained.get(key, default[key]) == value, (path, key)
