"""Face-voice matching on unseen people (model.task = match): a face tower and a voice tower projected into one
space (late fusion's per-modality streams), trained with the cross-modal InfoNCE with a learned temperature
(`--loss.cross_modal.kind=sigmoid` for SigLIP's loss; `--loss.identity_weight=1` adds softmax identity heads).
Evaluated on identity-disjoint test people by 1:2 matching (`test/match/v2f`, `f2v`; chance 0.5), retrieval
(`test/retrieval/...`) and face-voice verification (`test/crossmodal/eer`); the best epoch is the one of
lowest face-voice EER on the validation people.
"""

from research.config import Config


def get_config() -> Config:
    cfg = Config()
    cfg.model.task = "match"
    cfg.model.modalities = ("face", "voice")
    cfg.model.fusion = "late"
    cfg.loss.name = "cross_modal"
    cfg.data.split = "open"
    cfg.data.synthetic.identities = 96
    cfg.data.synthetic.samples_per_identity = 8
    return cfg
