"""Adapters from real datasets' distributed layouts to the manifest (one module per dataset).

`ADAPTERS` maps the name `experiments/prepare.py NAME` takes to "module:function"; the function is
`prepare(root, opts: common.Options) -> common.Prepared`. Imported on use, like the model registries.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

ADAPTERS = {
    "voxceleb1": "voxceleb:voxceleb1",
    "voxceleb2": "voxceleb:voxceleb2",
    "voxceleb2-voxceleb1": "voxceleb:voxceleb2_voxceleb1",
    "vggface2": "vggface2:vggface2",
    "librispeech": "librispeech:librispeech",
    "firstimpressions": "firstimpressions:firstimpressions",
    "voxceleb1-vggface": "facevoice:voxceleb1_vggface",
    "voxceleb2-vggface2": "facevoice:voxceleb2_vggface2",
}


def adapter(name: str) -> Callable:
    module, function = ADAPTERS[name].split(":")
    return getattr(importlib.import_module(f"research.data.datasets.{module}"), function)
