"""Falsifiable fusion properties, measured by short training runs on the embedded dataset.

The `group` label of unseen people (identity-disjoint split, 2 classes) is carried either
- by every modality (redundant): every model, unimodal or fused, should learn it; or
- only by face and voice together (synergy: group = face code XOR voice code, each code uniform and
  independent of the label): a single modality, and late fusion (which combines per-modality decisions),
  has no information and stays at chance, while early and cross-attention fusion, which let face and voice
  tokens interact, can learn it.
Accuracy is averaged over the val and test people (~100 unseen identities): with 2 balanced classes a
chance-level model scores 0.5 with a standard deviation of about 0.05 over people, so "near chance" is
< 0.7 and "learned" is > 0.85. With fewer training people (96) the fused models memorise the people
instead of finding the face x voice rule on most seeds.

The fused models see face and voice only. With text as a third modality (the recipe until 2026-12-01),
cross_attn failed on 3 of 5 batch-order variants (issue 12) and here on 1 of 6 (seed, order) pairs (2 of 5
at batch 32, lr 2e-3): every run sits at chance for 1-3 epochs, and a run learns only once the face stream's
cross-attention turns from the text tokens to the voice tokens. On the batch-32 runs, at init it attends
almost uniformly over its context, voice 0.65 and text 0.33 of the weight (the voice stream: face 0.17, text
0.80); a run that learned ends at voice 0.94, text 0.05, while a failing one ends where it started (0.66)
and has memorised the training people (train accuracy 0.95, val 0.51; mostly by face: 0.73 without it, 0.94
without text). Text carries no information on the label; without it the face stream's context is voice from
the first step, and cross_attn left the plateau in epoch 2 on 4 of the 5 pairs whose curves were read (epoch
3 on the fifth). The redundant task is the control for the models that stay at chance on synergy: it shows
they can learn when a modality they see carries the label. Early and cross_attn, which learn the synergy
task itself, need no such control.

Token-level fusion is asserted over VARIANTS (run.seed, batch order): at least MIN_LEARNED of the 3 must
exceed LEARNED. `nice -n 10 python benchmarks/torch/fusion_properties.py --models cross_attn,early --seeds
0-4 --orders 0-1` measured 10 of 10 for each (accuracy 0.994-1.000; 2026-12-01, shared CPU under load), and
cross_attn learned on 4 more pairs by hand, so at the measured rate the test practically never fails; 10
runs cannot exclude a rate as low as 0.74 (one-sided 95% bound), at which it would fail 17% of the time
(docs/fusion.md, "Fusion properties, measured").

Thread counts and seeds (benchmarks/torch/statistical_margins.py, 2026-12-07): every model gives the same
verdict at 2 and 1 torch threads and with OMP_NUM_THREADS=1 (token-level 1.000, redundant 1.000, at chance
0.481-0.539); the models at chance and their redundant control over seeds 1-3 as well (at chance 0.465-0.555,
redundant 1.000). The smallest margin is text at chance, 0.145 below NEAR_CHANCE.
"""

import contextlib
from pathlib import Path

import pytest

from research.config import Config
from research.config_parse import apply_overrides
from research.data import pipeline
from research.torch.trainer import train_and_evaluate

pytestmark = pytest.mark.statistical
LEARNED, NEAR_CHANCE = 0.85, 0.7
FAST = [
    "--data.target=group",
    "--data.split=open",
    "--data.synthetic.groups=2",
    "--data.synthetic.identities=256",
    "--data.synthetic.samples_per_identity=3",
    "--data.image_size=16",
    "--data.voice_seconds=0.4",
    "--data.batch_size=16",
    "--model.dim=64",
    "--model.layers=1",
    "--model.fusion_layers=1",
    "--optim.epochs=4",
    "--optim.lr=1e-3",
    "--run.wandb=disabled",
    "--run.progress=false",
    "--eval.plots=false",
    "--eval.trials=500",
]
# The fused models see face and voice, the two modalities whose codes make up the synergy label; text (an
# independent code and a transcript that names its person) is tested alone. See the module docstring.
MODELS = {
    "early": ["--fusion=early", "--modalities=face,voice"],
    "cross_attn": ["--fusion=cross_attn", "--modalities=face,voice"],
    "late": ["--fusion=late", "--modalities=face,voice"],
    "face": ["--fusion=early", "--modalities=face"],
    "voice": ["--fusion=early", "--modalities=voice"],
    "text": ["--fusion=early", "--modalities=text"],
}
TOKEN_LEVEL = ("early", "cross_attn")
AT_CHANCE = ("late", "face", "voice", "text")  # on synergy; the redundant task is their control
# The synergy property of token-level fusion is asserted over these (run.seed, batch order) variants: at
# least MIN_LEARNED of them must exceed LEARNED (the rate it is set against is in the module docstring).
VARIANTS = ((0, 0), (1, 1), (2, 2))
MIN_LEARNED = 2


@contextlib.contextmanager
def batch_order(variant: int):
    """Batch-order variant: epoch e reads the permutation the pipeline draws for epoch e + 100 * variant
    (0 = unchanged). Only the order of the training samples changes; crops stay those of epoch e."""
    original = pipeline.order
    pipeline.order = lambda n, *, epoch, **kw: original(n, epoch=epoch + 100 * variant, **kw)
    try:
        yield
    finally:
        pipeline.order = original


def accuracy(run_dir: Path, data_root: Path, carry: str, model: str, seed: int = 0, order: int = 0, extra=()):
    """(val, test) accuracy of `model` trained by the recipe with run.seed `seed` and batch order `order`."""
    args = [*FAST, f"--data.synthetic.carry={carry}", *MODELS[model], f"--run.seed={seed}", *extra]
    cfg = apply_overrides(Config(), [*args, f"--data.root={data_root}", f"--run.out={run_dir}"])
    with batch_order(order):
        summary = train_and_evaluate(cfg, run_dir, model)
    return summary["val/acc"], summary["test/acc"]


def mean_accuracy(run_dir, data_root, carry: str, model: str, seed: int = 0, order: int = 0) -> float:
    val, test = accuracy(run_dir, data_root, carry, model, seed, order)
    return (val + test) / 2


@pytest.mark.parametrize("model", TOKEN_LEVEL)
def test_token_level_fusion_learns_the_synergy_task(tmp_path, data_root, model):
    accs = [mean_accuracy(tmp_path / f"s{s}-o{o}", data_root, "synergy", model, s, o) for s, o in VARIANTS]
    assert sum(acc > LEARNED for acc in accs) >= MIN_LEARNED, f"accuracy of {VARIANTS}: {accs}"


@pytest.mark.parametrize("model", AT_CHANCE)
def test_late_fusion_and_single_modalities_stay_at_chance_on_synergy(tmp_path, data_root, model):
    assert mean_accuracy(tmp_path, data_root, "synergy", model) < NEAR_CHANCE


@pytest.mark.parametrize("model", AT_CHANCE)
def test_the_models_at_chance_learn_the_redundant_task(tmp_path, data_root, model):
    assert mean_accuracy(tmp_path, data_root, "redundant", model) > LEARNED
