"""Face-voice matching recipe (docs/recipes.md): the FAME challenge's cross-modal verification (is this face the
person of this voice?) on unseen people, trained and tested on VoxCeleb1 voices with VGGFace faces.

    python experiments/run.py --config fame_match --dataset data/vox1_faces.csv --run.name=fame_match

The task, split and metric are FAME's (mavceleb/mavceleb_baseline README, commit e2b4cb1): test identities
disjoint from training, scored by the EER of face-voice pairs (`test/crossmodal/eer`; FAME's overall score is
the mean of four EERs over heard and unheard languages, which needs MAV-Celeb's language splits: VoxCeleb1 has
one). The training values follow its FOP baseline (main.py, same commit): dim_embed 128 -> `model.dim=128`,
batch_size 32, epochs 50; its loss is cross-entropy on identities plus alpha 1 x the orthogonal projection loss
-> softmax identity heads with `loss.identity_weight=1` beside the cross-modal InfoNCE of experiments/configs/
match.py (the orthogonal projection loss itself is not in this codebase). FOP's encoders are VGGFace (a VGG-16,
fc7 4096-d) and the utterance-level aggregator (thin ResNet34 + GhostVLAD, 512-d), both frozen (features
extracted once): the nearest here are `model.face=vgg16` at 224 px (torchvision's layout, fc7 the embedding)
and `model.voice=resnet34_speaker` with fbank80, trained end to end (a published file through
`model.face_weights` / `voice_weights`, docs/encoders.md). FOP's Adam (lr 1e-2, weight decay 0.01) trains two
projection layers on frozen features, not whole encoders: `optim.lr` stays the schema's.
"""

from experiments.configs import match
from research.config import Config

DIM = 128  # dim_embed
BATCH = 32  # batch_size
EPOCHS = 50  # epochs
IDENTITY_WEIGHT = 1.0  # alpha: the identity cross-entropy and the pair loss weighted 1 : 1


def get_config() -> Config:
    cfg = match.get_config()
    cfg.model.dim = DIM
    cfg.model.face, cfg.data.image_size = "vgg16", 224
    cfg.model.voice, cfg.model.frontend = "resnet34_speaker", "fbank80"
    cfg.loss.identity_weight = IDENTITY_WEIGHT
    cfg.data.batch_size, cfg.optim.epochs = BATCH, EPOCHS
    return cfg
