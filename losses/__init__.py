"""Losses: torch/ and jax/ twins. This package root imports no framework."""

from typing import Any

from research import registry


def build(backend: str, name: str, **kwargs: Any) -> Any:
    """Instantiate `losses.{backend}.{name}`'s class (see research/registry.py)."""
    return registry.build("losses", backend, name, **kwargs)
