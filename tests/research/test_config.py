"""The config schema and the command line: every key reachable, bad input named before any work."""

import subprocess
import sys

import pytest

from research.assembly import head_kwargs
from research.config import Config, ConfigError
from research.config_parse import apply_overrides, from_dict, to_dict


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
        (["--eval.voice_seconds=-1"], ["eval.voice_seconds", ">= 0"]),
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


# The paper's margins (Wen et al. 2022, SphereFace2, and OpenSphere's configs), written here independently.
PAPER_MARGINS = {"C": 0.4, "A": 0.5, "M": 1.7}


@pytest.mark.parametrize("margin_type", ["C", "A", "M"])
def test_sphereface2_margin_follows_the_margin_type_unless_set(margin_type):
    cfg = apply_overrides(Config(), ["--loss=sphereface2", f"--loss.sphereface2.margin_type={margin_type}"])
    assert to_dict(cfg)["loss"]["sphereface2"]["margin"] == PAPER_MARGINS[margin_type]  # in the logged config
    assert head_kwargs(cfg, classes=5)["margin"] == PAPER_MARGINS[margin_type]
    # Set by the user, in either order with the type: kept.
    for args in (
        ["--loss.sphereface2.margin=0.25", f"--loss.sphereface2.margin_type={margin_type}"],
        [f"--loss.sphereface2.margin_type={margin_type}", "--loss.sphereface2.margin=0.25"],
    ):
        assert apply_overrides(Config(), ["--loss=sphereface2", *args]).loss.sphereface2.margin == 0.25
    # `none` asks for the default again; a Config built without the command line gets it from the assembly.
    none = apply_overrides(
        Config(), [f"--loss.sphereface2.margin_type={margin_type}", "--loss.sphereface2.margin=none"]
    )
    assert none.loss.sphereface2.margin == PAPER_MARGINS[margin_type]
    direct = Config()
    direct.loss.name, direct.loss.sphereface2.margin_type = "sphereface2", margin_type
    assert head_kwargs(direct, classes=5)["margin"] == PAPER_MARGINS[margin_type]
    assert from_dict(to_dict(cfg)).loss.sphereface2.margin == PAPER_MARGINS[margin_type]


def test_sphereface2_margin_must_be_a_number_or_none():
    with pytest.raises(ConfigError, match="loss.sphereface2.margin.*expected float"):
        apply_overrides(Config(), ["--loss.sphereface2.margin=wide"])
