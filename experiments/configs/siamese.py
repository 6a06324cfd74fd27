"""Siamese speaker verification on unseen speakers: study (3) of docs/studies.md.

One voice tower (late fusion of one modality: its encoder and an MLP) trained on same / different pairs with
the contrastive loss: every pair of each identity-balanced batch (P = 8 speakers x K = 4 utterances), no
class centres. Evaluated on the identity-disjoint test speakers by EER, and by pair accuracy at the
threshold of highest accuracy on the validation speakers (`test/pair_acc`, `val/threshold`). Compare with
`--loss softmax --data.sampler=random` and the margin heads on the same split.
"""

from research.config import Config


def get_config() -> Config:
    cfg = Config()
    cfg.model.modalities = ("voice",)
    cfg.model.fusion = "late"
    cfg.loss.name = "contrastive"
    cfg.data.split = "open"
    cfg.data.sampler = "pk"
    cfg.data.pk_identities, cfg.data.pk_samples = 8, 4  # x = data.batch_size (32)
    cfg.data.synthetic.identities = 96
    cfg.data.synthetic.samples_per_identity = 8
    return cfg
