"""Failures say so in the record (issue 21): an exception after record.json exists leaves it "failed" with the
one-line reason; a rerun that finds a record but no checkpoint refuses to start over silently; a full disk
and an unreadable checkpoint are one `error:` line naming the file, exit 2. Each test reruns a copy of one
tiny run that stopped after its first of two epochs."""

import json
import pickle
import shutil
import sys
from pathlib import Path

import pytest
from safetensors import SafetensorError

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from experiments import run  # noqa: E402
from research import tracking  # noqa: E402


def args(out: Path, data_root: Path) -> list[str]:
    return [
        f"--run.out={out}",
        f"--data.root={data_root}",
        "--run.name=r",
        "--run.wandb=disabled",
        "--run.progress=false",
        "--data.synthetic.identities=8",
        "--data.synthetic.samples_per_identity=6",
        "--data.voice_seconds=0.5",
        "--data.batch_size=8",
        "--model.dim=16",
        "--model.layers=1",
        "--model.fusion_layers=1",
        "--modalities=face,voice",
        "--optim.epochs=2",
        "--eval.plots=false",
        "--eval.trials=100",
    ]


@pytest.fixture(scope="module")
def stopped(tmp_path_factory):
    """(run folder, data root) of a run stopped after epoch 1 of 2; do not modify (see `rerun`)."""
    folder = tmp_path_factory.mktemp("stopped")
    assert run.main([*args(folder / "runs", folder / "data"), "--run.stop_after_epoch=1"]) == 0
    return folder / "runs" / "r", folder / "data"


@pytest.fixture
def rerun(stopped, tmp_path):
    """A private copy of the stopped run: (its folder, rerun(*extra) -> exit status)."""
    run_dir = shutil.copytree(stopped[0], tmp_path / "runs" / "r")
    return run_dir, lambda *extra: run.main([*args(tmp_path / "runs", stopped[1]), *extra])


def record(run_dir: Path) -> dict:
    return json.loads((run_dir / "record.json").read_text())


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if not line.startswith("warning")]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


def test_an_error_after_the_record_exists_leaves_it_failed_with_the_reason(rerun, monkeypatch):
    run_dir, again = rerun

    def fail(self, paths):  # the last step before `finish`: the end-of-run evaluation has run
        raise ValueError("1:2 matching needs a subject with two samples\nand at least two subjects")

    monkeypatch.setattr(tracking.Tracker, "images", fail)
    with pytest.raises(ValueError):  # not a user error: the traceback stays
        again()
    found = record(run_dir)
    assert found["status"] == "failed" and len(found["history"]) == 2
    assert found["error"] == "ValueError: 1:2 matching needs a subject with two samples and at least two subjects"


def test_a_full_disk_is_one_line_naming_the_checkpoint(rerun, monkeypatch, capsys):
    run_dir, again = rerun
    before = (run_dir / "last.safetensors").read_bytes()
    full = 'Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "No space left on device" })'

    def save_file(*args, **kwargs):
        raise SafetensorError(full)

    monkeypatch.setattr("research.torch.checkpoint.save_file", save_file)
    assert again() == 2
    line = one_error_line(capsys)
    assert line.startswith(f"error: cannot write checkpoint {run_dir}/") and line.endswith(f"SafetensorError: {full}")
    assert record(run_dir)["status"] == "failed" and "No space left on device" in record(run_dir)["error"]
    assert (run_dir / "last.safetensors").read_bytes() == before  # the checkpoint of epoch 1 is intact


class Payload:
    """A pickle that would create a file when loaded: it must never be."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.mark.parametrize("damage", ["both_zeros", "pickle"])
def test_an_unreadable_last_checkpoint_is_one_line_before_any_work(rerun, tmp_path, capsys, damage):
    """Both `last` copies corrupt, or a pickle renamed last.safetensors (never unpickled): one line, the record
    left as it was ("interrupted", not "running")."""
    run_dir, again = rerun
    last, older, marker = run_dir / "last.safetensors", run_dir / "last.previous.safetensors", tmp_path / "pickle-ran"
    if damage == "pickle":
        last.write_bytes(pickle.dumps(Payload(marker)))
    else:
        last.write_bytes(b"\x00" * 64)
        older.write_bytes(b"\x00" * 64)
    before = (run_dir / "record.json").read_bytes()
    assert again() == 2
    line = one_error_line(capsys)
    assert line.startswith(f"error: run.resume: no readable checkpoint to resume from ({last}: SafetensorError: ")
    assert (f"{older}: missing" if damage == "pickle" else f"{older}: SafetensorError: ") in line
    assert line.endswith(
        "); rerun with --run.resume=false to start over (replacing its record), or give another --run.name"
    )
    assert (run_dir / "record.json").read_bytes() == before and record(run_dir)["status"] == "interrupted"
    assert not marker.exists()


def test_a_checkpoint_whose_content_fails_its_hash_is_one_line_and_the_record_failed(rerun, capsys):
    """The header opens, so only loading finds it: after the record was taken up, which then says "failed"."""
    run_dir, again = rerun
    last = run_dir / "last.safetensors"
    data = last.read_bytes()
    last.write_bytes(data[:-3] + bytes([data[-3] ^ 0xFF]) + data[-2:])
    assert again() == 2
    line = one_error_line(capsys)
    assert line.startswith(f"error: no readable checkpoint: {last}: CheckpointError: {last}: content does not match")
    found = record(run_dir)
    assert found["status"] == "failed" and found["error"] == "CheckpointError: " + line[len("error: ") :]
    assert len(found["history"]) == 1


def test_a_record_without_a_checkpoint_is_not_silently_started_over(rerun, capsys):
    run_dir, again = rerun
    (run_dir / "last.safetensors").unlink()
    before = (run_dir / "record.json").read_bytes()
    assert again() == 2
    line = one_error_line(capsys)
    assert line == (
        f"error: run.resume: {run_dir / 'record.json'} holds 1 epoch(s) but there is no checkpoint to resume from "
        "(last.safetensors and last.previous.safetensors are missing); rerun with --run.resume=false to start over "
        "(replacing its record), or give another --run.name"
    )
    assert (run_dir / "record.json").read_bytes() == before  # nothing trained, the history kept
