"""Published backbone weights through the config (`--model.face_weights`) and the dry run's model card, in both
backends: a torchvision ResNet-18 state dict saved with torch.save (its own .pth format, classifier included) loads
into the torch and the jax backbone alike (the classifier dropped and said so); a file whose keys or shapes do not
match the backbone, or that is not a checkpoint, is a one-line error naming the key and the file (exit 2); the
model card's counts are parameter_report's, equal in both backends."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from encoders.jax import convert  # noqa: E402
from experiments import run  # noqa: E402
from research import backend  # noqa: E402
from research.config import Config  # noqa: E402
from research.config_parse import apply_overrides  # noqa: E402
from research.data.loader import load  # noqa: E402
from research.model_card import model_card  # noqa: E402
from research.restore import restore  # noqa: E402


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[Path, dict[str, torch.Tensor]]:
    """A randomly initialised torchvision ResNet-18, saved as torchvision's .pth files are (classifier included)."""
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None)
    with torch.no_grad():  # BatchNorm statistics that are not the initial 0 / 1, so that loading them shows
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5), m.running_var.uniform_(0.5, 1.5)
    path = tmp_path_factory.mktemp("weights") / "resnet18.pth"
    torch.save(model.state_dict(), path)
    return path, model.state_dict()


def args(tmp_path: Path, data_root: Path, *extra: str) -> list[str]:
    return [
        f"--run.out={tmp_path}", f"--data.root={data_root}", "--run.wandb=disabled", "--run.name=card",
        "--modalities=face", "--model.face=resnet18", "--data.image_size=32", "--model.dim=32",
        "--data.synthetic.identities=8", "--data.synthetic.samples_per_identity=4", "--data.batch_size=8", *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return tmp_path_factory.mktemp("datasets")


@pytest.mark.parametrize("name", ["torch", "jax"])
def test_a_torchvision_file_loads_into_the_backbone_of_either_backend(tmp_path, data_root, reference, name):
    path, state = reference
    cfg = apply_overrides(Config(), [*args(tmp_path, data_root, f"--model.face_weights={path}"), f"--backend={name}"])
    pieces = backend.load(name)
    model, notes = pieces.new_model(cfg, load(cfg.data))
    assert notes == [f"{path}: dropped the ImageNet classifier fc.weight, fc.bias"]
    encoder = model.encoders["face"]
    got = encoder.backbone.state_dict() if name == "torch" else convert.to_torch(encoder.backbone)
    expected = {k: v for k, v in state.items() if not k.startswith("fc.")}
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        np.testing.assert_array_equal(np.asarray(got[key]), value.numpy(), err_msg=key)


def broken(path: Path, state: dict, how: str) -> tuple[Path, str]:
    """A copy of `state` saved after one change, and the key the error must name."""
    state = dict(state)
    if how == "missing":
        del state["layer2.0.conv1.weight"]
        key = "layer2.0.conv1.weight"
    elif how == "unexpected":
        state["layer9.weight"] = torch.zeros(3)
        key = "layer9.weight"
    else:
        state["layer1.0.bn1.weight"] = torch.ones(65)
        key = "layer1.0.bn1.weight"
    out = path.with_name(f"{how}.pth")
    torch.save(state, out)
    return out, key


@pytest.mark.parametrize("how", ["missing", "unexpected", "shape"])
def test_a_file_that_does_not_fit_is_a_one_line_error_naming_the_key_and_the_file(
    tmp_path, data_root, reference, capsys, how
):
    path, key = broken(*reference, how)
    code = run.main([*args(tmp_path, data_root, f"--model.face_weights={path}"), "--run.dry_run=true"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: ") and err.count("\n") == 1 and key in err and str(path) in err


def test_a_pickle_of_anything_but_tensors_is_refused_unread(tmp_path, data_root, capsys):
    path = tmp_path / "evil.pth"
    torch.save({"conv1.weight": torch.zeros(1), "note": Path("x")}, path)  # an object weights_only refuses
    code = run.main([*args(tmp_path, data_root, f"--model.face_weights={path}"), "--run.dry_run=true"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith(f"error: {path}: not a readable checkpoint") and err.count("\n") == 1


def test_the_dry_run_writes_the_model_card_alike_in_both_backends(tmp_path, data_root, capsys):
    cards = {}
    for name in ("torch", "jax"):
        out = tmp_path / name
        assert run.main([*args(out, data_root), f"--backend={name}", "--run.dry_run=true"]) == 0
        cards[name] = json.loads((out / "card" / "model.json").read_text())
        assert "parameters" in capsys.readouterr().out
    assert cards["torch"]["params"] == cards["jax"]["params"]
    params = cards["torch"]["params"]
    assert set(params) == {"face", "voice", "text", "fusion", "heads", "total"}
    assert params["voice"] == params["text"] == 0 and params["face"] > 11_000_000  # ResNet-18 without its fc
    assert params["total"] == params["face"] + params["fusion"] + params["heads"]
    # torch counts every tap of a convolution's kernel; XLA's cost analysis only the taps inside the image, which
    # at 32 x 32 pixels leaves out most of ResNet's 3 x 3 taps on its 2 x 2 and 1 x 1 maps (at 224 the two agree)
    assert (
        0.5 * cards["torch"]["flops_per_sample"] < cards["jax"]["flops_per_sample"] < cards["torch"]["flops_per_sample"]
    )


def test_the_card_counts_are_the_summary_counts(tmp_path, data_root):
    cfg = apply_overrides(Config(), args(tmp_path, data_root))
    pieces = backend.load("torch")
    card, _ = model_card(cfg, pieces)
    model, _ = pieces.new_model(cfg, load(cfg.data))
    report = pieces.parameter_report(model)  # what a run's summary holds, and ablate.py's --params column reads
    assert card["params"]["face"] == report["params/face"] and card["params"]["total"] == report["params"]


@pytest.mark.parametrize("name", ["torch", "jax"])
def test_frozen_published_encoders_keep_the_files_weights_while_the_rest_trains(tmp_path, data_root, reference, name):
    """model.freeze_encoders with a published file: the trained run's face backbone (weights and BatchNorm
    statistics) is the file's, it has no trainable parameters, and the fusion and heads are trained."""
    path, state = reference
    extra = [f"--model.face_weights={path}", "--model.freeze_encoders=true", "--optim.epochs=1", "--run.name=frozen"]
    assert run.main([*args(tmp_path, data_root, *extra), f"--backend={name}", "--eval.plots=false"]) == 0
    summary = json.loads((tmp_path / "frozen" / "record.json").read_text())["summary"]
    assert summary["params/face"] == 0 and summary["params"] > 0
    got = restore(tmp_path / "frozen", "cpu", decoded=False)
    weights = got.backend.torch_state(got.model)
    for key, value in state.items():
        if not key.startswith("fc."):
            np.testing.assert_array_equal(weights[f"encoders.face.backbone.{key}"], value.numpy(), err_msg=key)


def test_freezing_encoders_without_trained_weights_is_a_config_error(tmp_path, data_root, capsys):
    assert run.main([*args(tmp_path, data_root, "--model.freeze_encoders=true"), "--run.dry_run=true"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: model.freeze_encoders needs trained encoders") and err.count("\n") == 1
