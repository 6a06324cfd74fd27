"""One typed config for a run: the project's name lists and the schema (dataclasses with their defaults).

Every field is reachable as a dotted override (`--optim.lr=3e-4`, also in the `--key=value` form that
`wandb agent` passes); the common axes have short flags (`--fusion`, `--loss`, ...): research/config_parse.py
parses them by the field's type and checks `Literal` choices, so a typo is an error before any work;
research/config_checks.py holds the cross-field checks, research/config_loss.py the loss section's schema.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass, field
from typing import Literal

from research.config_loss import Loss, LossConfig

# The name lists of the project, each in one place: loaders, generators, tests and benchmarks use these.
Modality = Literal["face", "voice", "text"]
Fusion = Literal["early", "stack", "cross_attn", "late", "gated", "concat", "bottleneck"]
# Encoders: the small ones for the embedded dataset, then the published backbones (docs/encoders.md).
FaceEncoder = Literal[
    "face_cnn", "face_vit", "iresnet18", "iresnet50", "iresnet100", "resnet18", "resnet50", "vit_s16", "vit_b16",
    "mobilevit_xxs", "mobilevit_xs", "mobilevit_s", "vgg16",
]  # fmt: skip
VoiceEncoder = Literal["voice_ecapa", "voice_vit", "ecapa_c512", "ecapa_c1024", "resnet34_speaker"]
# A published backbone's config name -> its module in encoders/{torch,jax}/ (which takes the name as `variant`).
BACKBONES: dict[str, str] = {
    **dict.fromkeys(("iresnet18", "iresnet50", "iresnet100"), "iresnet"),
    **dict.fromkeys(("resnet18", "resnet50"), "resnet"),
    **dict.fromkeys(("vit_s16", "vit_b16"), "vit"),
    **dict.fromkeys(("mobilevit_xxs", "mobilevit_xs", "mobilevit_s"), "mobilevit"),
    "vgg16": "vgg",
    **dict.fromkeys(("ecapa_c512", "ecapa_c1024"), "ecapa"),
    "resnet34_speaker": "resnet_speaker",
}
MODALITIES: tuple[str, ...] = typing.get_args(Modality)
FUSIONS: tuple[str, ...] = typing.get_args(Fusion)
LOSSES: tuple[str, ...] = typing.get_args(Loss)
# Losses without class centres (docs/losses.md): the model has no classifier, runs select by val EER.
PAIR_LOSSES: tuple[str, ...] = ("contrastive", "triplet", "cross_modal")
CLASS_HEADS: tuple[str, ...] = tuple(name for name in LOSSES if name not in PAIR_LOSSES)


@dataclass
class SyntheticConfig:
    """Knobs of the embedded "synthetic persons" dataset (research/data/synthetic.py)."""

    seed: int = 0
    identities: int = 40
    samples_per_identity: int = 10
    groups: int = 2  # classes of the `group` attribute
    # How the `group` label is carried: by every modality, by one only, or only by face+voice together.
    carry: Literal["redundant", "face", "voice", "text", "synergy"] = "redundant"
    noise: float = 0.3  # 0 = clean, 1 = traits mostly buried in per-sample noise
    missing: float = 0.0  # probability that each modality of a sample is absent


@dataclass
class PerturbConfig:
    """Training with a fixed set of random perturbations per sample, drawn once from an L-inf ball
    (research/data/perturb.py); off while both radii are 0."""

    copies: int = 8  # fixed perturbations per training sample; each epoch shows one of them
    face_eps: float = 0.0  # L-inf radius on pixels in [0, 1] (e.g. 8/255 = 0.031)
    voice_eps: float = 0.0  # L-inf radius on the waveform in [-1, 1]


@dataclass
class AugmentConfig:
    """Training-time augmentation in the input pipeline (research/data/augment.py; docs/data.md "Augmentation"),
    a pure function of (run.seed, epoch, sample index); off while every probability is 0 (the default)."""

    # Voice: one draw per sample picks additive noise (noise_prob), reverberation (reverb_prob) or neither, so the
    # two sum to at most 1; WeSpeaker's aug_prob 0.6 with one of the two at random is noise_prob = reverb_prob = 0.3.
    noise_prob: float = 0.0
    reverb_prob: float = 0.0
    musan: str = ""  # MUSAN folder: noise/, music/, speech/ (**/*.wav each); a category is noise, music or babble
    rirs: str = ""  # RIRS_NOISES folder: impulse responses simulated_rirs/**/*.wav (WeSpeaker's reverb set)
    # SNR ranges in dB (Kaldi's VoxCeleb recipe, egs/voxceleb/v2/run.sh; Snyder et al. 2018): noise 0-15, music
    # 5-15, babble 13-20 of 3-7 summed speech files.
    noise_snr_min: float = 0.0
    noise_snr_max: float = 15.0
    music_snr_min: float = 5.0
    music_snr_max: float = 15.0
    babble_snr_min: float = 13.0
    babble_snr_max: float = 20.0
    babble_speakers_min: int = 3
    babble_speakers_max: int = 7
    gain_prob: float = 0.0
    gain_db_min: float = -12.0  # audiomentations Gain's default range
    gain_db_max: float = 12.0
    # Speed perturbation (WeSpeaker, Ko et al. 2015): factor 0.9 or 1.1 with this probability (WeSpeaker's uniform
    # choice of 1.0 / 0.9 / 1.1 is 2/3), by resampling; data.speed_perturb_labels makes the copies new classes.
    speed_prob: float = 0.0
    # Face (torchvision's definitions): horizontal flip, RandomResizedCrop, ColorJitter of brightness, contrast and
    # saturation; face_policy = trivial: one TrivialAugment op (Mueller & Hutter 2021) per sample, as well.
    flip_prob: float = 0.0
    crop_prob: float = 0.0
    crop_scale_min: float = 0.08  # area fraction (torchvision's default range)
    crop_scale_max: float = 1.0
    crop_ratio_min: float = 0.75  # aspect ratio (torchvision's default range)
    crop_ratio_max: float = 4 / 3
    jitter_prob: float = 0.0
    jitter: float = 0.4  # brightness / contrast / saturation factors in [1 - jitter, 1 + jitter] (SimCLR, MoCo v2)
    face_policy: Literal["none", "trivial"] = "none"


@dataclass
class DataConfig:
    dataset: str = "synthetic"  # "synthetic" or the path of a manifest (.csv / .jsonl)
    root: str = ".cache/datasets"  # where generated datasets are written and cached
    target: str = "identity"  # identity or any attribute of the manifest (age, gender, group, ethnicity, ...)
    split: Literal["closed", "open"] = "closed"  # open = identity-disjoint train / val / test
    image_size: int = 32  # faces are rendered (synthetic) and resized (loader) to this
    sample_rate: int = 16000  # voices are resampled to this rate
    voice_seconds: float = 1.0  # voices are cropped (random in training) or padded to this length
    text_len: int = 24  # tokens per transcript
    tokenizer: str = "minilm"  # "minilm" (the packaged all-MiniLM-L6-v2) or a local tokenizer path
    on_error: Literal["raise", "skip"] = "raise"  # skip = drop and count unreadable samples
    batch_size: int = 32
    workers: int = 0  # processes that decode samples (research/data/pipeline.py); 0 = in the training process
    cache: bool = True  # decode every file into memory before training (small datasets); false = decode on read
    # A face that is a video (a manifest row without `frame`): a random frame in training; evaluation averages the
    # embeddings of face_frames frames at the centres of equal parts of the video (docs/data.md).
    face_frames: int = 1
    # Training batch order: random = a permutation per epoch; pk = identity-balanced batches of pk_identities (P)
    # identities x pk_samples (K) samples each, P x K = batch_size (research/data/sampler.py).
    sampler: Literal["random", "pk"] = "random"
    pk_identities: int = 8
    pk_samples: int = 4
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    perturb: PerturbConfig = field(default_factory=PerturbConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    # Speed-perturbed copies (data.augment.speed_prob) are new identities, as in WeSpeaker: C training classes
    # become 3 C ((class, speed) pairs); val / test are never perturbed and keep classes 0..C-1.
    speed_perturb_labels: bool = False


@dataclass
class ModelConfig:
    # identify = classify / verify identities (or the target); match = face <-> voice matching in one space
    # (late fusion's face and voice streams, trained with loss.name = cross_modal; docs/losses.md).
    task: Literal["identify", "match"] = "identify"
    modalities: tuple[Modality, ...] = ("face", "voice", "text")
    fusion: Fusion = "cross_attn"
    # Width of every encoder's tokens and of the fused embedding; a backbone with its own embedding layer
    # (iresnet 512, ecapa 192, resnet34_speaker 256 as published) gives pooled vectors of this size.
    dim: int = 64
    face: FaceEncoder = "face_cnn"
    voice: VoiceEncoder = "voice_ecapa"
    # A published checkpoint file for the face / voice backbone (its reference's own format, docs/encoders.md),
    # loaded strictly into the backbone before training; "" = random initialisation. Never downloaded.
    face_weights: str = ""
    voice_weights: str = ""
    frontend: Literal["logmel40", "fbank80"] = "logmel40"  # voice features: 40 log-mels or 80-bin Kaldi fbank
    text: Literal["text_tiny", "text_hf"] = "text_tiny"
    text_path: str = "minilm"  # text_hf: "minilm" or a local Hugging Face model folder
    freeze_text: bool = False
    layers: int = 2  # encoder transformer depth (ViTs, tiny text encoder)
    fusion_layers: int = 2
    stack_tokens: int = 8  # stack fusion: positions each modality's tokens are resampled to
    heads: int = 4
    dropout: float = 0.1
    combine: Literal["mean", "product", "learned"] = "mean"  # late fusion score combination
    combine_features: Literal["add", "mul", "concat"] = "concat"  # concat fusion: how the pooled vectors combine
    bottleneck_tokens: int = 4  # bottleneck fusion: shared tokens through which the modality streams talk
    fusion_from_layer: int = 0  # bottleneck fusion: first fusion layer that reads and writes the bottleneck
    spec_augment: bool = True  # voice: SpecAugment masks in training
    # Run directories whose best checkpoints give the encoders (each run the encoders of its modalities, e.g.
    # two unimodal runs); freeze_encoders = train only fusion and heads (encoders from init_from, face_weights /
    # voice_weights or text_hf; docs/training.md).
    init_from: tuple[str, ...] = ()
    freeze_encoders: bool = False
    # A run directory whose whole model (encoders, fusion, heads) starts this one: its averaged checkpoint when it
    # has one, else its best; the two configs must build the same model (a second stage, e.g. --config lm:RUN).
    init_model: str = ""


@dataclass
class OptimConfig:
    lr: float = 2e-3
    weight_decay: float = 0.05
    epochs: int = 8
    patience: int = 0  # > 0: stop once the validation metric has not improved for this many epochs (convergence)
    warmup_epochs: float = 1.0
    clip: float = 1.0  # max global gradient norm; 0 disables clipping
    bf16: bool = False  # bf16 autocast of the forward pass
    encoder_lr_scale: float = 1.0  # learning rate of the encoders relative to optim.lr (fine-tuning pretrained ones)
    accumulate: int = 1  # micro-batches per update: the same update as one batch, 1/k of the activations
    ema: float = 0.0  # > 0: an exponential moving average of the weights with this decay (e.g. 0.999) is validated


@dataclass
class EvalConfig:
    trials: int = 4000  # verification trials per split (half target, half non-target), fixed by run.seed
    as_norm: bool = False  # adaptive score normalisation with a cohort of training identities
    as_norm_top_k: int = 20
    plots: bool = True  # PNG plots in the run directory (and W&B media)
    voice_seconds: float = 0.0  # 0 = every voice whole (batched by length); > 0 = cropped to this from its start
    average_last: int = 0  # > 0: the end-of-run report evaluates the mean of the last k epochs' weights


@dataclass
class RunConfig:
    backend: Literal["torch", "jax"] = "torch"
    seed: int = 0
    device: str = "auto"  # auto = cuda when available, else cpu
    out: str = "runs"  # every run writes to out/name
    name: str = ""  # empty = a name made from the config and time
    # auto = online when logged in to W&B (API key in the environment or ~/.netrc), else offline; online falls
    # back to offline, with a warning, when the server does not answer (research/tracking.py).
    wandb: Literal["auto", "offline", "online", "disabled"] = "auto"
    project: str = "fusion-research"
    group: str = ""
    tags: tuple[str, ...] = ()
    progress: bool = True  # a progress bar per epoch (false, as sweeps set it: the epoch lines only)
    log_every: int = 50  # every this many steps, log the step's loss, lr, gradient norm and samples/s (0: never)
    # Checkpoints kept once the run has finished: all = best and last (each with its previous copy), best = the
    # best model only, none = nothing (docs/training.md "Checkpoints"); while training, every write keeps the
    # previous copy until the new file is complete.
    keep: Literal["all", "best", "none"] = "all"
    stop_after_epoch: int = 0  # > 0: stop after this epoch as if interrupted (tests resume)
    checkpoint_every: int = 0  # > 0: also a mid-epoch `last` checkpoint every this many steps (exact resume)
    resume: bool = True  # continue from out/name/last.safetensors when it exists
    compile: bool = False  # torch backend: torch.compile the model (opt-in; compiling takes minutes)
    sync_bn: bool = False  # torch DDP: BatchNorm statistics over the global batch (SyncBatchNorm, GPU only)
    dry_run: bool = False  # build the model, write its parameter and FLOP card (RUN_DIR/model.json), exit


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    run: RunConfig = field(default_factory=RunConfig)


# SphereFace2's margin by margin type, from the paper and OpenSphere's configs: an additive cosine margin
# (C), an additive angular margin (A, radians) and a multiplicative angular one (M, a factor on the angle).
SPHEREFACE2_MARGINS = {"C": 0.4, "A": 0.5, "M": 1.7}


class ConfigError(ValueError):
    """A key or value the schema does not accept."""
