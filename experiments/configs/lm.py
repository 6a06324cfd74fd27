"""Large-margin fine-tuning (Thienpondt et al., "The IDLAB VoxSRC-20 submission: large margin fine-tuning and
quality-aware score calibration", 2021; WeSpeaker's "LM" rows): a short second stage that starts from a whole
trained run (model.init_model) with a larger margin and longer voice crops at a low learning rate.

    python experiments/run.py --config lm:runs/STAGE1 --run.name=STAGE1-lm

`get_config(run)` is the run's own config (research/config.py from its record.json) with WeSpeaker's LM changes,
read from wespeaker/examples/voxceleb/v2/conf/resnet.yaml (stage 1, commit 0ae719f) against resnet_lm.yaml (LM,
commit 357f828):

- ArcFace margin: final_margin 0.2 -> initial_margin = final_margin 0.5 (fixed from the first LM epoch);
- voice crops: num_frms 200 -> 600 frames of 10 ms, 2 s -> 6 s (data.voice_seconds = 6);
- learning rate: initial_lr 0.1 -> 1.0e-4 (decaying to 2.5e-5, after warm_up_epoch 1): LM's peak is 1e-3 of stage
  1's, so optim.lr is the run's times 1e-3, with one warm-up epoch;
- epochs: num_epochs 150 -> 5; batch_size 128 -> 64 (three times longer crops: data.batch_size halved);
- averaging: num_avg 10 -> 1 (eval.average_last = 0: LM's last epochs are not averaged).

What the VoxCeleb LM config keeps, this keeps: speed_perturb True, aug_prob 0.6 and spec_aug False are the same in
both files, so data.augment, data.speed_perturb_labels and model.spec_augment stay the run's (WeSpeaker's CN-Celeb
LM config turns speed perturbation off; with data.speed_perturb_labels that would change the class count, and
init_model would refuse the run). The margin is ArcFace's (additive angular margin, IDLab's and WeSpeaker's head):
another loss is an error.
"""

import dataclasses
import json
from pathlib import Path

from research.config import Config, ConfigError
from research.config_parse import from_dict

# WeSpeaker voxceleb/v2 resnet_lm.yaml against resnet.yaml.
MARGIN = 0.5  # margin_update.final_margin (0.2 in stage 1)
VOICE_SECONDS = 6.0  # dataset_args.num_frms 600 at frame_shift 10 ms (200 in stage 1)
LR_SCALE = 1.0e-4 / 0.1  # scheduler_args.initial_lr, LM / stage 1
EPOCHS = 5  # num_epochs (150 in stage 1)
WARMUP_EPOCHS = 1.0  # scheduler_args.warm_up_epoch (6 in stage 1)
BATCH_SCALE = 64 / 128  # dataloader_args.batch_size, LM / stage 1


def get_config(run: str = "") -> Config:
    if not run:
        raise ConfigError("the lm preset starts from a finished run: --config lm:RUN_DIR")
    record = Path(run) / "record.json"
    if not record.exists():
        raise ConfigError(f"--config lm:{run}: no run there ({record} is missing)")
    return large_margin(from_dict(json.loads(record.read_text())["config"]), run)


def large_margin(stage1: Config, run: str) -> Config:
    """The LM stage of a run whose config is `stage1` (a copy; the run's directory `run` gives its weights)."""
    if stage1.loss.name != "arcface":
        raise ConfigError(f"the lm preset raises ArcFace's margin; run {run} trained loss.name={stage1.loss.name}")
    cfg = dataclasses.replace(stage1)  # the sections are replaced below, never shared with stage1
    cfg.model = dataclasses.replace(stage1.model, init_model=run, init_from=(), freeze_encoders=False)
    cfg.loss = dataclasses.replace(stage1.loss, arcface=dataclasses.replace(stage1.loss.arcface, margin=MARGIN))
    cfg.data = dataclasses.replace(stage1.data, voice_seconds=VOICE_SECONDS)
    cfg.data.batch_size = max(1, round(stage1.data.batch_size * BATCH_SCALE))
    cfg.optim = dataclasses.replace(stage1.optim, lr=stage1.optim.lr * LR_SCALE, epochs=EPOCHS)
    cfg.optim.warmup_epochs = WARMUP_EPOCHS
    cfg.eval = dataclasses.replace(stage1.eval, average_last=0)
    cfg.run = dataclasses.replace(stage1.run, name="", stop_after_epoch=0)
    return cfg
