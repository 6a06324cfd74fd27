"""Config presets: `experiments/configs/NAME.py` defines `get_config() -> Config`; `--config NAME` picks it."""

import importlib

from research.config import Config


def preset(name: str) -> Config:
    return importlib.import_module(f"experiments.configs.{name}").get_config()
