"""The result of checking a manifest's samples, kept beside it for the runs that read their samples while
training (data.cache=false) and so do not decode them all first.

`prepare.py check MANIFEST` (and `prepare.py pack`, which decodes every sample too) writes `NAME.check.json`
next to `NAME.csv`: the manifest's content hash, the sizes the samples were decoded at (data.image_size,
data.sample_rate) and the problems of the samples that did not decode, each naming the file and manifest
line. research/validate.py reads it before training; a result of other content or other sizes counts as none.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path


def result_path(manifest: Path) -> Path:
    """`data/vox1.csv` -> `data/vox1.check.json`."""
    return manifest.with_name(f"{manifest.stem}.check.json")


def save(manifest: Path, image_size: int, sample_rate: int, problems: list[str]) -> Path:
    """Write the check result of `manifest`'s samples decoded at these sizes."""
    result = _key(manifest, image_size, sample_rate) | {"problems": problems}
    path = result_path(manifest)
    path.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    return path


def problems(manifest: Path, image_size: int, sample_rate: int) -> list[str] | None:
    """The sample problems the check found, or None when these samples were not checked: no readable result,
    or a result of another manifest content or other sizes."""
    try:
        result = json.loads(result_path(manifest).read_text(encoding="utf-8"))
    except (OSError, ValueError):  # missing, unreadable, not JSON
        return None
    key = _key(manifest, image_size, sample_rate)
    if not isinstance(result, dict) or any(result.get(k) != v for k, v in key.items()):
        return None
    return list(result.get("problems", []))


def _key(manifest: Path, image_size: int, sample_rate: int) -> dict:
    """What a result holds for: the manifest's content and the sizes that decoding depends on."""
    sha256 = hashlib.sha256(manifest.read_bytes()).hexdigest()
    return {"manifest_sha256": sha256, "image_size": image_size, "sample_rate": sample_rate}
