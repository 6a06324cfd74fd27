"""The published backbones train end to end in both backends: a short run on the embedded dataset at 112 x 112
with iresnet18 + ecapa_c512 (80-bin fbank) + MiniLM and cross-attention fusion, and one with vit_s16, finish and
report (record finished, test metrics present, the card's parameter count in the summary). Every fusion module
takes any encoder's EncoderOutput (tests/fusion); docs/encoders.md records a run of every fusion with these
backbones in both backends, with its command.
"""

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from experiments import run  # noqa: E402

TRIO = [
    "--modalities=face,voice,text", "--model.face=iresnet18", "--model.voice=ecapa_c512", "--model.text=text_hf",
    "--data.image_size=112", "--model.frontend=fbank80", "--fusion=cross_attn",
]  # fmt: skip
VIT = ["--modalities=face", "--model.face=vit_s16", "--data.image_size=112", "--fusion=late"]
TINY = [
    "--run.wandb=disabled", "--run.progress=false", "--data.synthetic.identities=8",
    "--data.synthetic.samples_per_identity=4", "--data.voice_seconds=0.5", "--data.batch_size=8", "--model.dim=32",
    "--model.fusion_layers=1", "--optim.epochs=1", "--eval.plots=false", "--eval.trials=100",
]  # fmt: skip


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return tmp_path_factory.mktemp("datasets")


@pytest.fixture(scope="module")
def torch_card(tmp_path_factory, data_root):
    """model args -> the parameter count of torch's model card (a dry run: built, not trained), once per model."""
    totals = {}

    def total(model: list[str]) -> int:
        if tuple(model) not in totals:
            out = tmp_path_factory.mktemp("card")
            base = [f"--run.out={out}", f"--data.root={data_root}", "--backend=torch", "--run.name=card", *TINY]
            assert run.main([*base, *model, "--run.dry_run=true"]) == 0
            totals[tuple(model)] = json.loads((out / "card" / "model.json").read_text())["params"]["total"]
        return totals[tuple(model)]

    return total


@pytest.mark.slow
@pytest.mark.parametrize(
    ("backend", "model"), [("torch", TRIO), ("jax", TRIO), ("torch", VIT)], ids=["torch-trio", "jax-trio", "torch-vit"]
)
def test_a_backbone_model_trains_and_reports(tmp_path, data_root, torch_card, backend, model):
    """The run finishes with test metrics; its parameter count (the summary's) is the torch card's, so the jax twin
    has torch's parameters (the jax card itself is checked in tests/experiments/test_pretrained_weights_torch.py)."""
    args = [f"--run.out={tmp_path}", f"--data.root={data_root}", f"--backend={backend}", "--run.name=r", *TINY, *model]
    assert run.main(args) == 0
    record = json.loads((tmp_path / "r" / "record.json").read_text())
    assert record["status"] == "finished"
    assert {"test/acc", "val/acc", "params"} <= set(record["summary"])
    assert record["summary"]["params"] == torch_card(model)
