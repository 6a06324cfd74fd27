"""Group classification where only face and voice together carry the label (synergy), on unseen people.

Each modality alone is at chance by construction; early and cross-attention fusion can learn the task,
late fusion cannot. `--data.synthetic.carry=redundant` gives the control where every model does well.
"""

from research.config import Config


def get_config() -> Config:
    cfg = Config()
    cfg.data.target = "group"
    cfg.data.split = "open"
    cfg.data.synthetic.carry = "synergy"
    cfg.data.synthetic.groups = 2
    cfg.data.synthetic.identities = 96
    cfg.data.synthetic.samples_per_identity = 4
    return cfg
