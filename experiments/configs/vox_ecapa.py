"""Speaker verification recipe (docs/recipes.md): WeSpeaker's ECAPA_TDNN_GLOB_c512-ASTP-emb192 on VoxCeleb2 dev,
tested on VoxCeleb1-O/E/H; stage 2 is `--config lm:RUN`, as for experiments/configs/vox_resnet34.py.

WeSpeaker's examples/voxceleb/v2/conf/ecapa_tdnn.yaml (commit 655039e) differs from its resnet.yaml only in the
model: ECAPA_TDNN_GLOB_c512, embed_dim 192, ASTP pooling -> `model.voice=ecapa_c512`, `model.dim=192` (ASTP is the
backbone's own pooling, docs/encoders.md). Every other value (ArcFace scale 32 and margin 0.2, 2 s crops, batch
128, 150 epochs, 6 warm-up epochs, aug_prob 0.6, speed perturbation, no SpecAugment, num_avg 10) and what this
codebase cannot express (SGD and its exponential schedule, the margin schedule, the length filter) are as
vox_resnet34.py says. Its LM config (ecapa_tdnn_lm.yaml) changes the same values as resnet_lm.yaml, so lm.py
applies unchanged. `--model.voice=ecapa_c1024` is WeSpeaker's larger variant (the same config otherwise).
"""

from experiments.configs.vox_resnet34 import wespeaker
from research.config import Config


def get_config() -> Config:
    return wespeaker("ecapa_c512", dim=192)
