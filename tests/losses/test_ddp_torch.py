"""Under DDP (2 CPU processes, gloo) every head's parameters and buffers stay identical across ranks."""

import os

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel

import losses

HEADS = ["softmax", "sphereface", "sphereface_r", "sphereface2", "cosface", "arcface", "mask_proxy"]


class Net(torch.nn.Module):
    def __init__(self, name: str):
        super().__init__()
        self.embed = torch.nn.Linear(6, 8)
        self.head = losses.build("torch", name, dim=8, classes=5)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x), y)[0]


def state(model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([t.detach().double().flatten() for t in [*model.parameters(), *model.buffers()]])


def gather(t: torch.Tensor) -> list[torch.Tensor]:
    out = [torch.zeros_like(t) for _ in range(dist.get_world_size())]
    dist.all_gather(out, t)
    return out


def worker(rank: int, world_size: int, init_file: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        for name in HEADS:
            torch.manual_seed(0)  # same initial model on every rank
            model = Net(name)
            initial = state(model)
            ddp = DistributedDataParallel(model)
            opt = torch.optim.SGD(ddp.parameters(), lr=0.5)
            g = torch.Generator().manual_seed(100 + rank)  # different data on every rank
            for _ in range(3):
                x, y = torch.randn(10, 6, generator=g), torch.randperm(10, generator=g) % 5
                loss = ddp(x, y)
                opt.zero_grad()
                loss.backward()
                opt.step()
            losses_seen = gather(loss.detach().reshape(1))
            assert not torch.equal(losses_seen[0], losses_seen[1]), f"{name}: ranks saw the same data"
            final = gather(state(model))
            assert not torch.equal(final[0], initial), f"{name}: nothing was trained"
            assert torch.equal(final[0], final[1]), f"{name}: parameters differ across ranks"
    finally:
        dist.destroy_process_group()
    # Leave without interpreter finalisation: a gloo worker thread may still be freeing the work of the
    # last collective, whose tensors need the GIL, and a thread that asks for the GIL during finalisation
    # aborts the process (torch 2.14: "terminate called without an active exception", about 1 run in 20).
    os._exit(0)


def test_class_centres_stay_identical_across_two_gloo_ranks(tmp_path):
    mp.spawn(worker, args=(2, str(tmp_path / "rendezvous")), nprocs=2, join=True)
