"""The config's cross-field checks, run when the command line is parsed: what no single field's type can
express (sizes, rates, the learning rate, what the pair losses and the match task need), and the defaults
that depend on another field. Checks that need the files, the machine or the manifest are research/validate.py's.
"""

from __future__ import annotations

import math
import typing

from research.config import (
    BACKBONES,
    PAIR_LOSSES,
    SPHEREFACE2_MARGINS,
    AugmentConfig,
    Config,
    ConfigError,
    FaceEncoder,
    VoiceEncoder,
)


def resolve_defaults(cfg: Config) -> None:
    """Fill the fields left None whose default depends on another field, so that the logged config holds
    the values the run uses: SphereFace2's margin follows its margin type."""
    sf2 = cfg.loss.sphereface2
    if sf2.margin is None:
        sf2.margin = SPHEREFACE2_MARGINS[sf2.margin_type]


def validate(cfg: Config) -> None:
    """Cross-field checks that no single field's type can express."""
    d, o = cfg.data, cfg.optim
    checks = [
        *_size_checks(cfg),
        (d.workers >= 0, "data.workers must be >= 0"),
        (o.epochs > 0, "optim.epochs must be positive"),
        (o.patience >= 0, "optim.patience must be 0 (off) or a number of epochs"),
        (math.isfinite(o.lr) and o.lr > 0, f"optim.lr must be a finite positive number, got {o.lr}"),
        (o.accumulate >= 1, "optim.accumulate must be at least 1"),
        (
            math.isfinite(o.encoder_lr_scale) and o.encoder_lr_scale >= 0,
            f"optim.encoder_lr_scale must be a finite number >= 0, got {o.encoder_lr_scale}",
        ),
        *_weights_checks(cfg),
        (
            d.batch_size % o.accumulate == 0,
            f"optim.accumulate={o.accumulate} must divide data.batch_size={d.batch_size} (micro-batches of one size)",
        ),
        (cfg.model.stack_tokens > 0, "model.stack_tokens must be positive"),
        (cfg.model.bottleneck_tokens > 0, "model.bottleneck_tokens must be positive"),
        (
            0 <= cfg.model.fusion_from_layer <= cfg.model.fusion_layers,
            "model.fusion_from_layer must be in [0, model.fusion_layers]",
        ),
        (cfg.model.dim % max(cfg.model.heads, 1) == 0, "model.dim must be divisible by model.heads"),
        (0.0 <= cfg.data.synthetic.missing < 1.0, "data.synthetic.missing must be in [0, 1)"),
        (0.0 <= cfg.loss.label_smoothing < 1.0, "loss.label_smoothing must be in [0, 1)"),
        (0.0 < cfg.loss.sample_rate <= 1.0, "loss.sample_rate must be in (0, 1]"),
        (cfg.data.synthetic.identities >= 4, "data.synthetic.identities must be at least 4"),
        (
            cfg.data.synthetic.samples_per_identity >= 3,
            "data.synthetic.samples_per_identity must be at least 3 (one sample each for train, val and test)",
        ),
        (cfg.data.perturb.copies >= 1, "data.perturb.copies must be at least 1"),
        (cfg.data.face_frames >= 1, f"data.face_frames must be at least 1, got {cfg.data.face_frames}"),
        (cfg.data.perturb.face_eps >= 0 and cfg.data.perturb.voice_eps >= 0, "data.perturb eps must be >= 0"),
    ]
    for ok, message in checks + _pair_checks(cfg) + _augment_checks(cfg) + _stage_checks(cfg):
        if not ok:
            raise ConfigError(message)


def _range(cfg: AugmentConfig, name: str) -> tuple[float, float]:
    """(name_min, name_max) of data.augment."""
    return getattr(cfg, f"{name}_min"), getattr(cfg, f"{name}_max")


def _augment_checks(cfg: Config) -> list[tuple[bool, str]]:
    """data.augment (research/data/augment.py): probabilities, ranges, the folders it needs; speed copies as classes.
    Whether the folders hold readable files is research/validate.py's."""
    a, d = cfg.data.augment, cfg.data
    probs = {k: getattr(a, k) for k in ("noise_prob", "reverb_prob", "gain_prob", "speed_prob", "flip_prob")}
    probs |= {"crop_prob": a.crop_prob, "jitter_prob": a.jitter_prob}
    checks = [(0.0 <= v <= 1.0, f"data.augment.{k} must be in [0, 1], got {v}") for k, v in probs.items()]
    ranges = {k: _range(a, k) for k in ("noise_snr", "music_snr", "babble_snr", "gain_db", "babble_speakers")}
    ranges |= {k: _range(a, k) for k in ("crop_scale", "crop_ratio")}
    checks += [
        (all(map(math.isfinite, v)) and v[0] <= v[1], f"data.augment.{k}_min must be finite and <= {k}_max, got {v}")
        for k, v in ranges.items()
    ]
    return checks + [
        (a.noise_prob + a.reverb_prob <= 1.0, "data.augment.noise_prob + data.augment.reverb_prob must be at most 1"),
        (a.noise_prob == 0 or a.musan != "", "data.augment.noise_prob > 0 needs data.augment.musan (the MUSAN folder)"),
        (a.reverb_prob == 0 or a.rirs != "", "data.augment.reverb_prob > 0 needs data.augment.rirs (RIRS_NOISES)"),
        (a.babble_speakers_min >= 1, "data.augment.babble_speakers_min must be at least 1"),
        (0 < a.crop_scale_min and a.crop_scale_max <= 1, "data.augment.crop_scale_min, _max must be in (0, 1]"),
        (a.crop_ratio_min > 0, "data.augment.crop_ratio_min must be positive"),
        (0 <= a.jitter <= 1, "data.augment.jitter must be in [0, 1]"),
        (
            not d.speed_perturb_labels or (a.speed_prob > 0 and d.target == "identity"),
            "data.speed_perturb_labels needs data.augment.speed_prob > 0 and data.target=identity",
        ),
    ]


def _stage_checks(cfg: Config) -> list[tuple[bool, str]]:
    """The weight average (optim.ema), the epochs averaged (eval.average_last) and a whole model to start from."""
    o, m = cfg.optim, cfg.model
    return [
        (0.0 <= o.ema < 1.0, f"optim.ema must be in [0, 1) (0: off), got {o.ema}"),
        (cfg.eval.average_last >= 0, f"eval.average_last must be >= 0 (0: off), got {cfg.eval.average_last}"),
        (not (m.init_model and m.init_from), "model.init_model (the whole model) and model.init_from (encoders): one"),
    ]


def _weights_checks(cfg: Config) -> list[tuple[bool, str]]:
    """Published weights load into published backbones only."""
    m = cfg.model
    return [
        (
            not getattr(m, f"{modality}_weights") or getattr(m, modality) in BACKBONES,
            f"model.{modality}_weights: {getattr(m, modality)} has no published weights; "
            f"pick a backbone of docs/encoders.md ({', '.join(n for n in BACKBONES if n in encoders)})",
        )
        for modality, encoders in (("face", typing.get_args(FaceEncoder)), ("voice", typing.get_args(VoiceEncoder)))
    ]


def _size_checks(cfg: Config) -> list[tuple[bool, str]]:
    """Sizes, counts and rates that must be positive (and finite), each named by its key."""
    d, m = cfg.data, cfg.model
    values = {"data.batch_size": d.batch_size, "data.image_size": d.image_size, "data.sample_rate": d.sample_rate}
    values |= {"data.voice_seconds": d.voice_seconds, "data.text_len": d.text_len, "model.dim": m.dim}
    values |= {"model.heads": m.heads}
    checks = [(math.isfinite(v) and v > 0, f"{key} must be positive, got {v}") for key, v in values.items()]
    seconds = cfg.eval.voice_seconds
    return checks + [(math.isfinite(seconds) and seconds >= 0, f"eval.voice_seconds must be >= 0, got {seconds}")]


def _pair_checks(cfg: Config) -> list[tuple[bool, str]]:
    """What the pair losses, the P x K sampler and the match task need (docs/losses.md)."""
    d, name, task = cfg.data, cfg.loss.name, cfg.model.task
    pk = d.pk_identities * d.pk_samples
    return [
        (d.pk_identities >= 2 and d.pk_samples >= 2, "data.pk_identities and data.pk_samples must be at least 2"),
        (
            d.sampler != "pk" or pk == d.batch_size,
            f"data.sampler=pk: data.pk_identities x data.pk_samples ({d.pk_identities} x {d.pk_samples} = {pk}) "
            f"must equal data.batch_size ({d.batch_size})",
        ),
        (
            name not in PAIR_LOSSES or d.split == "open",
            f"loss.name={name} has no classifier: it is evaluated by verification on unseen identities; "
            "set data.split=open",
        ),
        (
            name not in ("contrastive", "triplet") or d.sampler == "pk",
            f"loss.name={name} needs several samples per identity in each batch: set data.sampler=pk",
        ),
        ((name == "cross_modal") == (task == "match"), "loss.name=cross_modal and model.task=match go together"),
        (
            task != "match" or (cfg.model.fusion == "late" and {"face", "voice"} <= set(cfg.model.modalities)),
            "model.task=match needs model.fusion=late and the face and voice modalities",
        ),
        (cfg.loss.identity_weight >= 0, "loss.identity_weight must be >= 0"),
        (
            not cfg.model.freeze_encoders or pretrained(cfg),
            "model.freeze_encoders needs trained encoders: model.init_from, model.face_weights / voice_weights or "
            "model.text=text_hf",
        ),
    ]


def pretrained(cfg: Config) -> bool:
    """Whether an encoder starts from trained weights (an earlier run's, a published file, the packaged MiniLM)."""
    m = cfg.model
    return bool(m.init_from or m.face_weights or m.voice_weights or (m.text == "text_hf" and "text" in m.modalities))
