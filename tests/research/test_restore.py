"""research/restore.py restores the checkpoint a run's report evaluated."""

from research.restore import evaluated_checkpoint


def test_the_average_of_the_last_epochs_when_there_is_one_else_the_best_epoch(tmp_path):
    (tmp_path / "best.safetensors").write_bytes(b"")
    assert evaluated_checkpoint(tmp_path) == tmp_path / "best.safetensors"
    (tmp_path / "averaged.safetensors").write_bytes(b"")  # eval.average_last: the report evaluated this one
    assert evaluated_checkpoint(tmp_path) == tmp_path / "averaged.safetensors"
