"""The run record's environment: what tells two machines' runs apart (CPU model, core count, thread settings)."""

import os
import platform
from pathlib import Path

from research.tracking import environment


def test_environment_names_the_cpu_and_the_thread_settings(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    env = environment()
    lines = Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").is_file() else []
    names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    assert env["cpu"] == (names[0] if names else platform.processor() or "unknown")
    assert env["cpu_count"] == os.cpu_count()
    assert env["thread_env"]["OMP_NUM_THREADS"] == "1" and "MKL_NUM_THREADS" not in env["thread_env"]
