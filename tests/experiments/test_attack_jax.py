"""research/jax/attack.py against its torch twin on converted weights (a tiny face + voice model on the
embedded dataset): FGSM and PGD give the same adversarial inputs, stay in budget and range, eps = 0 leaves
the predictions as they are."""

import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

from encoders.jax.convert import to_nnx
from research.config import Config
from research.config_parse import apply_overrides
from research.data.loader import load
from research.jax import attack as jattack
from research.jax import backend as jbackend
from research.jax.distributed import make_mesh
from research.jax.model import build_model as build_jax
from research.jax.predict import predict, to_device
from research.robustness import attack_split
from research.torch import attack as tattack
from research.torch.model import build_model as build_torch

EPS = {"face": 0.1, "voice": 0.05}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    cfg = apply_overrides(Config(), [
        f"--data.root={tmp_path_factory.mktemp('data')}", "--data.synthetic.identities=8",
        "--data.synthetic.samples_per_identity=4", "--data.image_size=16", "--data.voice_seconds=0.25",
        "--data.batch_size=8", "--model.dim=16", "--model.layers=1", "--model.fusion_layers=1",
        "--fusion=early", "--modalities=face,voice",
    ])  # fmt: skip
    splits = load(cfg.data)
    torch.manual_seed(0)
    tmodel = build_torch(cfg, 8, splits.vocab_size, None).eval()
    jmodel = build_jax(cfg, 8, splits.vocab_size, None, rngs=nnx.Rngs(0))
    to_nnx({k: v.numpy() for k, v in tmodel.state_dict().items()}, jmodel)
    jmodel.eval()
    batch = next(iter(splits.test.batches(8, shuffle=False, seed=0, epoch=0, train=False)))
    return cfg, splits, tmodel, jmodel, batch


@pytest.mark.parametrize("modality", ["face", "voice"])
def test_fgsm_and_pgd_match_the_torch_twin(setup, modality):
    cfg, splits, tmodel, jmodel, batch = setup
    mesh = make_mesh()
    tbatch = {k: torch.from_numpy(v) for k, v in batch.items()}
    jbatch = to_device(batch, mesh)
    eps, lo, hi = EPS[modality], *jattack.RANGES[modality]
    pgd_kw = {"eps": eps, "steps": 2, "step_size": eps / 2, "random_start": False}
    for targeted in (False, True):
        labels = (batch["target"] + 3) % 8 if targeted else batch["target"]
        t_labels, j_labels = torch.from_numpy(labels), jnp_int(labels)
        pairs = [
            (tattack.fgsm(tmodel, tbatch, modality, eps=eps, labels=t_labels, targeted=targeted),
             jattack.fgsm(jmodel, jbatch, modality, eps=eps, labels=j_labels, targeted=targeted)),
            (tattack.pgd(tmodel, tbatch, modality, labels=t_labels, targeted=targeted, **pgd_kw),
             jattack.pgd(jmodel, jbatch, modality, labels=j_labels, targeted=targeted, **pgd_kw)),
        ]  # fmt: skip
        for t_adv, j_adv in pairs:
            t_adv, j_adv = t_adv.numpy(), np.asarray(j_adv)
            same = np.isclose(t_adv, j_adv, atol=1e-5)
            assert same.mean() > 0.99  # a gradient sign may flip where the gradient is ~0
            assert np.abs(j_adv - batch[modality]).max() <= eps + 1e-6 and j_adv.min() >= lo and j_adv.max() <= hi


def jnp_int(labels: np.ndarray):
    return jnp.asarray(labels.astype(np.int32))


def test_random_start_pgd_in_budget_and_zero_budget_changes_nothing(setup):
    cfg, splits, tmodel, jmodel, batch = setup
    mesh = make_mesh()
    attack = {
        "name": "pgd",
        "eps": 0.0,
        "targeted": False,
        "steps": 1,
        "step_size": 0.0,
        "random_start": True,
        "seed": 0,
    }
    preds, spent = attack_split(jbackend, jmodel, splits.test, cfg, mesh, "face", attack, 8)
    clean = predict(jmodel, splits.test, cfg, mesh)
    np.testing.assert_array_equal(preds["log_probs"], clean["log_probs"])
    assert spent["linf"].max() == 0
    attack |= {"eps": 0.05, "step_size": 0.02, "steps": 2}
    _, spent = attack_split(jbackend, jmodel, splits.test, cfg, mesh, "face", attack, 8)
    assert 0 < spent["linf"].max() <= 0.05 + 1e-6
