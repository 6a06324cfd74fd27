"""Encoders: torch/ and jax/ twins. This package root imports no framework."""

from typing import Any, NamedTuple

from research import registry


def build(backend: str, name: str, **kwargs: Any) -> Any:
    """Instantiate `encoders.{backend}.{name}`'s class (see research/registry.py)."""
    return registry.build("encoders", backend, name, **kwargs)


class EncoderOutput(NamedTuple):
    """What every encoder returns, in either framework.

    tokens: (B, N, D) float; mask: (B, N) bool, True = a real token; pooled: (B, D) float.
    """

    tokens: Any
    mask: Any
    pooled: Any
