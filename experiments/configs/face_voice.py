"""Person identification from face + voice: study (2) of docs/studies.md.

The ways papers combine two modalities, on one task: each modality alone (late fusion of one modality is
its encoder, an MLP and a head), an ensemble of the two unimodal runs trained separately
(experiments/ensemble.py), output (feature-level) fusion of the pooled embeddings by add / mul / concat
(`--fusion concat --model.combine_features=...`), input channel stacking (`stack`), cross-attention, and
joint late fusion (one model, one head per modality, scores averaged). Noise 0.5 as the main job's task.
"""

from research.config import Config


def get_config() -> Config:
    cfg = Config()
    cfg.model.modalities = ("face", "voice")
    cfg.data.synthetic.noise = 0.5
    return cfg
