"""Small synthetic datasets shared by the data tests (generated once per session, copied per test)."""

import shutil

import pytest

from research.config import DataConfig, SyntheticConfig
from research.data import synthetic

IMAGE, SECONDS, RATE = 16, 0.25, 16000  # small files: a dataset of 48 samples is generated in ~0.5 s


@pytest.fixture(scope="session")
def tiny_source(tmp_path_factory):
    """8 identities x 6 samples, a third of the modalities missing; do not modify (see `tiny`)."""
    folder = tmp_path_factory.mktemp("tiny")
    syn = SyntheticConfig(seed=3, identities=8, samples_per_identity=6, missing=0.3)
    synthetic.generate(syn, folder, IMAGE, SECONDS, RATE)
    return folder


@pytest.fixture
def tiny(tiny_source, tmp_path):
    """A private copy of the tiny dataset's folder, free to damage."""
    return shutil.copytree(tiny_source, tmp_path / "tiny")


@pytest.fixture(scope="session")
def data_config():
    """make(manifest, **fields) -> a DataConfig that reads `manifest` at the tiny dataset's sizes."""

    def make(manifest, **kwargs) -> DataConfig:
        kwargs = {"image_size": IMAGE, "voice_seconds": SECONDS, "sample_rate": RATE, **kwargs}
        return DataConfig(dataset=str(manifest), **kwargs)

    return make
