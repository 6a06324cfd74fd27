"""Joint end-to-end training: gradient flow, exact resume, non-finite loss, the main job's outputs."""

import copy
import importlib.metadata
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from research.config_parse import from_dict
from research.data.loader import load
from research.torch import checkpoint
from research.torch.model import FusionModel, build_model
from research.torch.predict import to_device
from research.torch.trainer import NonFiniteLoss, make_optimizer, train_and_evaluate


@pytest.mark.parametrize("fusion", ["early", "stack", "cross_attn", "late", "gated"])
def test_every_encoder_parameter_gets_gradient_from_the_fused_loss(tiny, fusion):
    cfg = tiny(f"--fusion={fusion}", "--model.combine=learned")
    splits = load(cfg.data)
    torch.manual_seed(0)
    model = build_model(cfg, len(splits.classes["identity"]), splits.vocab_size, None).train()
    batch = next(splits.train.batches(8, shuffle=True, seed=0, epoch=1, train=True))
    out = model(to_device(batch, torch.device("cpu")))
    assert out["log_probs"].shape == (8, len(splits.classes["identity"]))
    out["loss"].backward()
    for modality, encoder in model.encoders.items():
        for name, p in encoder.named_parameters():
            if p.requires_grad:
                assert p.grad is not None and p.grad.abs().sum() > 0, f"{fusion}: no gradient in {modality}.{name}"


def test_the_fused_optimizer_makes_the_updates_of_torchs_adamw_loop():
    """make_optimizer's fused AdamW against torch's per-tensor loop (foreach=False) over the same groups: the
    same weights after 5 steps of random gradients, decayed matrices and undecayed vectors alike."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.LayerNorm(16), torch.nn.Linear(16, 4))
    twin, start = copy.deepcopy(model), copy.deepcopy(model.state_dict())
    fused = make_optimizer(model, from_dict({"optim": {"weight_decay": 0.5}}))
    twin_of = dict(zip(model.parameters(), twin.parameters(), strict=True))
    loop = torch.optim.AdamW(
        [{**g, "params": [twin_of[p] for p in g["params"]]} for g in fused.param_groups], foreach=False, fused=False
    )
    assert fused.defaults["fused"] and [g["weight_decay"] for g in fused.param_groups] == [0.5, 0.0]
    for _ in range(5):
        for p, q in twin_of.items():
            p.grad = torch.randn_like(p)
            q.grad = p.grad.clone()
        fused.step(), loop.step()
    for name, p in model.state_dict().items():
        torch.testing.assert_close(p, twin.state_dict()[name], rtol=0, atol=1e-6)
        assert (p - start[name]).abs().mean() > 1e-3, name  # the weights moved (by about lr a step)


def test_resume_after_interruption_reproduces_the_uninterrupted_run(tiny):
    whole = tiny("--optim.epochs=3", "--run.name=whole")
    train_and_evaluate(whole, run_dir(whole), "whole")
    parts = tiny("--optim.epochs=3", "--run.name=parts", "--run.stop_after_epoch=1")
    assert train_and_evaluate(parts, run_dir(parts), "parts")["status"] == "interrupted"
    assert record(parts)["status"] == "interrupted"
    parts.run.stop_after_epoch = 0
    train_and_evaluate(parts, run_dir(parts), "parts")
    a, b = record(whole), record(parts)
    assert [h["epoch"] for h in b["history"]] == [1, 2, 3]
    for ha, hb in zip(a["history"], b["history"], strict=True):
        for key in ("train/loss", "val/loss", "val/acc", "lr"):
            assert ha[key] == hb[key], (key, ha, hb)
    assert a["summary"]["test/acc"] == b["summary"]["test/acc"]


def test_patience_stops_the_run_once_validation_has_not_improved_for_that_many_epochs(tiny):
    """optim.lr = 1e-12 on a model without batch statistics (text alone): validation does not change after
    epoch 1, so patience 2 stops after epoch 3 of 6, and the best epoch is the one evaluated."""
    cfg = tiny("--modalities=text", "--optim.lr=1e-12", "--optim.epochs=6", "--optim.patience=2", "--run.name=patient")
    summary = train_and_evaluate(cfg, run_dir(cfg), cfg.run.name)
    history = record(cfg)["history"]
    assert (summary["best_epoch"], summary["last_epoch"], len(history)) == (1, 3, 3)
    assert record(cfg)["status"] == "finished"


def test_non_finite_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tiny, monkeypatch):
    cfg = tiny("--optim.epochs=3", "--run.name=nan")
    real_forward, calls = FusionModel.forward, []
    steps_per_epoch = int(np.ceil(len(load(cfg.data).train) / cfg.data.batch_size))

    def forward(self, batch):
        out = real_forward(self, batch)
        if self.training:
            calls.append(1)
            if len(calls) > steps_per_epoch + 1:  # in the middle of epoch 2
                out["loss"] = out["loss"] * float("nan")
        return out

    monkeypatch.setattr(FusionModel, "forward", forward)
    with pytest.raises(NonFiniteLoss, match="epoch 2") as err:
        train_and_evaluate(cfg, run_dir(cfg), "nan")
    last = run_dir(cfg) / "last.safetensors"
    assert str(last) in str(err.value)
    assert checkpoint.read_meta(last)["epoch"] == 1
    assert all(torch.isfinite(t).all() for t in load_file(str(last)).values() if t.is_floating_point())
    rec = record(cfg)
    assert rec["status"] == "failed" and "non-finite" in rec["error"]


def test_main_job_prints_results_and_leaves_record_checkpoints_and_offline_wandb(tiny, tmp_path, data_root):
    cfg = tiny()
    args = [f"--run.out={cfg.run.out}", f"--data.root={data_root}", "--run.name=main", "--run.wandb=offline"]
    args += ["--run.progress=false", "--data.synthetic.identities=8", "--data.synthetic.samples_per_identity=6"]
    args += ["--data.voice_seconds=0.5", "--model.dim=32", "--optim.epochs=1", "--eval.trials=200"]
    command = [sys.executable, "experiments/run.py", "--fusion=cross_attn", *args]
    out = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    for word in ("results", "test/acc", "val/acc", "params", "wall_time_s", "run files"):
        assert word in out.stdout
    folder = Path(cfg.run.out) / "main"
    rec = json.loads((folder / "record.json").read_text())
    assert rec["status"] == "finished" and rec["config"]["model"]["fusion"] == "cross_attn"
    assert rec["packages"]["torch"] == importlib.metadata.version("torch") and rec["git_commit"]
    assert len(rec["history"]) == 1 and "val/acc" in rec["history"][0]
    assert list((folder / "wandb").glob("offline-run-*/run-*.wandb")), "no offline W&B run directory"
    logged = from_dict(rec["config"])  # the record alone rebuilds the model
    splits = load(logged.data)
    model = build_model(logged, len(splits.classes["identity"]), splits.vocab_size, None)
    assert checkpoint.load(folder / "best.safetensors", model)["epoch"] == 1


def run_dir(cfg):
    return Path(cfg.run.out) / cfg.run.name


def record(cfg):
    return json.loads((run_dir(cfg) / "record.json").read_text())


def test_evaluating_the_saved_checkpoint_reproduces_the_end_of_run_metrics(tiny):
    cfg = tiny("--run.name=evaluated", "--data.split=open", "--data.target=gender", "--eval.as_norm=true")
    summary = train_and_evaluate(cfg, run_dir(cfg), "evaluated")
    assert {"test/acc", "test/eer", "test/min_dcf_0.01", "test/without_face/acc", "test/without_face/eer"} <= set(
        summary
    )
    ablated = json.loads((run_dir(cfg) / "eval" / "test_without_face" / "metrics.json").read_text())
    assert summary["test/without_face/eer"] == ablated["metrics"]["eer"] and ablated["dataset"]["missing"]["face"] == 1
    out = subprocess.run(
        [sys.executable, "experiments/evaluate.py", "--run", str(run_dir(cfg)), "--out", str(run_dir(cfg) / "again")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    again = json.loads((run_dir(cfg) / "again" / "summary.json").read_text())
    recorded = record(cfg)["summary"]
    metrics = [k for k in again if k.startswith(("val/", "test/"))]
    assert len(metrics) > 20
    for key in metrics:
        assert again[key] == pytest.approx(recorded[key], abs=1e-6), key
