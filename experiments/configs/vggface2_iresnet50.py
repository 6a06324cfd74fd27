"""Face recognition recipe (docs/recipes.md): insightface's ArcFace iResNet-50 trained on VGGFace2, verified on
VGGFace2's test identities.

    python experiments/run.py --config vggface2_iresnet50 --dataset data/vggface2.csv --run.name=vggface2_iresnet50

insightface's recognition/arcface_torch has no VGGFace2 config; the values are its ms1mv3_r50.py and base.py
(commit ab27f4d6) and train_v2.py, the same code its model zoo's "IResNet-50, VGG2" row was trained with:

- network r50, embedding_size 512 -> `model.face=iresnet50`, `model.dim=512`; 112 x 112 inputs (dataset.py)
  -> `data.image_size=112`;
- margin_list (1.0, 0.5, 0.0) with CombinedMarginLoss(64, ...) (train_v2.py) -> `loss.name=arcface`,
  `loss.arcface.scale=64`, `margin=0.5`;
- batch_size 128 (per GPU), num_epoch 20, warmup_epoch 0 -> `data.batch_size=128`, `optim.epochs=20`,
  `optim.warmup_epochs=0`;
- the optimizer: base.py's AdamW setting (lr 0.001, weight_decay 0.1, commented there beside the default SGD
  lr 0.1, momentum 0.9, weight_decay 5e-4), since AdamW is this codebase's optimizer -> `optim.lr=1e-3`,
  `optim.weight_decay=0.1`;
- RandomHorizontalFlip (dataset.py) -> `data.augment.flip_prob=0.5`.

What this codebase cannot express, kept as it is: the polynomial (linear) decay of PolynomialLRWarmup (here
cosine), fp16 (`--optim.bf16=true` is the nearest on a GPU), Partial FC (`loss.shard_centres` with
`loss.sample_rate` is the sharded equivalent, sample_rate 1.0 as ms1mv3_r50), and the inputs: insightface trains
on faces aligned to five landmarks, the adapter crops VGGFace2's loose boxes (research/data/datasets/vggface2.py).
Its loss caps each sample's cross-entropy at -log(1e-30), ours does not (docs/evaluation.md).
"""

from research.config import Config

IMAGE_SIZE = 112  # dataset.py: 112 x 112 aligned faces
DIM = 512  # embedding_size
SCALE, MARGIN = 64.0, 0.5  # CombinedMarginLoss(64, 1.0, 0.5, 0.0): ArcFace
BATCH = 128  # batch_size
EPOCHS = 20  # num_epoch (ms1mv3_r50.py)
LR, WEIGHT_DECAY = 1e-3, 0.1  # base.py, "For AdamW"
FLIP_PROB = 0.5  # transforms.RandomHorizontalFlip()


def get_config() -> Config:
    cfg = Config()
    cfg.model.modalities = ("face",)
    cfg.model.fusion = "late"
    cfg.model.face, cfg.model.dim = "iresnet50", DIM
    cfg.loss.name = "arcface"
    cfg.loss.arcface.scale, cfg.loss.arcface.margin = SCALE, MARGIN
    cfg.data.split = "open"
    cfg.data.image_size, cfg.data.batch_size = IMAGE_SIZE, BATCH
    cfg.data.augment.flip_prob = FLIP_PROB
    cfg.optim.epochs, cfg.optim.warmup_epochs = EPOCHS, 0.0
    cfg.optim.lr, cfg.optim.weight_decay = LR, WEIGHT_DECAY
    return cfg
