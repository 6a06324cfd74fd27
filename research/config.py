"""One typed config for a run, and the command line that edits it.

Every field is reachable as a dotted override (`--optim.lr=3e-4`, also in the `--key=value` form that
`wandb agent` passes); the common axes have short flags (`--fusion`, `--loss`, ...). Values are parsed
by the field's type and checked against `Literal` choices, so a typo is an error before any work.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

# The name lists of the project, each in one place: loaders, generators, tests and benchmarks use these.
Modality = Literal["face", "voice", "text"]
Fusion = Literal["early", "stack", "cross_attn", "late", "gated", "concat", "bottleneck"]
Loss = Literal[
    "softmax", "sphereface", "sphereface_r", "sphereface2", "cosface", "arcface", "mask_proxy",
    "contrastive", "triplet", "cross_modal",
]  # fmt: skip
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
    # Training batch order: random = a permutation per epoch; pk = identity-balanced batches of pk_identities (P)
    # identities x pk_samples (K) samples each, P x K = batch_size (research/data/sampler.py).
    sampler: Literal["random", "pk"] = "random"
    pk_identities: int = 8
    pk_samples: int = 4
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    perturb: PerturbConfig = field(default_factory=PerturbConfig)


@dataclass
class ModelConfig:
    # identify = classify / verify identities (or the target); match = face <-> voice matching in one space
    # (late fusion's face and voice streams, trained with loss.name = cross_modal; docs/losses.md).
    task: Literal["identify", "match"] = "identify"
    modalities: tuple[Modality, ...] = ("face", "voice", "text")
    fusion: Fusion = "cross_attn"
    dim: int = 64  # width of every encoder's tokens and of the fused embedding
    face: Literal["face_cnn", "face_vit"] = "face_cnn"
    voice: Literal["voice_ecapa", "voice_vit"] = "voice_ecapa"
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
    # two unimodal runs); freeze_encoders = train only fusion and heads on them (docs/training.md).
    init_from: tuple[str, ...] = ()
    freeze_encoders: bool = False


@dataclass
class LossConfig:
    """The classification head and its hyper-parameters (docs/losses.md). Each margin head has a section
    named like the head whose fields are its keyword arguments, with the published defaults
    (`--loss.arcface.margin=0.4`); the model passes the section of `name` only."""

    @dataclass
    class Sphereface:  # A-Softmax, Liu et al. 2017
        margin: int = 4
        scale: float = 0.0  # 0 = logits scaled by the feature norm (original); > 0 = normalised features * s
        lambda_base: float = 1000.0  # annealing: lambda = max(lambda_min, base (1 + gamma step)^-power)
        lambda_gamma: float = 0.12
        lambda_power: float = 1.0
        lambda_min: float = 5.0

    @dataclass
    class SpherefaceR:  # SphereFace-R, Liu et al. 2022 (OpenSphere config)
        version: Literal["v0", "v1", "v2"] = "v2"
        normalization: Literal["none", "hard", "soft"] = "hard"
        margin: float = 1.4
        scale: float = 60.0
        penalty: float = 0.01  # soft normalisation: weight of | ||x|| - scale |

    @dataclass
    class Sphereface2:  # SphereFace2, Wen et al. 2022
        margin_type: Literal["C", "A", "M"] = "C"
        lamb: float = 0.7
        scale: float = 40.0
        margin: float | None = None  # None = the authors' default for margin_type (SPHEREFACE2_MARGINS)
        t: float = 3.0

    @dataclass
    class Cosface:  # Wang et al. 2018
        scale: float = 64.0
        margin: float = 0.35

    @dataclass
    class Arcface:  # Deng et al. 2019
        scale: float = 64.0
        margin: float = 0.5
        easy_margin: bool = False

    @dataclass
    class MaskProxy:  # Lian et al. 2021; multinomial = MMP
        multinomial: bool = False
        lamb: float = 0.5
        scale_init: float = 10.0
        bias_init: float = -5.0

    @dataclass
    class Contrastive:  # Hadsell et al. 2006, on every pair of the batch
        margin: float = 1.0
        normalize: bool = True

    @dataclass
    class Triplet:  # FaceNet / Hermans et al., in-batch mining
        margin: float = 0.2
        mining: Literal["batch_hard", "semi_hard"] = "batch_hard"
        squared: bool = False
        normalize: bool = True

    @dataclass
    class CrossModal:  # face <-> voice: CLIP's InfoNCE or SigLIP's sigmoid loss, learned temperature
        kind: Literal["infonce", "sigmoid"] = "infonce"
        scale_init: float | None = None  # None = the paper's (1 / 0.07 InfoNCE, 10 sigmoid)
        bias_init: float = -10.0

    name: Loss = "softmax"
    label_smoothing: float = 0.0  # softmax-type heads only (sphereface2 and mask_proxy reject it)
    class_weights: Literal["none", "balanced"] = "none"  # balanced = inverse train frequency; same heads
    shard_centres: bool = False  # class centres split across ranks / the "model" mesh axis (losses/*/sharded.py)
    sample_rate: float = 1.0  # with shard_centres: fraction of negative centres kept per step (Partial FC's r)
    sphereface: Sphereface = field(default_factory=Sphereface)
    sphereface_r: SpherefaceR = field(default_factory=SpherefaceR)
    sphereface2: Sphereface2 = field(default_factory=Sphereface2)
    cosface: Cosface = field(default_factory=Cosface)
    arcface: Arcface = field(default_factory=Arcface)
    mask_proxy: MaskProxy = field(default_factory=MaskProxy)
    contrastive: Contrastive = field(default_factory=Contrastive)
    triplet: Triplet = field(default_factory=Triplet)
    cross_modal: CrossModal = field(default_factory=CrossModal)
    identity_weight: float = 0.0  # model.task = match: weight of softmax identity heads on the face and voice streams


@dataclass
class OptimConfig:
    lr: float = 2e-3
    weight_decay: float = 0.05
    epochs: int = 8
    warmup_epochs: float = 1.0
    clip: float = 1.0  # max global gradient norm; 0 disables clipping
    bf16: bool = False  # bf16 autocast of the forward pass
    accumulate: int = 1  # micro-batches per update: the same update as one batch, 1/k of the activations


@dataclass
class EvalConfig:
    trials: int = 4000  # verification trials per split (half target, half non-target), fixed by run.seed
    as_norm: bool = False  # adaptive score normalisation with a cohort of training identities
    as_norm_top_k: int = 20
    plots: bool = True  # PNG plots in the run directory (and W&B media)


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
    progress: bool = True
    stop_after_epoch: int = 0  # > 0: stop after this epoch as if interrupted (tests resume)
    checkpoint_every: int = 0  # > 0: also a mid-epoch `last` checkpoint every this many steps (exact resume)
    resume: bool = True  # continue from out/name/last.safetensors when it exists
    compile: bool = False  # torch backend: torch.compile the model (opt-in; compiling takes minutes)
    sync_bn: bool = False  # torch DDP: BatchNorm statistics over the global batch (SyncBatchNorm, GPU only)


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    run: RunConfig = field(default_factory=RunConfig)


# Short flags for the common axes -> dotted field.
SHORT_FLAGS = {
    "fusion": "model.fusion",
    "loss": "loss.name",
    "task": "model.task",
    "backend": "run.backend",
    "modalities": "model.modalities",
    "dataset": "data.dataset",
    "seed": "run.seed",
    "epochs": "optim.epochs",
    "lr": "optim.lr",
}


# SphereFace2's margin by margin type, from the paper and OpenSphere's configs: an additive cosine margin
# (C), an additive angular margin (A, radians) and a multiplicative angular one (M, a factor on the angle).
SPHEREFACE2_MARGINS = {"C": 0.4, "A": 0.5, "M": 1.7}


class ConfigError(ValueError):
    """A key or value the schema does not accept."""


def to_dict(cfg: Any) -> dict[str, Any]:
    """Nested plain dict of a config, for logs and run records (tuples stay tuples; JSON writes them as lists)."""
    return dataclasses.asdict(cfg)


def from_dict(d: dict[str, Any]) -> Config:
    """Rebuild a Config from `to_dict` output, checking every key and value."""
    cfg = Config()
    for key, value in flatten(d).items():
        set_value(cfg, key, value)
    return cfg


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested dict as {dotted key: leaf value}: {"optim": {"lr": 1e-3}} -> {"optim.lr": 1e-3}."""
    flat = {}
    for k, v in d.items():
        flat |= flatten(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v}
    return flat


def set_value(cfg: Config, key: str, value: Any) -> None:
    """Set a dotted field, parsing strings by the field's type; raise ConfigError naming the key."""
    key = SHORT_FLAGS.get(key, key)
    *path, name = key.split(".")
    node = cfg
    for part in path:
        if not dataclasses.is_dataclass(node) or part not in _fields(node):
            raise ConfigError(f"unknown config key '{key}'")
        node = getattr(node, part)
    if not dataclasses.is_dataclass(node) or name not in _fields(node):
        allowed = ", ".join(sorted(_fields(node))) if dataclasses.is_dataclass(node) else ""
        raise ConfigError(f"unknown config key '{key}'" + (f" (known here: {allowed})" if allowed else ""))
    hint = typing.get_type_hints(type(node))[name]
    if dataclasses.is_dataclass(hint):
        raise ConfigError(f"config key '{key}' is a section; set one of its fields")
    setattr(node, name, _parse(key, hint, value))


def _fields(node: Any) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(node)}


def _parse(key: str, hint: Any, value: Any) -> Any:
    origin = typing.get_origin(hint)
    if origin is types.UnionType:  # `T | None`: None (or "none" on the command line) means "the default"
        if value is None or str(value).strip().lower() == "none":
            return None
        (hint,) = [h for h in typing.get_args(hint) if h is not type(None)]
        origin = typing.get_origin(hint)
    if origin is Literal:
        allowed = typing.get_args(hint)
        if value not in allowed:
            raise ConfigError(f"bad value {value!r} for '{key}': allowed values are {', '.join(map(str, allowed))}")
        return value
    if origin is tuple:
        items = value.split(",") if isinstance(value, str) else list(value)
        items = [s.strip() for s in items if str(s).strip()]
        (item_hint, _) = typing.get_args(hint)
        parsed = tuple(_parse(key, item_hint, s) for s in items)
        if key == "model.modalities" and (not parsed or len(set(parsed)) != len(parsed)):
            raise ConfigError(f"bad value {value!r} for '{key}': give a non-empty list of distinct modalities")
        return parsed
    try:
        if hint is bool:
            return _parse_bool(value)
        if hint is int and isinstance(value, float) and not value.is_integer():
            raise ValueError(value)
        return hint(value)
    except (TypeError, ValueError):
        raise ConfigError(f"bad value {value!r} for '{key}': expected {hint.__name__}") from None


def _parse_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(value)


def apply_overrides(cfg: Config, args: list[str]) -> Config:
    """Apply `--key=value`, `--key value` and short flags, in order."""
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--") or arg == "--":
            raise ConfigError(f"unexpected argument '{arg}': use --key=value")
        key, eq, value = arg[2:].partition("=")
        if not eq:
            if i + 1 >= len(args) or args[i + 1].startswith("--"):
                raise ConfigError(f"missing value for '--{key}'")
            value = args[i + 1]
            i += 1
        set_value(cfg, key, value)
        i += 1
    resolve_defaults(cfg)
    validate(cfg)
    return cfg


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
        (math.isfinite(o.lr) and o.lr > 0, f"optim.lr must be a finite positive number, got {o.lr}"),
        (o.accumulate >= 1, "optim.accumulate must be at least 1"),
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
        (cfg.data.perturb.face_eps >= 0 and cfg.data.perturb.voice_eps >= 0, "data.perturb eps must be >= 0"),
    ]
    for ok, message in checks + _pair_checks(cfg):
        if not ok:
            raise ConfigError(message)


def _size_checks(cfg: Config) -> list[tuple[bool, str]]:
    """Sizes, counts and rates that must be positive (and finite), each named by its key."""
    d, m = cfg.data, cfg.model
    values = {"data.batch_size": d.batch_size, "data.image_size": d.image_size, "data.sample_rate": d.sample_rate}
    values |= {"data.voice_seconds": d.voice_seconds, "data.text_len": d.text_len, "model.dim": m.dim}
    values |= {"model.heads": m.heads}
    return [(math.isfinite(v) and v > 0, f"{key} must be positive, got {v}") for key, v in values.items()]


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
        (not cfg.model.freeze_encoders or cfg.model.init_from, "model.freeze_encoders needs model.init_from"),
    ]
