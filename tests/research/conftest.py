"""A tiny run configuration shared by the training tests (seconds per run on a 2-core CPU)."""

import pytest

from research.config import Config
from research.config_parse import apply_overrides


@pytest.fixture(scope="session")
def data_root(tmp_path_factory):
    return tmp_path_factory.mktemp("datasets")


@pytest.fixture
def tiny(tmp_path, data_root):
    def make(*args: str) -> Config:
        return apply_overrides(
            Config(),
            [
                f"--run.out={tmp_path / 'runs'}",
                f"--data.root={data_root}",
                "--run.wandb=disabled",
                "--run.progress=false",
                "--data.synthetic.identities=8",
                "--data.synthetic.samples_per_identity=6",
                "--data.voice_seconds=0.5",
                "--data.batch_size=8",
                "--model.dim=32",
                "--model.layers=1",
                "--model.fusion_layers=1",
                "--optim.epochs=2",
                "--eval.plots=false",
                "--eval.trials=200",
                *args,
            ],
        )

    return make
