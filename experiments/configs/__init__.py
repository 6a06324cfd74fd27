"""Config presets: `experiments/configs/NAME.py` defines `get_config() -> Config`; `--config NAME` picks it.
A preset built on something takes it after a colon: `--config NAME:ARG` calls `get_config(ARG)` (lm.py, the
large-margin stage on top of a finished run: `--config lm:runs/stage1`)."""

import importlib

from research.config import Config


def preset(name: str) -> Config:
    module, colon, arg = name.partition(":")
    get_config = importlib.import_module(f"experiments.configs.{module}").get_config
    return get_config(arg) if colon else get_config()
