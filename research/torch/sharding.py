"""Sharded class centres (loss.shard_centres) under torchrun: each rank holds a block of C / N rows of every
head (losses/torch/sharded.py), and checkpoints still hold whole matrices (full_state / own_state).

research/torch/model.py builds the heads whole (it does not know the world); shard_heads replaces them after
build_model, before the model moves to its device, so a rank's device only ever holds its block.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from losses.torch.common import ClassHead
from losses.torch.sharded import ShardedHead, gather_batch
from research.torch.distributed import World


class ShardedStream(ShardedHead):
    """A stream head whose centres are split across ranks, called as the model calls a head.

    In train mode each rank brings its shard of the global batch: the embeddings (with the gradient of the
    global loss back to this rank's rows, times N because DDP averages the encoder's gradients over ranks),
    labels and keep flags are gathered, and the loss is the global batch's, the same on every rank. In eval
    mode every rank brings the same batch (the trainer's validation reads the whole split on every rank:
    the collectives need equal batches) and every centre counts (no sampling). `scores` gathers the class
    blocks into (b, C) logits for this rank's rows; they are not differentiable (the model detaches them).
    """

    def __init__(self, head: nn.Module, *, offset: int, classes: int, sample_rate: float, world: World):
        super().__init__(head, offset=offset, classes=classes, sample_rate=sample_rate)
        self.world, self.train_rate = world, sample_rate
        for p in self.replicated():  # DDP averages: N times this rank's share averages to their sum
            p.register_hook(lambda grad: grad * world.size)

    def train(self, mode: bool = True) -> ShardedStream:
        self.sample_rate = self.train_rate if mode else 1.0
        return super().train(mode)

    def block(self) -> list[nn.Parameter]:
        """The parameters with one row per class of this block (centres, or the softmax weight and bias)."""
        return [p for p in self.centres() if p is not None]

    def replicated(self) -> list[nn.Parameter]:
        """The head's parameters every rank holds whole (SphereFace2's bias)."""
        rows = {id(p) for p in self.block()}
        return [p for p in self.head.parameters() if id(p) not in rows]

    def forward(self, embedding: torch.Tensor, labels: torch.Tensor, keep: torch.Tensor | None = None):
        if self.training:
            embedding = gather_batch(_ScaleGrad.apply(embedding, float(self.world.size)))  # (N b, D)
            labels = _gather_rows(labels)  # (N b,)
            keep = None if keep is None else _gather_rows(keep.to(torch.uint8)).bool()  # (N b,), uint8 on the wire
        return super().forward(embedding, labels, keep)

    @torch.no_grad()
    def scores(self, embedding: torch.Tensor) -> torch.Tensor:
        rows = _gather_rows(embedding) if self.training else embedding  # (R, D)
        block = self.head.scores(rows).float()  # (R, C_b)
        sizes = block_sizes(self.classes, self.world.size)
        padded = block.new_zeros(rows.shape[0], max(sizes))
        padded[:, : block.shape[1]] = block
        parts = [torch.empty_like(padded) for _ in sizes]
        dist.all_gather(parts, padded)
        full = torch.cat([part[:, :size] for part, size in zip(parts, sizes, strict=True)], dim=1)  # (R, C)
        if not self.training:
            return full
        b = embedding.shape[0]
        return full[self.world.rank * b : (self.world.rank + 1) * b]  # (b, C)


class _ScaleGrad(torch.autograd.Function):
    """Identity forward; the gradient times `factor` backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, factor: float) -> torch.Tensor:
        ctx.factor = factor
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad * ctx.factor, None


def _gather_rows(x: torch.Tensor) -> torch.Tensor:
    """Equal-sized (b, ...) of every rank -> (N b, ...) in rank order, without gradient."""
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts)


def block_sizes(classes: int, world: int) -> list[int]:
    """Rows of each rank's block: ceil(C / N) each, the last ones what is left (C not divisible by N)."""
    size = math.ceil(classes / world)
    return [max(0, min(size, classes - r * size)) for r in range(world)]


def shard_heads(model: nn.Module, classes: int, sample_rate: float, world: World) -> None:
    """Replace every head of `model` (built whole, on the CPU) by this rank's block of its centres.

    A world of one keeps the ordinary heads (one block is the whole matrix; loss.sample_rate applies to
    sharded heads only)."""
    if world.size == 1:
        return
    sizes = block_sizes(classes, world.size)
    offset, size = sum(sizes[: world.rank]), sizes[world.rank]
    if min(sizes) == 0:
        raise ValueError(f"loss.shard_centres: {classes} classes cannot give each of {world.size} ranks a block")
    for stream, head in model.heads.items():
        if not isinstance(head, ClassHead):  # losses/torch/sharded.py
            raise ValueError(f"loss.shard_centres: no sharded form for the {type(head).__name__} head")
        model.heads[stream] = ShardedStream(
            _rows(head, offset, size), offset=offset, classes=classes, sample_rate=sample_rate, world=world
        )
    ignore_blocks(model)


def _rows(head: nn.Module, offset: int, size: int) -> nn.Module:
    """A copy of `head` holding the classes [offset, offset + size): the rows of its per-class parameters (what its
    `centres()` gives) and of its class weights."""
    block = copy.deepcopy(head)
    rows = slice(offset, offset + size)
    per_class = {id(p) for p in block.centres() if p is not None}
    for module in block.modules():
        for name, p in list(module.named_parameters(recurse=False)):
            if id(p) in per_class:
                setattr(module, name, nn.Parameter(p.detach()[rows].clone()))
    if getattr(block, "class_weights", None) is not None:  # SphereFace2 has none
        block.class_weights = block.class_weights[rows].clone()
    return block


def ignore_blocks(model: nn.Module) -> None:
    """Keep DDP away from the blocks: their gradients are already this rank's part of the global gradient
    (no all-reduce), and rank 0's rows must not be broadcast over the others' (parameters and class weights)."""
    names = []
    for name, module in sharded_streams(model):
        rows = {id(p) for p in module.block()}
        names += [f"{name}.{n}" for n, p in module.named_parameters() if id(p) in rows]
        names += [f"{name}.{n}" for n, b in module.named_buffers() if n.endswith("class_weights")]
    DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(model, names)


def clip_grad_norm(model: nn.Module, max_norm: float) -> torch.Tensor:
    """torch's clip_grad_norm_ over the whole model's gradient: the blocks' squared norms summed over ranks."""
    blocks = [p for _, s in sharded_streams(model) for p in s.block()]
    if not blocks:
        return torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
    rows = {id(p) for p in blocks}
    grads = [p.grad for p in model.parameters() if p.grad is not None and id(p) not in rows]
    mine = torch.nn.utils.get_total_norm([p.grad for p in blocks if p.grad is not None]) ** 2
    dist.all_reduce(mine)
    total = (torch.nn.utils.get_total_norm(grads) ** 2 + mine).sqrt()
    torch.nn.utils.clip_grads_with_norm_(model.parameters(), max_norm, total)
    return total


def full_state(model: nn.Module, optimizer, world: World) -> tuple[dict, dict | None]:
    """The state dicts of `model` and `optimizer` (or None) as a one-process run has them, so a checkpoint
    does not depend on the world size: each sharded head's block rows (and their AdamW moments) gathered
    to rank 0 into the whole matrix, under the unsharded head's names. Every rank calls it (a collective
    when heads are sharded); only rank 0's result is whole."""
    model_state = model.state_dict()
    optim_state = None if optimizer is None else optimizer.state_dict()
    for name, stream in sharded_streams(model):
        sizes = block_sizes(stream.classes, world.size)
        for key, p in stream.head.named_parameters():
            if any(p is q for q in stream.block()):
                model_state[f"{name}.head.{key}"] = _gather_block(model_state[f"{name}.head.{key}"], sizes, world)
                # a new slot dict: state_dict() shares the optimizer's live ones
                if optim_state is not None and (index := _index(optimizer, p)) in optim_state["state"]:
                    slots = optim_state["state"][index]
                    gathered = {k: _gather_block(v, sizes, world) for k, v in slots.items() if _rows_of(v)}
                    optim_state["state"][index] = slots | gathered
        prefix = f"{name}.head."
        model_state = {
            k.replace(prefix, f"{name}.", 1) if k.startswith(prefix) else k: v for k, v in model_state.items()
        }
    return model_state, optim_state


def own_state(model: nn.Module, optimizer, model_state: dict, optim_state: dict | None) -> tuple[dict, dict | None]:
    """The reverse of full_state on every rank: this rank's block rows of a whole checkpoint's matrices."""
    for name, stream in sharded_streams(model):
        rows = slice(stream.offset, stream.offset + stream.centres()[0].shape[0])
        prefix = f"{name}."
        model_state = {
            k.replace(prefix, f"{name}.head.", 1) if k.startswith(prefix) else k: v for k, v in model_state.items()
        }
        for key, p in stream.head.named_parameters():
            if any(p is q for q in stream.block()):
                model_state[f"{name}.head.{key}"] = model_state[f"{name}.head.{key}"][rows]
                if optim_state is not None and (index := _index(optimizer, p)) in optim_state["state"]:
                    slots = optim_state["state"][index]
                    optim_state["state"][index] = slots | {k: v[rows] for k, v in slots.items() if _rows_of(v)}
    return model_state, optim_state


def _rows_of(value) -> bool:
    """Whether an optimizer slot has a row per class (AdamW's moments; not its step count)."""
    return torch.is_tensor(value) and value.ndim > 0


def sharded_streams(model: nn.Module) -> list[tuple[str, ShardedStream]]:
    """(name, head) of every sharded head in `model`."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, ShardedStream)]


def _index(optimizer, param: nn.Parameter) -> int:
    """The key of `param` in optimizer.state_dict()["state"]: its position over the parameter groups."""
    params = [p for group in optimizer.param_groups for p in group["params"]]
    return next(i for i, p in enumerate(params) if p is param)


def _gather_block(block: torch.Tensor, sizes: list[int], world: World) -> torch.Tensor:
    """Every rank's (C_r, ...) rows -> the whole (C, ...) on rank 0 (padded to equal size for the gather)."""
    padded = block.new_zeros((max(sizes), *block.shape[1:]))
    padded[: len(block)] = block
    parts = [torch.empty_like(padded) for _ in sizes] if world.is_main else None
    dist.gather(padded, parts, dst=0)
    return torch.cat([part[:size] for part, size in zip(parts, sizes, strict=True)]) if world.is_main else block
