"""The margin heads at convergence on open-set speaker verification: study (6) of docs/studies.md.

One voice tower (late fusion of one modality: its encoder, an MLP and a head) trained as a speaker classifier
with softmax or a margin head (each with its published hyper-parameters, research/config.py) on random
batches, and verified on speakers it never saw (identity-disjoint split; the best epoch is the one of lowest
validation EER). Every head trains to convergence by the same rule: until the validation EER has not improved
for `optim.patience` epochs, within at most `optim.epochs`.
"""

from research.config import Config


def get_config() -> Config:
    cfg = Config()
    cfg.model.modalities = ("voice",)
    cfg.model.fusion = "late"
    cfg.data.split = "open"
    cfg.optim.epochs = 40
    cfg.optim.patience = 5
    return cfg
