"""The config schema and the command line: every key reachable, bad input named before any work."""

import subprocess
import sys

import pytest

from research.config import Config, ConfigError, apply_overrides, from_dict, to_dict


def test_short_flags_and_dotted_overrides_in_both_forms():
    cfg = apply_overrides(Config(), ["--fusion=late", "--optim.lr", "3e-4", "--modalities=face,voice", "--seed=3"])
    assert cfg.model.fusion == "late"
    assert cfg.optim.lr == pytest.approx(3e-4)
    assert cfg.model.modalities == ("face", "voice")
    assert cfg.run.seed == 3


def test_nested_sections_and_bool_parsing():
    cfg = apply_overrides(Config(), ["--data.synthetic.carry=synergy", "--optim.bf16=true", "--model.spec_augment=0"])
    assert cfg.data.synthetic.carry == "synergy"
    assert cfg.optim.bf16 is True
    assert cfg.model.spec_augment is False


@pytest.mark.parametrize(
    "args, words",
    [
        (["--fusion=foo"], ["model.fusion", "early", "cross_attn", "late"]),
        (["--optim.lrr=1"], ["optim.lrr"]),
        (["--optim.epochs=two"], ["optim.epochs", "int"]),
        (["--optim.epochs=1.5"], ["optim.epochs"]),
        (["--modalities=face,smell"], ["model.modalities", "smell"]),
        (["--modalities="], ["model.modalities"]),
        (["--optim.bf16=maybe"], ["optim.bf16"]),
        (["--data"], ["data"]),
        (["--data=3"], ["data"]),
        (["positional"], ["positional"]),
        (["--model.dim=30", "--model.heads=4"], ["model.dim", "model.heads"]),
    ],
)
def test_bad_keys_and_values_name_the_culprit(args, words):
    with pytest.raises(ConfigError) as err:
        apply_overrides(Config(), args)
    for word in words:
        assert word in str(err.value)


def test_round_trip_through_a_plain_dict():
    cfg = apply_overrides(Config(), ["--fusion=gated", "--run.tags=a,b", "--data.synthetic.noise=0.5"])
    assert from_dict(to_dict(cfg)) == cfg


def test_run_py_rejects_a_bad_value_before_any_work(tmp_path):
    out = subprocess.run(
        [sys.executable, "experiments/run.py", "--fusion=nope", f"--run.out={tmp_path}"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2
    assert "model.fusion" in out.stderr and "cross_attn" in out.stderr
    assert not any(tmp_path.iterdir())
