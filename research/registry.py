"""The module path is the registry: `build("fusion", "torch", "cross_attn")` imports
`fusion.torch.cross_attn` and instantiates its class `CrossAttn`. Nothing registers on import, and a
missing twin is an ImportError that names the gap."""

from __future__ import annotations

import importlib
from typing import Any


def class_name(name: str) -> str:
    """File name -> class name: `cross_attn` -> `CrossAttn`, `sphereface2` -> `Sphereface2`."""
    return "".join(part.capitalize() for part in name.split("_"))


def build(package: str, backend: str, name: str, **kwargs: Any) -> Any:
    path = f"{package}.{backend}.{name}"
    try:
        module = importlib.import_module(path)
    except ModuleNotFoundError as err:
        if err.name is not None and path.startswith(err.name):
            raise ImportError(f"no {backend} implementation of {package} '{name}' (looked for module {path})") from err
        raise
    return getattr(module, class_name(name))(**kwargs)
