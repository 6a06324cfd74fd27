"""Fusion: torch/ and jax/ twins. This package root imports no framework."""

from typing import Any

from research import registry


def build(backend: str, name: str, **kwargs: Any) -> Any:
    """Instantiate `fusion.{backend}.{name}`'s class (see research/registry.py)."""
    return registry.build("fusion", backend, name, **kwargs)
