"""The loss section of the config (`loss.*`): which head trains the model and every head's hyper-parameters,
each margin head's section named like the head, with the published defaults (docs/losses.md).
research/config.py holds the rest of the schema and the name lists derived from `Loss`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Loss = Literal[
    "softmax", "sphereface", "sphereface_r", "sphereface2", "cosface", "arcface", "mask_proxy",
    "contrastive", "triplet", "cross_modal",
]  # fmt: skip


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
        detach_margin: bool = False  # insightface's Dec 2022 form: the margin's value, the gradient of s cos theta

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
