"""What both throughput benchmarks share (benchmarks/torch/throughput.py, benchmarks/jax/throughput.py), so their
lines can be held side by side: the models they time, the table they print and the accelerators' bf16 peaks;
framework-free."""

from __future__ import annotations

import statistics

from research.config import Config

# Steps run before the timed ones, in both frameworks: their step times settle within about 8 steps on a CPU
# (the first steps grow malloc's heap onto fresh pages; measured per step, 2026-12-07).
WARMUP_STEPS = 8

# The models a benchmark can time: dotted config overrides on top of Config(). tiny: the smallest model of the
# same code (face and voice, one layer, dim 16), for the scripts' smoke tests (tests/benchmarks/test_scripts.py).
# large: the published backbones at their real input sizes (112 x 112 faces, 2 s voices at 16 kHz through the
# 80-bin Kaldi fbank front end, MiniLM text), fused by cross-attention at dim 256 (4 heads of 64, 2 layers).
MODELS = {
    "default": {},
    "tiny": {"model.modalities": ("face", "voice"), "model.dim": 16, "model.layers": 1, "model.fusion_layers": 1},
    "large": {
        "model.face": "iresnet50",
        "model.voice": "ecapa_c512",
        "model.frontend": "fbank80",
        "model.text": "text_hf",
        "model.dim": 256,
        "model.heads": 4,
        "model.fusion_layers": 2,
        "data.image_size": 112,
        "data.voice_seconds": 2.0,
    },
}

# Dense (no 2:4 sparsity) bf16 peak FLOP/s per chip, matched by a lower-case substring of the device name
# (torch.cuda.get_device_name, jax's device_kind); the first match wins, so "h100 pcie" comes before "h100".
# NVIDIA's datasheets give the figures with sparsity: A100 312 dense (624 sparse); H100 SXM 1979 and H100 PCIe
# 1513 sparse, "1/2 lower without sparsity" (989, 756); H200 SXM the H100 SXM's Hopper die, 1979 sparse (989).
# Google Cloud TPU docs, peak compute per chip (bf16): v4 275, v5e 197, v5p 459 (jax names v5e "TPU v5 lite").
PEAK_BF16 = (
    ("a100", 312e12),
    ("h100 pcie", 756e12),
    ("h100", 989e12),
    ("h200", 989e12),
    ("tpu v4", 275e12),
    ("tpu v5 lite", 197e12),
    ("tpu v5e", 197e12),
    ("tpu v5p", 459e12),
    ("tpu v5", 459e12),
)


def bf16_peak(device_name: str) -> float | None:
    """The card's dense bf16 peak FLOP/s, or None for a device not in PEAK_BF16 (a CPU among them)."""
    name = device_name.lower()
    return next((peak for key, peak in PEAK_BF16 if key in name), None)


def config(model: str, fusion: str, batch: int, bf16: bool) -> Config:
    """The benchmark's config: MODELS[model] with this fusion, global batch and precision."""
    cfg = Config()
    for key, value in MODELS[model].items():
        section, field = key.split(".")
        setattr(getattr(cfg, section), field, value)
    cfg.model.fusion = fusion
    cfg.data.batch_size = batch
    cfg.optim.bf16 = bf16
    return cfg


def step_times(seconds: list[float]) -> dict[str, float]:
    """Per-step wall-clock seconds -> the median step time and the spread (fastest and slowest step), in ms."""
    ms = sorted(1e3 * t for t in seconds)
    return {"step_ms": statistics.median(ms), "step_ms_min": ms[0], "step_ms_max": ms[-1], "steps": len(ms)}


def spread(result: dict[str, float]) -> str:
    """'median (min-max)' of a result's step times."""
    return f"{result['step_ms']:.1f} ({result['step_ms_min']:.1f}-{result['step_ms_max']:.1f})"


def header(accelerator: bool) -> str:
    """The table's header; on an accelerator also the MFU against its bf16 peak and the peak memory."""
    extra = f" {'MFU bf16':>9} {'peak GB':>8}" if accelerator else ""
    return f"{'fusion':<11} {'samples/s':>10} {'step ms':>9} {'GFLOP/s':>9} {'of matmul':>10}" + extra


def row(fusion: str, result: dict[str, float], peak: float, card_peak: float | None = None) -> str:
    """One line: samples/s, step time, achieved FLOP/s and its ratio to the measured matmul FLOP/s; with the
    card's bf16 peak, the MFU (FLOP/s / peak) and the peak device memory in GB."""
    ratio = result["flop/s"] / peak
    line = (
        f"{fusion:<11} {result['samples/s']:>10.1f} {result['step_ms']:>9.1f} {result['flop/s'] / 1e9:>9.2f} "
        f"{ratio:>10.1%}"
    )
    if "peak_bytes" in result:
        mfu = f"{result['flop/s'] / card_peak:>9.1%}" if card_peak else f"{'?':>9}"
        line += f" {mfu} {result['peak_bytes'] / 1e9:>8.2f}"
    return line
