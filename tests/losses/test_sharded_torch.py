"""Sharded class centres on 2 gloo processes: loss and gradients equal the unsharded head (every margin head).

With negative-centre sampling, the reference is the unsharded head restricted to the sampled centres (the
union of both ranks' samples), with the labels renumbered into that subset.
"""

import datetime
import os
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import losses
from losses.torch.sharded import ShardedHead, gather_batch

WORLD, CLASSES, DIM, ROWS = 2, 24, 6, 4  # ROWS samples per rank, 8 in the global batch
# sampling at r = 0.5 keeps max(ceil(0.5 * 12), 8) = 8 of each rank's 12 centres
BLOCK = CLASSES // WORLD
WEIGHTS = torch.linspace(0.5, 1.5, CLASSES)
CASES = [
    ("softmax", {}),
    ("softmax", {"label_smoothing": 0.1, "class_weights": WEIGHTS}),
    ("cosface", {}),
    ("arcface", {}),
    ("arcface", {"easy_margin": True, "label_smoothing": 0.1, "class_weights": WEIGHTS}),
    ("arcface", {"detach_margin": True}),  # the option lives in margin_logits, so block_logits applies it
    ("sphereface", {}),
    ("sphereface", {"lambda_base": 0.0, "lambda_min": 0.0}),  # the full margin, lambda = 0
    ("sphereface", {"scale": 30.0}),
    ("sphereface_r", {}),
    ("sphereface_r", {"version": "v0", "normalization": "soft"}),
    ("sphereface2", {}),
    ("sphereface2", {"margin_type": "A", "margin": 0.5}),
]


def rows_of(head: torch.nn.Module) -> list[torch.Tensor]:
    """The per-class parameters of a head (centres, or the linear weight and bias)."""
    return [head.linear.weight, head.linear.bias] if hasattr(head, "linear") else [head.weight]


def build(name: str, kwargs: dict, index: torch.Tensor, full: torch.nn.Module) -> torch.nn.Module:
    """The head on the classes `index` of `full`, with its parameters copied (and its class weights sliced)."""
    kwargs = dict(kwargs)
    if "class_weights" in kwargs:
        kwargs["class_weights"] = kwargs["class_weights"][index]
    head = losses.build("torch", name, dim=DIM, classes=len(index), **kwargs)
    with torch.no_grad():
        for mine, theirs in zip(rows_of(head), rows_of(full), strict=True):
            mine.copy_(theirs[index])
        if hasattr(full, "bias") and not hasattr(full, "linear"):
            head.bias.copy_(full.bias)
    return head


def check(rank: int, name: str, kwargs: dict, sample_rate: float) -> None:
    torch.manual_seed(0)  # same full head and data on every rank
    full = losses.build("torch", name, dim=DIM, classes=CLASSES, **kwargs)
    x = torch.randn(WORLD * ROWS, DIM) * 3.0
    labels = torch.tensor([0, 17, 3, 3, 21, 5, -1, 13])  # sample 6 is dropped (label -1)
    keep = labels >= 0
    offset = rank * BLOCK
    sharded = ShardedHead(
        build(name, kwargs, torch.arange(offset, offset + BLOCK), full),
        offset=offset,
        classes=CLASSES,
        sample_rate=sample_rate,
    )
    if hasattr(full, "bias") and not hasattr(full, "linear"):
        sharded.head.bias.data.copy_(full.bias.data)
    mine = x[rank * ROWS : (rank + 1) * ROWS].clone().requires_grad_()
    loss, _ = sharded(gather_batch(mine), labels, keep)
    loss.backward()

    index = torch.arange(CLASSES)
    if sample_rate < 1.0:
        parts = [torch.empty_like(sharded.sampled) for _ in range(WORLD)]
        dist.all_gather(parts, sharded.sampled)
        index = torch.cat([p + r * BLOCK for r, p in enumerate(parts)])
        assert len(index) < CLASSES and set(labels[keep].tolist()) <= set(index.tolist()), index
    reference = build(name, kwargs, index, full)
    x_ref = x.clone().requires_grad_()
    ref_labels = torch.where(keep, torch.searchsorted(index, labels), labels)
    ref_loss, _ = reference(x_ref, ref_labels, keep)
    ref_loss.backward()

    what = f"{name} {kwargs} r={sample_rate}"
    torch.testing.assert_close(loss, ref_loss, atol=1e-5, rtol=1e-5, msg=what)
    torch.testing.assert_close(mine.grad, x_ref.grad[rank * ROWS : (rank + 1) * ROWS], atol=1e-5, rtol=1e-5, msg=what)
    ours = torch.isin(index, torch.arange(offset, offset + BLOCK))  # the reference rows this rank holds
    for got, want in zip(rows_of(sharded.head), rows_of(reference), strict=True):
        grad = got.grad
        if sample_rate < 1.0:
            unsampled = torch.ones(BLOCK, dtype=torch.bool)
            unsampled[sharded.sampled] = False
            assert torch.all(grad[unsampled] == 0), what
            grad = grad[sharded.sampled]
        torch.testing.assert_close(grad, want.grad[ours], atol=1e-5, rtol=1e-5, msg=what)
    if name == "sphereface2":  # the shared bias: the sum of the blocks' shares
        bias_grad = sharded.head.bias.grad.clone()
        dist.all_reduce(bias_grad)
        torch.testing.assert_close(bias_grad, reference.bias.grad, atol=1e-5, rtol=1e-5, msg=what)


def worker(rank: int, init_file: str) -> None:
    torch.set_num_threads(1)
    timeout = datetime.timedelta(seconds=60)  # every collective fails instead of hanging
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD, timeout=timeout)
    try:
        for name, kwargs in CASES:
            for sample_rate in (1.0, 0.5):
                check(rank, name, kwargs, sample_rate)
    finally:
        dist.destroy_process_group()
    os._exit(0)  # no interpreter finalisation: see test_ddp_torch.py (gloo teardown race)


def test_sharded_heads_equal_the_unsharded_head_on_two_gloo_ranks(tmp_path):
    context = mp.spawn(worker, args=(str(tmp_path / "rendezvous"),), nprocs=WORLD, join=False)
    end = time.monotonic() + 120.0  # bounded wall clock: kill the workers rather than hang CI
    while not context.join(timeout=max(1.0, end - time.monotonic())):
        if time.monotonic() > end:
            for process in context.processes:
                process.kill()
            raise AssertionError("sharded head workers did not finish within 120 s")
