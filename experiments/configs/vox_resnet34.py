"""Speaker verification recipe (docs/recipes.md): WeSpeaker's ResNet34-TSTP-emb256 on VoxCeleb2 dev, tested on
VoxCeleb1-O/E/H; stage 2 is `--config lm:RUN` (experiments/configs/lm.py), scoring is experiments/score.py.

    python experiments/run.py --config vox_resnet34 --dataset data/vox2_vox1.csv \
        --data.augment.musan=$MUSAN --data.augment.rirs=$RIRS --run.name=vox_resnet34

The values are WeSpeaker's examples/voxceleb/v2/conf/resnet.yaml (commit 3573020; unchanged in every value used
here since 0ae719f, which lm.py cites):

- model: ResNet34, embed_dim 256, TSTP pooling, feat_dim 80 -> `model.voice=resnet34_speaker`, `model.dim=256`,
  `model.frontend=fbank80` (num_mel_bins 80, frame_shift 10, frame_length 25; our fbank has no dither, WeSpeaker
  trains with dither 1.0: encoders/torch/frontend.py);
- head: projection_args arc_margin, scale 32.0, easy_margin False; margin_update final_margin 0.2 ->
  `loss.name=arcface`, `loss.arcface.scale=32`, `margin=0.2`;
- crops: num_frms 200 at 10 ms -> `data.voice_seconds=2`; batch_size 128; num_epochs 150; warm_up_epoch 6;
- augmentation: aug_prob 0.6, reverb or noise at random -> `data.augment.noise_prob = reverb_prob = 0.3`
  (research/config.py AugmentConfig); speed_perturb True (0.9 / 1.0 / 1.1 uniformly, each speed a new speaker)
  -> `data.augment.speed_prob = 2/3`, `data.speed_perturb_labels=true`; spec_aug False -> `model.spec_augment=false`;
- num_avg 10 -> `eval.average_last=10`;
- scoring: examples/voxceleb/v2/run.sh (commit 9ed5427) scores with the vox2_dev mean subtracted and AS-norm at
  top_n 300 -> `eval.as_norm=true`, `eval.as_norm_top_k=300` (the report's AS-norm; score.py takes --top-k).

What this codebase cannot express, kept as it is: the optimizer (WeSpeaker: SGD, momentum 0.9, Nesterov, weight
decay 1e-4, lr 0.1 decaying exponentially to 5e-5; here AdamW with linear warm-up and cosine decay,
research/torch/trainer.py, so `optim.lr` stays the schema's: an SGD learning rate means nothing to AdamW;
`optim.weight_decay=1e-4` is WeSpeaker's value, applied decoupled by AdamW), the margin schedule (initial_margin 0
rising exponentially from epoch 20 to 0.2 at epoch 40; here 0.2 from the first step) and the utterance filter
(min_num_frames 100, max_num_frames 800: every utterance is used). The model adds what late fusion of one modality
is here, a residual MLP between the backbone's embedding and the head (x + MLP(LN(x)), docs/fusion.md "late");
WeSpeaker's head reads the backbone's embedding.
"""

from research.config import Config

SCALE = 32.0  # projection_args.scale
MARGIN = 0.2  # margin_update.final_margin
VOICE_SECONDS = 2.0  # dataset_args.num_frms 200 at frame_shift 10 ms
BATCH = 128  # dataloader_args.batch_size
EPOCHS = 150  # num_epochs
WARMUP_EPOCHS = 6.0  # scheduler_args.warm_up_epoch
WEIGHT_DECAY = 1e-4  # optimizer_args.weight_decay
AUG_PROB = 0.6  # dataset_args.aug_prob: reverb or noise, one of the two at random
SPEED_PROB = 2 / 3  # speed_perturb: 0.9, 1.0, 1.1 uniformly
NUM_AVG = 10  # num_avg
TOP_N = 300  # run.sh top_n (local/score_norm.sh's own default is 100)


def get_config() -> Config:
    return wespeaker("resnet34_speaker", dim=256)


def wespeaker(voice: str, dim: int) -> Config:
    """WeSpeaker's VoxCeleb v2 stage 1 (shared by its ResNet and ECAPA configs) with backbone `voice` of size `dim`."""
    cfg = Config()
    cfg.model.modalities = ("voice",)
    cfg.model.fusion = "late"
    cfg.model.voice, cfg.model.dim, cfg.model.frontend = voice, dim, "fbank80"
    cfg.model.spec_augment = False
    cfg.loss.name = "arcface"
    cfg.loss.arcface.scale, cfg.loss.arcface.margin = SCALE, MARGIN
    cfg.data.split = "open"
    cfg.data.voice_seconds, cfg.data.batch_size = VOICE_SECONDS, BATCH
    cfg.data.augment.noise_prob = cfg.data.augment.reverb_prob = AUG_PROB / 2
    cfg.data.augment.speed_prob = SPEED_PROB
    cfg.data.speed_perturb_labels = True
    cfg.optim.epochs, cfg.optim.warmup_epochs, cfg.optim.weight_decay = EPOCHS, WARMUP_EPOCHS, WEIGHT_DECAY
    cfg.eval.average_last = NUM_AVG
    cfg.eval.as_norm, cfg.eval.as_norm_top_k = True, TOP_N
    return cfg
