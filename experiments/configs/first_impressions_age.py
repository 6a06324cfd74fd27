"""Age-group recipe (docs/recipes.md): study (1) of docs/studies.md, the age group from face, voice and text alone
and together, on ChaLearn First Impressions V2 (its own eight age groups, age_annotations.csv) instead of the
embedded dataset.

    python experiments/run.py --config first_impressions_age --dataset data/firstimpressions.csv --modalities face

The study's choices are experiments/configs/age_group.py's (target age, classes weighted by inverse training
frequency) with its sweep's late fusion (experiments/sweeps/age_group.yaml), so each modality keeps its own head
and the three-modality row is comparable with the unimodal rows. The split is the closed one, the official
partition (training / validation / test; a person may appear in more than one part, so `test/subject_acc`
aggregates a person's samples); `--data.split=open` makes it identity-disjoint. Nothing published reports age
groups on First Impressions, so this recipe has no number to compare against (docs/recipes.md).
"""

from experiments.configs import age_group
from research.config import Config


def get_config() -> Config:
    cfg = age_group.get_config()
    cfg.model.fusion = "late"
    return cfg
