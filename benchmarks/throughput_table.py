"""The table both throughput benchmarks print (benchmarks/torch/throughput.py, benchmarks/jax/throughput.py),
so their lines can be held side by side; framework-free."""

from __future__ import annotations

HEADER = f"{'fusion':<11} {'samples/s':>10} {'step ms':>9} {'GFLOP/s':>9} {'of matmul':>10}"


def row(fusion: str, result: dict[str, float], peak: float) -> str:
    """One line: samples/s, step time, achieved FLOP/s and its ratio to the measured matmul FLOP/s."""
    ratio = result["flop/s"] / peak
    return (
        f"{fusion:<11} {result['samples/s']:>10.1f} {result['step_ms']:>9.1f} {result['flop/s'] / 1e9:>9.2f} "
        f"{ratio:>10.1%}"
    )
