"""What test_export_torch.py and test_export_jax.py share: experiments/export.py run as a user runs it, and the
check of a client's embeddings against the run's (conftest.py export_run)."""

import json
from pathlib import Path

import numpy as np

from experiments import export

TOLERANCE = 1e-4


def exported(run: dict, folder: Path, fmt: str, modality: str | None) -> tuple[Path, dict]:
    """The file experiments/export.py writes and its sidecar."""
    out = folder / f"{modality or 'fused'}.{fmt}"
    args = ["--run", str(run["dir"]), "--format", fmt, "--out", str(out)]
    assert export.main(args + (["--modality", modality] if modality else [])) == 0
    return out, json.loads(Path(f"{out}.json").read_text())


def check(run: dict, modality: str | None, meta: dict, call) -> None:
    """`call` (the client: the sidecar's inputs by name, in order -> (B, E)) on both batches gives the run's."""
    dtypes = {x["name"]: x["dtype"] for x in meta["inputs"]}
    assert len({a["voice"].shape for _, a in run["batches"]}) == 2  # two batch sizes, two voice lengths
    for rows, arrays in run["batches"]:
        found = call({name: arrays[name].astype(dtype) for name, dtype in dtypes.items()})
        assert found.shape == (len(rows), meta["output"]["shape"][1])
        np.testing.assert_allclose(found, run["want"][modality][rows], atol=TOLERANCE, rtol=0)
