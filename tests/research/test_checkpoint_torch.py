"""Checkpoints: one file published atomically, the previous one kept, bad files detected and skipped."""

import logging

import pytest
import torch
from torch import nn

from research.checkpoint_files import CheckpointError, previous, publish
from research.torch import checkpoint


def model(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))


def saved_twice(tmp_path):
    """last.safetensors holds epoch 2 (seed-2 weights), its previous epoch 1 (seed-1 weights)."""
    path = tmp_path / "last.safetensors"
    for epoch in (1, 2):
        net, opt = trained(epoch)
        checkpoint.save(path, net.state_dict(), {"epoch": epoch}, opt.state_dict())
    return path


def trained(seed: int) -> tuple[nn.Module, torch.optim.Optimizer]:
    """A model after one AdamW step (its optimizer has state to save)."""
    net = model(seed)
    opt = torch.optim.AdamW(net.parameters(), lr=0.1)
    net(torch.randn(5, 4)).sum().backward()
    opt.step()
    return net, opt


def weights_of(path, **kw) -> tuple[dict, torch.Tensor]:
    net = model(0)
    meta = checkpoint.load(path, net, **kw)
    return meta, net[0].weight.detach().clone()


def test_round_trip_restores_model_optimizer_and_meta(tmp_path):
    path = saved_twice(tmp_path)
    net = model(0)
    opt = torch.optim.AdamW(net.parameters(), lr=0.1)
    assert checkpoint.load(path, net, opt) == {"epoch": 2}
    expected, _ = trained(2)
    assert all(
        torch.equal(a, b) for a, b in zip(net.state_dict().values(), expected.state_dict().values(), strict=True)
    )
    assert opt.state_dict()["state"][0]["step"].item() == 1
    assert previous(path).exists() and checkpoint.read_meta(previous(path)) == {"epoch": 1}


@pytest.mark.parametrize("damage", ["truncate", "flip_a_byte", "delete"])
def test_a_damaged_last_falls_back_to_the_previous_checkpoint(tmp_path, damage, caplog):
    path = saved_twice(tmp_path)
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "flip_a_byte":  # inside the tensor data, after the header: only the hash can tell
        path.write_bytes(data[:-3] + bytes([data[-3] ^ 0xFF]) + data[-2:])
    else:  # a crash between the two renames of `publish`
        path.unlink()
    with caplog.at_level(logging.WARNING):
        meta, _ = weights_of(path)
    assert meta == {"epoch": 1}
    if damage != "delete":
        assert "unreadable" in caplog.text and str(path) in caplog.text


def test_no_good_checkpoint_is_a_clear_error_naming_both_files(tmp_path):
    path = saved_twice(tmp_path)
    for p in (path, previous(path)):
        p.write_bytes(p.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="last.safetensors.*last.previous.safetensors"):
        weights_of(path)


def test_a_failed_write_leaves_the_published_checkpoint_untouched(tmp_path):
    path = saved_twice(tmp_path)
    before = path.read_bytes()

    def crash(tmp):
        tmp.write_bytes(b"half a file")
        raise OSError("disk full")

    with pytest.raises(CheckpointError) as err:  # a one-line error naming the file (issue 21), not a traceback
        publish(path, crash)
    assert str(err.value) == f"cannot write checkpoint {path}: OSError: disk full"
    assert path.read_bytes() == before and checkpoint.read_meta(path) == {"epoch": 2}
    assert not path.with_name(f"{path.name}.tmp").exists()
