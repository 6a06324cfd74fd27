"""Small synthetic datasets shared by the data tests (generated once per session, copied per test)."""

import shutil

import pytest

from research.config import DataConfig, SyntheticConfig
from research.data import synthetic
from tests.data import layouts

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


@pytest.fixture(scope="session")
def layouts_source(tmp_path_factory):
    """Every real-dataset layout of tests/data/layouts.py, written once: name -> (root, spec); do not modify."""
    folder = tmp_path_factory.mktemp("layouts")
    names = ("voxceleb1", "voxceleb2", "vggface2", "vggface", "librispeech", "firstimpressions")
    return {name: (folder / name, getattr(layouts, name)(folder / name)) for name in names}


@pytest.fixture
def layout(layouts_source, tmp_path):
    """copy(name) -> a private copy of one layout's root, free to damage."""
    return lambda name: shutil.copytree(layouts_source[name][0], tmp_path / name)
