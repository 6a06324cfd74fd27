"""One process at a time in a run directory: an OS-level lock that a killed run cannot leave behind.

Two agents on one grid point, or a job resubmitted while the first still runs, would otherwise both train
and write the same checkpoints and record. `claim` takes an exclusive `flock` on `run_dir/.lock`; the
kernel drops it when the holder exits, however it exits (kill -9 included), so no stale lock survives.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO

LOCK = ".lock"  # the lock file in a run directory; it holds the pid of the process that took it


class RunDirBusy(RuntimeError):
    """Another live process holds the run directory."""


def claim(run_dir: Path) -> IO[str]:
    """Lock `run_dir` for this process; the returned file holds the lock until `release` (or exit)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    handle = (run_dir / LOCK).open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "unknown"
        handle.close()
        raise RunDirBusy(
            f"run directory {run_dir} is in use by another process (pid {holder}); wait for it to finish, "
            "or give this run another --run.name"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    return handle


def release(handle: IO[str]) -> None:
    fcntl.flock(handle, fcntl.LOCK_UN)
    handle.close()
