"""experiments/export.py --format stablehlo: the torch run of conftest.py export_run, converted to jax and
exported, deserialised by jax.export.deserialize as its client does, gives the embeddings research/embedding.py
computes with the torch run (what embed.py writes) within 1e-4, at two batch sizes and two voice lengths (the
axes are symbolic), and a voice padded in a batch equals the voice alone (the lengths input is honoured)."""

import jax
import numpy as np

from tests.experiments.export_client import check, exported


def test_stablehlo_runs_in_jax_export_deserialize_with_the_runs_embeddings(export_run, tmp_path):
    dtypes = {}
    for modality in ("voice", "face"):
        path, meta = exported(export_run, tmp_path, "stablehlo", modality)
        dtypes[modality] = [x["dtype"] for x in meta["inputs"]]
        function = jax.export.deserialize(path.read_bytes())
        assert all(str(a.shape).startswith("(batch") for a in function.in_avals), function.in_avals  # symbolic
        check(export_run, modality, meta, lambda arrays, f=function: np.asarray(f.call(*arrays.values())))
    assert dtypes == {"voice": ["float32", "int32"], "face": ["float32"]}  # jax runs without 64-bit types
