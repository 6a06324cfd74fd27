"""The run-directory lock: a second process refuses clearly, and a killed holder leaves no stale lock."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from research.rundir import RunDirBusy, claim, release

ROOT = Path(__file__).resolve().parents[2]
HOLD = """
import pathlib, sys, time
from research.rundir import claim
handle = claim(pathlib.Path(sys.argv[1]))
print("held", flush=True)
time.sleep(60)
"""


def test_a_second_claim_refuses_naming_the_holder_and_release_frees_it(tmp_path):
    handle = claim(tmp_path)
    with pytest.raises(RunDirBusy, match=f"{tmp_path}.*pid {os.getpid()}"):
        claim(tmp_path)
    release(handle)
    release(claim(tmp_path))


def test_a_process_killed_with_sigkill_leaves_no_stale_lock(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)], cwd=ROOT, stdout=subprocess.DEVNULL)
    lock = tmp_path / ".lock"
    try:
        deadline = time.monotonic() + 120  # a holder that never takes the lock fails the test, never hangs it
        while not (lock.exists() and lock.read_text().strip() == str(holder.pid)):
            assert holder.poll() is None and time.monotonic() < deadline, "the holder did not take the lock"
            time.sleep(0.05)
        with pytest.raises(RunDirBusy, match=f"pid {holder.pid}"):
            claim(tmp_path)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    release(claim(tmp_path))


def test_run_py_refuses_a_run_directory_in_use(tmp_path):
    run_dir = tmp_path / "runs" / "busy"
    args = [
        f"--run.out={tmp_path / 'runs'}", "--run.name=busy", "--run.wandb=disabled", "--run.progress=false",
        f"--data.root={tmp_path / 'data'}", "--data.synthetic.identities=4", "--data.synthetic.samples_per_identity=4",
        "--data.voice_seconds=0.2", "--data.batch_size=4", "--model.dim=16", "--optim.epochs=1",
    ]  # fmt: skip
    handle = claim(run_dir)
    try:
        cmd = [sys.executable, "experiments/run.py", *args]
        out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    finally:
        release(handle)
    assert out.returncode == 2, out.stderr[-2000:]
    assert f"error: run directory {run_dir} is in use by another process (pid {os.getpid()})" in out.stderr
    assert not (run_dir / "record.json").exists() and not list(run_dir.glob("*.safetensors"))
