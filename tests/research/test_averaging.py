"""research/averaging.average on hand-made checkpoint files: floating arrays of any rank (0-d ones, such as a
learned temperature, included) are the NumPy mean of the files', integers the last file's."""

import json

import numpy as np
from safetensors.numpy import load_file, save_file

from research.averaging import average
from research.checkpoint_files import content_hash


def test_the_average_of_scalars_vectors_and_counters(tmp_path):
    rng = np.random.default_rng(0)
    files = []
    for k in range(3):
        arrays = {"scale": np.asarray(rng.standard_normal(), np.float32), "w": rng.standard_normal((2, 3), np.float32),
                  "steps": np.asarray(10 + k, np.int64)}  # fmt: skip
        files.append((tmp_path / f"epoch_{k}.safetensors", arrays))
        header = {
            "extra": json.dumps({"meta": {}}),
            "sha256": content_hash({n: a.tobytes() for n, a in arrays.items()}),
        }
        save_file(arrays, str(files[-1][0]), metadata=header)  # the header research/checkpoint_files.py checks
    average([path for path, _ in files], tmp_path / "averaged.safetensors")
    found = load_file(str(tmp_path / "averaged.safetensors"))
    assert found["scale"].shape == () and found["scale"].dtype == np.float32
    np.testing.assert_allclose(found["scale"], np.mean([a["scale"] for _, a in files]), rtol=1e-6)
    np.testing.assert_allclose(found["w"], np.mean([a["w"] for _, a in files], axis=0), rtol=1e-6)
    assert found["steps"] == 12
