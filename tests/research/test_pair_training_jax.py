"""Pair and cross-modal training with --backend jax: the match model's loss (cross-modal InfoNCE + identity
heads), embeddings and log-probabilities equal torch's on converted weights; one jax Siamese run (contrastive,
P x K batches) end to end, its test EER and pair accuracy recomputed from the best checkpoint's embeddings
with scikit-learn; a run on its frozen encoders (model.init_from) keeps them bit for bit."""

import csv
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx
from safetensors.numpy import load_file
from sklearn.metrics import roc_curve

from encoders.jax.convert import to_nnx
from research.config import Config
from research.config_parse import apply_overrides
from research.data.loader import load
from research.jax import checkpoint
from research.jax.distributed import make_mesh
from research.jax.model import build_model as build_jax
from research.jax.predict import predict
from research.jax.trainer import train_and_evaluate
from research.torch.model import build_model as build_torch
from research.torch.predict import to_device

TINY = [
    "--run.wandb=disabled",
    "--run.progress=false",
    "--data.synthetic.identities=12",
    "--data.synthetic.samples_per_identity=6",
    "--data.voice_seconds=0.5",
    "--data.batch_size=8",
    "--data.split=open",
    "--model.dim=32",
    "--model.layers=1",
    "--optim.epochs=3",
    "--eval.plots=false",
    "--eval.trials=200",
]
SIAMESE = ["--loss=contrastive", "--modalities=voice", "--fusion=late"]
SIAMESE += ["--data.sampler=pk", "--data.pk_identities=4", "--data.pk_samples=2"]
MATCH = ["--task=match", "--loss=cross_modal", "--modalities=face,voice", "--fusion=late", "--loss.identity_weight=0.5"]


def config(data_root, *args: str) -> Config:
    return apply_overrides(Config(), [*TINY, f"--data.root={data_root}", *args])


def test_match_model_loss_and_embeddings_equal_torch_on_converted_weights(data_root):
    cfg = config(data_root, *MATCH)
    splits = load(cfg.data)
    classes = len(splits.classes["identity"])
    batch = next(iter(splits.train.batches(8, shuffle=True, seed=0, epoch=1, train=True)))
    torch.manual_seed(0)
    tmodel = build_torch(cfg, classes, splits.vocab_size, None).eval()
    jmodel = build_jax(cfg, classes, splits.vocab_size, None, rngs=nnx.Rngs(0))
    to_nnx({k: v.numpy() for k, v in tmodel.state_dict().items()}, jmodel)
    jmodel.eval()
    with torch.no_grad():
        expected = tmodel(to_device(batch, torch.device("cpu")))
    got = jmodel({k: jnp.asarray(v) for k, v in batch.items()})
    assert float(expected["loss"]) > 0
    np.testing.assert_allclose(float(got["loss"]), float(expected["loss"]), rtol=2e-4)
    np.testing.assert_allclose(np.asarray(got["embedding"]), expected["embedding"].numpy(), atol=2e-4)
    np.testing.assert_allclose(np.asarray(got["log_probs"]), expected["log_probs"].numpy(), atol=2e-4)  # identity heads


@pytest.fixture(scope="module")
def siamese(tmp_path_factory, data_root):
    return train_siamese(tmp_path_factory.mktemp("jax_pair_runs"), data_root)


def train_siamese(out, data_root, seed: int = 0) -> tuple:
    """The jax Siamese run with run.seed `seed`: (config, run folder, summary, history)."""
    cfg = config(data_root, f"--run.out={out}", "--run.backend=jax", *SIAMESE, f"--run.seed={seed}")
    summary = train_and_evaluate(cfg, out / "siamese", "siamese")
    return cfg, out / "siamese", summary, json.loads((out / "siamese/record.json").read_text())["history"]


@pytest.mark.statistical
def test_siamese_run_reports_the_eer_of_its_embeddings(siamese):
    """The training loss falls over the run. Measured drop (benchmarks/torch/statistical_margins.py --checks
    siamese_jax): 0.0694 at run.seed 0 with XLA's default threads, multi-threaded Eigen off, OMP_NUM_THREADS=1
    and fast math off alike; 0.057-0.073 over seeds 1-3."""
    cfg, run_dir, summary, history = siamese
    assert history[-1]["train/loss"] < history[0]["train/loss"]
    assert summary["selection"] == "val/eer" and summary["params/heads"] == 0
    splits = load(cfg.data)
    model = build_jax(cfg, len(splits.classes["identity"]), splits.vocab_size, None, rngs=nnx.Rngs(0))
    template = {"params": nnx.state(model, nnx.Param), "variables": nnx.split(model, nnx.Param, nnx.RngState, ...)[3]}
    best, _ = checkpoint.load(run_dir / "best.safetensors", template)
    nnx.update(model, best["params"], best["variables"])
    preds = predict(model, splits.test, cfg, make_mesh())
    assert "log_probs" not in preds
    with (run_dir / "eval/test/trials.csv").open() as f:
        rows = list(csv.DictReader(f))
    i, j = (np.array([int(r[k]) for r in rows]) for k in ("i", "j"))
    target = np.array([r["target"] == "1" for r in rows])
    emb = preds["embedding"] / np.linalg.norm(preds["embedding"], axis=1, keepdims=True)
    scores = (emb[i] * emb[j]).sum(axis=1)
    fpr, tpr, _ = roc_curve(target, scores, drop_intermediate=False)
    k = int(np.argmax(1 - tpr <= fpr))
    d0, d1 = (1 - tpr[k - 1]) - fpr[k - 1], (1 - tpr[k]) - fpr[k]
    assert abs(summary["test/eer"] - (fpr[k - 1] + d0 / (d0 - d1) * (fpr[k] - fpr[k - 1]))) < 1e-6
    assert abs(summary["test/pair_acc"] - np.mean((scores >= summary["val/threshold"]) == target)) < 1e-9


def test_init_from_a_run_with_frozen_encoders_keeps_them_as_buffers(siamese, tmp_path, data_root):
    source_dir = siamese[1]
    frozen = [f"--model.init_from={source_dir}", "--model.freeze_encoders=true", "--optim.epochs=1"]
    cfg = config(data_root, f"--run.out={tmp_path}", "--run.backend=jax", *SIAMESE, *frozen)
    summary = train_and_evaluate(cfg, tmp_path / "frozen", "frozen")

    def encoder_arrays(path):  # "['params']['encoders']..." or "['variables']['encoders']..." -> the rest
        arrays = load_file(str(path))
        return {k.split("]", 1)[1]: v for k, v in arrays.items() if k.split("]", 1)[1].startswith("['encoders']")}

    source, trained = (
        encoder_arrays(source_dir / "best.safetensors"),
        encoder_arrays(tmp_path / "frozen/best.safetensors"),
    )
    assert source.keys() == trained.keys() and any("var" in k for k in source), "BatchNorm statistics too"
    for key in source:
        assert np.array_equal(trained[key], source[key]), key
    params = load_file(str(tmp_path / "frozen/best.safetensors"))
    assert not any(k.startswith("['params']['encoders']") for k in params), "frozen encoders are no Params"
    assert summary["params/voice"] == 0 and summary["params/fusion"] > 0
    splits = load(cfg.data)
    rngs = nnx.Rngs(params=cfg.run.seed, dropout=cfg.run.seed, augment=cfg.run.seed)  # as the trainer's
    initial = build_jax(cfg, len(splits.classes["identity"]), splits.vocab_size, None, rngs=rngs)
    flat = jax.tree_util.tree_flatten_with_path({"params": nnx.state(initial, nnx.Param)})[0]
    start = {jax.tree_util.keystr(p): np.asarray(v) for p, v in flat}  # keyed as checkpoint.save keys them
    fusion = [k for k in start if k.startswith("['params']['fusion']")]
    assert fusion and start.keys() == {k for k in params if k.startswith("['params']")}
    assert any(not np.array_equal(params[k], start[k]) for k in fusion)
