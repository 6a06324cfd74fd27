"""The main job: person identification from face + voice + text on the embedded dataset, on the CPU."""

from research.config import Config


def get_config() -> Config:
    return Config()
