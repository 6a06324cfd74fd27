"""Sharded class centres (loss.shard_centres) over the mesh's "model" axis: each device holds C / N rows of
every head's centres and their Adam moments (Partial FC's layout), and the training step computes the heads'
loss with losses/jax/sharded.py; the twin of research/torch/sharding.py.

research/jax/model.py builds plain heads (it does not know the mesh); the trainer wraps them only inside the
traced step (step_heads), so the train state, the checkpoints (the whole centre matrix, under an unsharded
run's keys) and evaluation keep the plain heads.
"""

from __future__ import annotations

import contextlib

import jax
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from losses.jax.sharded import ShardedHead
from research.config import Config


class StepHead(ShardedHead):
    """A head whose class centres are split along the mesh's "model" axis for one training step, with this
    step's key for negative-centre sampling. FusionModel also asks a head for its scores (the decision): those
    come from the plain head, and XLA partitions them over the split centres."""

    def __init__(self, head: nnx.Module, *, mesh: Mesh, sample_rate: float, key: jax.Array):
        super().__init__(head, mesh=mesh, sample_rate=sample_rate)
        self.key = nnx.data(key)

    def __call__(self, embedding: jax.Array, labels: jax.Array, keep: jax.Array | None = None):
        return super().__call__(embedding, labels, keep, key=self.key)

    def scores(self, embedding: jax.Array) -> jax.Array:
        return self.head.scores(embedding)


@contextlib.contextmanager
def step_heads(model: nnx.Module, cfg: Config, mesh: Mesh, key: jax.Array):
    """With loss.shard_centres, every head of `model` a StepHead inside the block (negative-centre samples
    from `key`, others for each head), the plain heads again after it: the state keeps their layout."""
    heads = dict(model.heads) if cfg.loss.shard_centres else {}
    for i, s in enumerate(sorted(heads)):
        kw = {"mesh": mesh, "sample_rate": cfg.loss.sample_rate, "key": jax.random.fold_in(key, 2 + i)}
        model.heads[s] = StepHead(heads[s], **kw)
    yield
    for s, head in heads.items():
        model.heads[s] = head


def state_shardings(state: dict, mesh: Mesh, cfg: Config):
    """Where each train-state leaf lives: replicated, except with loss.shard_centres the heads' class centres
    (C, D) (softmax: its kernel (D, C) and bias (C,)) and their Adam moments, split along "model"."""

    def spec(path, _) -> NamedSharding:
        names = tuple(k.key for k in path if isinstance(k, jax.tree_util.DictKey))
        split = PartitionSpec()
        if cfg.loss.shard_centres and "heads" in names:
            if names[-1] == "weight":
                split = PartitionSpec("model", None)
            elif names[-2:] == ("linear", "kernel"):
                split = PartitionSpec(None, "model")
            elif names[-2:] == ("linear", "bias"):
                split = PartitionSpec("model")
        return NamedSharding(mesh, split)

    return jax.tree_util.tree_map_with_path(spec, state)
