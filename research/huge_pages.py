"""Transparent huge pages for the large buffers of a training process (Linux with glibc).

XLA:CPU allocates each step's temporary buffers with malloc: 228 MB for the default model's early-fusion
step. glibc serves an allocation that large with a fresh mmap and gives it back with munmap, so every step
touches tens of thousands of new 4 KiB pages (56,000 page faults a step, measured), and the step's working
set misses the TLB page by page. glibc's tunable `glibc.malloc.hugetlb=1` makes malloc ask the kernel for
transparent huge pages (2 MiB) where the system leaves them to madvise: the jax step of the default model
is 15-25 % faster on the CPU, torch's 4 % (docs/training.md, "Measured").

The tunable is read when the process starts, so `use_huge_pages` starts the same program again with it
set (os.execv: the same process id, nothing has run yet). It does nothing where huge pages are on for
every allocation already (`always`), off (`never`), not Linux or not glibc, or where GLIBC_TUNABLES names
the tunable: `GLIBC_TUNABLES=glibc.malloc.hugetlb=0` keeps a program on 4 KiB pages. Nor where the process
was not started as this program (`python [options] script args`): a script run in another program's process
(runpy in a test, a notebook) would restart that program; `python -m module` is not restarted either.
"""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

TUNABLE = "glibc.malloc.hugetlb"
THP_MODE = Path("/sys/kernel/mm/transparent_hugepage/enabled")  # e.g. "always [madvise] never"


def wanted(environ: dict[str, str], thp_mode: str, libc: tuple[str, str]) -> bool:
    """Whether restarting with the tunable would change how malloc pages: the kernel leaves huge pages to
    madvise, glibc is 2.35 or newer (the tunable's first release) and nobody set the tunable."""
    name, version = libc
    if name != "glibc" or not version or TUNABLE in environ.get("GLIBC_TUNABLES", ""):
        return False
    return "[madvise]" in thp_mode and tuple(int(p) for p in version.split(".")[:2]) >= (2, 35)


def use_huge_pages() -> None:
    """Restart this program with `glibc.malloc.hugetlb=1` added to GLIBC_TUNABLES, where that helps."""
    if sys.platform != "linux" or not THP_MODE.exists() or sys.orig_argv[-len(sys.argv) :] != sys.argv:
        return
    if not wanted(dict(os.environ), THP_MODE.read_text(), platform.libc_ver()):
        return
    tunables = [t for t in os.environ.get("GLIBC_TUNABLES", "").split(":") if t] + [f"{TUNABLE}=1"]
    os.environ["GLIBC_TUNABLES"] = ":".join(tunables)
    sys.stdout.flush(), sys.stderr.flush()  # what was printed, once
    os.execv(sys.executable, sys.orig_argv)
