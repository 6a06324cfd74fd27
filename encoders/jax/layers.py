"""Flax NNX layers with torch's semantics and torch's default initialisation.

torch builds these in; flax's differ in small ways that break parity or change training: LayerNorm eps
(1e-6 in flax, 1e-5 in torch), GELU (tanh approximation by default in jax, exact erf in torch), BatchNorm
(flax's momentum is 1 - torch's and it keeps the biased batch variance in its running statistics),
initialisation (flax's lecun-normal kernels and zero biases, torch's uniform +-1/sqrt(fan_in) for both).
The constructors are named after the torch layers they stand for, so that a jax twin reads
`layers.Linear(dim, 4 * dim, rngs=rngs)` where the torch file reads `nn.Linear(dim, 4 * dim)`.

Layouts are channels last, as in flax: Conv1d takes (B, T, C), Conv2d (B, H, W, C), BatchNorm (..., C).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx


class Buffer(nnx.Variable):
    """A persistent array that is not trained (torch's `register_buffer`): converted and checkpointed."""


def torch_uniform(fan_in: int):
    """Initialiser U(-1/sqrt(fan_in), 1/sqrt(fan_in)): torch's default for Linear/Conv weights and biases."""
    bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0

    def init(key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32) -> jax.Array:
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def Linear(din: int, dout: int, *, bias: bool = True, rngs: nnx.Rngs) -> nnx.Linear:  # noqa: N802
    """torch.nn.Linear: kernel (din, dout) = torch weight transposed."""
    init = torch_uniform(din)
    return nnx.Linear(din, dout, use_bias=bias, kernel_init=init, bias_init=init, rngs=rngs)


def Conv1d(  # noqa: N802
    cin: int,
    cout: int,
    kernel: int,
    *,
    stride: int = 1,
    padding: int = 0,
    dilation: int = 1,
    bias: bool = True,
    rngs: nnx.Rngs,
) -> nnx.Conv:
    """torch.nn.Conv1d on (B, T, C) inputs: kernel (k, cin, cout), zero padding on both sides."""
    init = torch_uniform(cin * kernel)
    return nnx.Conv(
        cin, cout, (kernel,), strides=(stride,), padding=((padding, padding),), kernel_dilation=(dilation,),
        use_bias=bias, kernel_init=init, bias_init=init, rngs=rngs,
    )  # fmt: skip


def Conv2d(  # noqa: N802
    cin: int, cout: int, kernel: int, *, stride: int = 1, padding: int = 0, bias: bool = True, rngs: nnx.Rngs
) -> nnx.Conv:
    """torch.nn.Conv2d on (B, H, W, C) inputs: kernel (k, k, cin, cout), zero padding on every side."""
    init = torch_uniform(cin * kernel * kernel)
    return nnx.Conv(
        cin, cout, (kernel, kernel), strides=(stride, stride), padding=((padding, padding),) * 2,
        use_bias=bias, kernel_init=init, bias_init=init, rngs=rngs,
    )  # fmt: skip


def LayerNorm(dim: int, *, eps: float = 1e-5, rngs: nnx.Rngs) -> nnx.LayerNorm:  # noqa: N802
    """torch.nn.LayerNorm over the last axis (eps 1e-5, not flax's 1e-6); `scale` is torch's weight."""
    return nnx.LayerNorm(dim, epsilon=eps, rngs=rngs)


def Embed(n: int, dim: int, *, rngs: nnx.Rngs) -> nnx.Embed:  # noqa: N802
    """torch.nn.Embedding: rows drawn from N(0, 1); `embedding` is torch's weight."""
    return nnx.Embed(n, dim, embedding_init=jax.nn.initializers.normal(1.0), rngs=rngs)


def gelu(x: jax.Array) -> jax.Array:
    """torch.nn.GELU: the exact erf form (jax.nn.gelu defaults to the tanh approximation)."""
    return jax.nn.gelu(x, approximate=False)


class Dropout(nnx.Dropout):
    """torch.nn.Dropout: x * (mask / (1 - rate)), the form of torch's kernel, with nnx.Dropout's mask from the same
    key. nnx.Dropout selects between x / (1 - rate) and 0, whose forward + backward XLA:CPU runs in a pre-norm
    block's MLP (LayerNorm, Linear, GELU, Linear, dropout, residual) in 19 ms against 8 ms multiplied
    (docs/training.md, "Measured"). As in torch, a masked non-finite x gives NaN, not 0."""

    def __call__(self, x: jax.Array) -> jax.Array:
        if self.deterministic or self.rate == 0.0:
            return x
        keep = jax.random.bernoulli(self.rngs(), 1.0 - self.rate, x.shape)
        scale = 1.0 / (1.0 - self.rate) if self.rate < 1.0 else 0.0
        return x * jnp.where(keep, scale, 0.0).astype(x.dtype)


class BatchNorm(nnx.Module):
    """torch.nn.BatchNorm{1,2}d over the last axis of (..., C).

    Training (use_running_average False): normalise by the batch mean and biased variance, and update
        running = (1 - momentum) running + momentum stat   (torch's convention; flax's momentum is 1 - this)
    with the *unbiased* batch variance, as torch does; count batches in num_batches_tracked. Evaluation
    (`model.eval()` sets use_running_average True): normalise by the running statistics.
    """

    def __init__(self, features: int, *, momentum: float = 0.1, eps: float = 1e-5, rngs: nnx.Rngs):
        self.scale = nnx.Param(jnp.ones(features))
        self.bias = nnx.Param(jnp.zeros(features))
        self.running_mean = nnx.BatchStat(jnp.zeros(features))
        self.running_var = nnx.BatchStat(jnp.ones(features))
        self.num_batches_tracked = nnx.BatchStat(jnp.zeros((), jnp.int32))
        self.momentum, self.eps = momentum, eps
        self.use_running_average = False

    def __call__(self, x: jax.Array) -> jax.Array:
        """x (..., C) -> (..., C)."""
        if self.use_running_average:
            mean, var = self.running_mean[...], self.running_var[...]
        else:
            axes = tuple(range(x.ndim - 1))
            n = math.prod(x.shape[:-1])
            mean = x.astype(jnp.float32).mean(axes)  # (C,)
            var = jnp.square(x.astype(jnp.float32) - mean).mean(axes)  # (C,) biased
            m = self.momentum
            unbiased = var * (n / max(n - 1, 1))
            self.running_mean[...] = (1 - m) * self.running_mean[...] + m * jax.lax.stop_gradient(mean)
            self.running_var[...] = (1 - m) * self.running_var[...] + m * jax.lax.stop_gradient(unbiased)
            self.num_batches_tracked[...] = self.num_batches_tracked[...] + 1
        # y = x a + b per channel, a = scale / sqrt(var + eps), b = bias - mean a: torch's CPU kernel's form
        # (batch_norm_cpu_collect_linear_and_constant_terms), one pass over x, whose backward XLA:CPU runs in
        # 27 ms where (x - mean) / sqrt(var + eps) * scale + bias took 35-38 (face_cnn, docs/training.md).
        a = self.scale[...] * jax.lax.rsqrt(var + self.eps)  # (C,)
        return x * a.astype(x.dtype) + (self.bias[...] - mean * a).astype(x.dtype)


class PReLU(nnx.Module):
    """torch.nn.PReLU(channels) on (..., C): max(0, x) + weight * min(0, x), one slope per channel (init 0.25)."""

    def __init__(self, channels: int, *, init: float = 0.25, rngs: nnx.Rngs):
        self.weight = nnx.Param(jnp.full((channels,), init))

    def __call__(self, x: jax.Array) -> jax.Array:
        return jnp.where(x >= 0, x, self.weight[...].astype(x.dtype) * x)


class MaxPool2d(nnx.Module):
    """torch.nn.MaxPool2d(kernel, stride, padding) on (B, H, W, C); the padding is -inf, so it never wins."""

    def __init__(self, kernel: int, stride: int, padding: int = 0):
        self.kernel, self.stride, self.padding = kernel, stride, padding

    def __call__(self, x: jax.Array) -> jax.Array:
        k, s, p = self.kernel, self.stride, self.padding
        return nnx.max_pool(x, (k, k), (s, s), ((p, p), (p, p)))


def adaptive_avg_pool2d(x: jax.Array, size: int) -> jax.Array:
    """torch.nn.AdaptiveAvgPool2d((size, size)) on x (B, H, W, C) -> (B, size, size, C).

    Output cell i averages the rows floor(i H / size) .. ceil((i + 1) H / size) - 1 (the same for columns), so
    cells may overlap, and a map smaller than size x size is repeated.
    """

    def bins(n: int) -> jax.Array:
        """(size, n) averaging weights along one axis."""
        i = jnp.arange(size)[:, None]
        start, end = (i * n) // size, -((-(i + 1) * n) // size)
        inside = (jnp.arange(n) >= start) & (jnp.arange(n) < end)  # (size, n)
        return inside / (end - start)

    return jnp.einsum("ih,bhwc,jw->bijc", bins(x.shape[1]).astype(x.dtype), x, bins(x.shape[2]).astype(x.dtype))
