"""research/huge_pages.py: when a program restarts itself with glibc's huge-page tunable, and that it then
gets huge pages."""

import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from research.huge_pages import THP_MODE, TUNABLE, use_huge_pages, wanted

ROOT = Path(__file__).resolve().parents[2]
MADVISE = "always [madvise] never"


@pytest.mark.parametrize(
    "environ, thp_mode, libc, expected",
    [
        ({}, MADVISE, ("glibc", "2.36"), True),
        ({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"}, MADVISE, ("glibc", "2.35"), True),
        ({"GLIBC_TUNABLES": f"{TUNABLE}=0"}, MADVISE, ("glibc", "2.36"), False),  # the opt-out, and no restart loop
        ({}, "[always] madvise never", ("glibc", "2.36"), False),  # every allocation is huge already
        ({}, "always madvise [never]", ("glibc", "2.36"), False),
        ({}, MADVISE, ("glibc", "2.31"), False),  # before the tunable existed
        ({}, MADVISE, ("", ""), False),  # musl and others
    ],
)
def test_wanted(environ, thp_mode, libc, expected):
    assert wanted(environ, thp_mode, libc) is expected


# A child that restarts itself where wanted, then mallocs and touches 64 MiB and reports its huge pages.
CHILD = """
import ctypes, os, sys
print("start", os.getpid(), flush=True)
from research.huge_pages import use_huge_pages
use_huge_pages()
size, libc = 64 << 20, ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
ctypes.memset(libc.malloc(ctypes.c_size_t(size)), 1, size)
huge = [line for line in open("/proc/self/smaps_rollup") if line.startswith("AnonHugePages:")]
print("huge kB", int(huge[0].split()[1]) if huge else 0, os.environ.get("GLIBC_TUNABLES", ""))
"""


def run_child(tunables: str | None, tmp_path: Path) -> tuple[list[str], int, str]:
    env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
    env |= {"GLIBC_TUNABLES": tunables} if tunables is not None else {}
    env["PYTHONPATH"] = str(ROOT)
    (script := tmp_path / "child.py").write_text(CHILD)
    out = subprocess.run([sys.executable, script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    _, _, kb, *rest = lines[-1].split(" ") + [""]
    return [line for line in lines if line.startswith("start")], int(kb), rest[0]


@pytest.mark.skipif(sys.platform != "linux" or not THP_MODE.exists(), reason="transparent huge pages are Linux's")
def test_restart_gives_huge_pages_and_the_opt_out_keeps_small_ones(tmp_path):
    restarts = wanted({}, THP_MODE.read_text(), platform.libc_ver())
    starts, huge_kb, tunables = run_child(None, tmp_path)
    assert len(starts) == (2 if restarts else 1) and len(set(starts)) == 1  # the same process, started again
    assert (TUNABLE in tunables) is restarts
    if restarts:
        assert huge_kb >= 2048  # the 64 MiB block lies (at least partly) on 2 MiB pages
        starts, small_kb, _ = run_child(f"{TUNABLE}=0", tmp_path)
        assert len(starts) == 1 and small_kb < huge_kb


@pytest.mark.skipif(sys.platform != "linux" or not THP_MODE.exists(), reason="transparent huge pages are Linux's")
def test_a_script_run_in_this_process_does_not_restart_it(monkeypatch):
    def execv(*args):
        raise AssertionError(f"restarted the test process: {args}")

    monkeypatch.setattr(os, "execv", execv)
    monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
    monkeypatch.setattr(sys, "argv", ["experiments/run.py", "--backend", "jax"])  # as runpy's callers set it
    use_huge_pages()
    assert "GLIBC_TUNABLES" not in os.environ
