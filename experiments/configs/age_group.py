"""Age group (7 bins, research/data/manifest.py AGE_BINS) from face, voice and text: study (1) of docs/studies.md.

Every embedded identity has an age bin that each modality shows its own way (greying hair and face lines,
a higher or shakier voice, age-typical words). Age bins are drawn per identity, so with few identities
they are unbalanced: the loss weights classes by inverse training frequency. The split is closed (every
person has samples in train, val and test), so the evaluation also reports per-subject aggregation
(`test/subject_acc`: the summed probabilities of a person's test samples), the fairness breakdown by gender
(`test/fair/gender/acc/gap`) and, for the multimodal model, the test-time modality ablation
(`test/without_{m}/acc`).
"""

from research.config import Config


def get_config() -> Config:
    cfg = Config()
    cfg.data.target = "age"
    cfg.loss.class_weights = "balanced"
    return cfg
