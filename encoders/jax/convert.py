"""Weights between a torch module's state dict and its NNX twin, in both directions.

The twins mirror torch's attribute names (nn.Sequential -> nnx.Sequential, nn.ModuleList -> nnx.List,
nn.ModuleDict -> nnx.Dict), so the key map is a rule per NNX variable, driven from the NNX side:
- the path joined with ".", without the `layers` segment that nnx.Sequential adds;
- leaf names that flax spells differently: `kernel`, `scale`, `embedding` -> torch's `weight`;
- layouts: Linear kernel (I, O) = weight (O, I) transposed; Conv kernels are channels last,
  (k, I, O) / (kh, kw, I, O) = torch's (O, I, k) / (O, I, kh, kw) with the axes moved;
- RENAMES: the few keys that differ by design (below, each with its reason).
Only Param, BatchStat and Buffer variables are converted: torch's parameters and persistent buffers.
Converting is exact (transposes only), so torch -> jax -> torch gives back the same bits.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from flax import nnx

from encoders.jax.layers import Buffer

# NNX key suffix -> torch key suffix, for keys whose names differ by design.
RENAMES: dict[str, str] = {
    # LogMel (encoders/*/frontend.py): torch keeps them inside torchaudio's MelSpectrogram, jax on LogMel itself.
    "hann_window": "mel.spectrogram.window",
    "mel_filterbank": "mel.mel_scale.fb",
}

CONVERTED = (nnx.Param, nnx.BatchStat, Buffer)
# Torch keeps these buffers as int64; jax (without x64) as int32.
INT64_LEAVES = ("num_batches_tracked", "step")  # BatchNorm's batch count, SphereFace's annealing step


def variables(module: nnx.Module) -> dict[str, nnx.Variable]:
    """{torch key: NNX variable} for every converted variable of `module`."""
    nodes = dict(nnx.iter_graph(module))
    sequential = {path for path, node in nodes.items() if isinstance(node, nnx.Sequential)}
    found = {}
    for path, node in nodes.items():
        if isinstance(node, CONVERTED):
            parts = [str(p) for i, p in enumerate(path) if not (p == "layers" and path[:i] in sequential)]
            found[torch_key(".".join(parts))] = node
    return found


def torch_key(jax_key: str) -> str:
    """Dotted NNX path (Sequential segments dropped) -> torch state-dict key."""
    for suffix, torch_suffix in RENAMES.items():
        if jax_key == suffix or jax_key.endswith("." + suffix):
            return jax_key[: len(jax_key) - len(suffix)] + torch_suffix
    head, _, leaf = jax_key.rpartition(".")
    leaf = "weight" if leaf in ("kernel", "scale", "embedding") else leaf
    return f"{head}.{leaf}" if head else leaf


def to_torch_layout(leaf: str, value: np.ndarray) -> np.ndarray:
    """An NNX variable's array in torch's layout (`leaf` is the NNX leaf name)."""
    if leaf == "kernel" and value.ndim >= 2:
        return np.ascontiguousarray(np.moveaxis(value, (-1, -2), (0, 1)) if value.ndim > 2 else value.T)
    if leaf in INT64_LEAVES:
        return value.astype(np.int64)
    return value


def to_jax_layout(leaf: str, value: np.ndarray) -> np.ndarray:
    """Inverse of `to_torch_layout`."""
    if leaf == "kernel" and value.ndim >= 2:
        return np.moveaxis(value, (0, 1), (-1, -2)) if value.ndim > 2 else value.T
    if leaf in INT64_LEAVES:
        return value.astype(np.int32)
    return value


def to_nnx(state: dict[str, np.ndarray], module: nnx.Module) -> None:
    """Load a torch state dict (values as NumPy arrays) into `module` in place, strictly.

    Raises KeyError naming the missing and unexpected keys, ValueError on a shape mismatch.
    """
    targets = variables(module)
    missing, unexpected = sorted(set(targets) - set(state)), sorted(set(state) - set(targets))
    if missing or unexpected:
        raise KeyError(f"state dict does not match the module: missing {missing}, unexpected {unexpected}")
    leaves = _leaf_names(module)
    for key, variable in targets.items():
        value = to_jax_layout(leaves[id(variable)], np.asarray(state[key]))
        if value.shape != variable.get_value().shape:
            raise ValueError(f"{key}: torch shape {np.shape(state[key])} does not fit {variable.get_value().shape}")
        # jnp.array copies: jnp.asarray may alias the NumPy buffer, which torch can still update in place.
        variable.set_value(jnp.array(value, dtype=variable.get_value().dtype))


def to_torch(module: nnx.Module) -> dict[str, np.ndarray]:
    """The torch state dict (as NumPy arrays) of an NNX module: `torch.from_numpy` each to load it."""
    leaves = _leaf_names(module)
    return {
        key: to_torch_layout(leaves[id(variable)], np.array(variable.get_value()))
        for key, variable in variables(module).items()
    }


def torch_shapes(module: nnx.Module) -> dict[str, tuple[int, ...]]:
    """{torch key: shape in torch's layout} of `module`'s converted variables, without touching their values
    (so an abstract module from nnx.eval_shape works too)."""
    leaves = _leaf_names(module)
    shapes = {}
    for key, variable in variables(module).items():
        shape = tuple(variable.get_value().shape)
        if leaves[id(variable)] == "kernel" and len(shape) >= 2:  # to_torch_layout's transposes
            shape = (shape[-1], shape[-2], *shape[:-2]) if len(shape) > 2 else shape[::-1]
        shapes[key] = shape
    return shapes


def _leaf_names(module: nnx.Module) -> dict[int, str]:
    """id(variable) -> its NNX leaf name (`kernel`, `scale`, ...), which decides its layout."""
    return {id(node): str(path[-1]) for path, node in nnx.iter_graph(module) if isinstance(node, CONVERTED)}
