"""The margin-loss family on gated fusion of face, voice and text: study (4) of docs/studies.md.

Softmax against SphereFace, SphereFace-R, SphereFace2, CosFace, ArcFace and Mask Proxy (each with its
published hyper-parameters, research/config.py), every head on the same gated-fusion model (FiLM
conditioning across modalities, then a learned gate over them: fusion/torch/gated.py), person
identification on the embedded dataset.
"""

from research.config import Config


def get_config() -> Config:
    cfg = Config()
    cfg.model.fusion = "gated"
    cfg.data.synthetic.noise = 0.5
    return cfg
