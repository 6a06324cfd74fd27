"""timm's published ViT files -> the state dict of encoders/{torch,jax}/vit.py's `backbone`, in NumPy.

timm's files (e.g. vit_small_patch16_224.augreg_in21k_ft_in1k) hold an ImageNet classifier (head.weight,
head.bias) and position embeddings for a 14 x 14 grid (224 px). The adapter drops the classifier and resamples
the grid to the configured one as timm's own loader does (timm.models.vision_transformer.checkpoint_filter_fn ->
timm.layers.resample_abs_pos_embed): the CLS position is kept, the grid is resized bicubically with antialiasing
(torch.nn.functional.interpolate(mode="bicubic", align_corners=False, antialias=True)).
"""

from __future__ import annotations

import math

import numpy as np

HEAD = ("head.weight", "head.bias")  # the ImageNet classifier
PREFIX = 1  # position embeddings before the grid: the CLS token's


def adapt(state: dict[str, np.ndarray], shapes: dict[str, tuple[int, ...]]) -> tuple[dict[str, np.ndarray], list[str]]:
    """A timm ViT state dict -> one whose keys and position grid fit `shapes` (the backbone's), and notes."""
    state, notes = dict(state), []
    head = [key for key in HEAD if key in state and key not in shapes]
    if head:
        for key in head:
            del state[key]
        notes.append(f"dropped the ImageNet classifier {', '.join(head)}")
    old, new = state["pos_embed"].shape, tuple(shapes["pos_embed"])
    if old != new:
        state["pos_embed"] = resample_pos_embed(state["pos_embed"], new[1] - PREFIX)
        notes.append(f"resampled pos_embed {old} -> {new} (bicubic with antialiasing, as timm; CLS position kept)")
    return state, notes


def resample_pos_embed(pos: np.ndarray, positions: int) -> np.ndarray:
    """pos (1, PREFIX + g * g, W) -> (1, PREFIX + n * n, W) with n * n = positions: the prefix as it is, the
    square grid resized bicubically with antialiasing (timm's resample_abs_pos_embed defaults)."""
    old, new = math.isqrt(pos.shape[1] - PREFIX), math.isqrt(positions)
    if old * old != pos.shape[1] - PREFIX or new * new != positions:
        raise ValueError(f"pos_embed {pos.shape} -> {positions} positions: both grids must be square")
    grid = pos[0, PREFIX:].reshape(old, old, -1).transpose(2, 0, 1)  # (W, g, g)
    grid = bicubic(grid, (new, new), antialias=True).transpose(1, 2, 0).reshape(1, new * new, -1)  # (1, n * n, W)
    return np.concatenate([pos[:, :PREFIX], grid.astype(pos.dtype)], 1)


def bicubic(image: np.ndarray, size: tuple[int, int], antialias: bool) -> np.ndarray:
    """image (..., H, W) -> (..., h, w) (float64), as torch.nn.functional.interpolate(mode="bicubic",
    align_corners=False, antialias=antialias) does on its last two axes: separable, one weight matrix per axis."""
    rows, cols = (weights(n_in, n_out, antialias) for n_in, n_out in zip(image.shape[-2:], size, strict=True))
    return np.einsum("ih,...hw,jw->...ij", rows, image.astype(np.float64), cols)


def weights(n_in: int, n_out: int, antialias: bool) -> np.ndarray:
    """(n_out, n_in) interpolation matrix along one axis; sample i sits at (i + 0.5) * n_in / n_out - 0.5."""
    scale = n_in / n_out
    matrix = np.zeros((n_out, n_in))
    for i in range(n_out):
        centre = (i + 0.5) * scale  # in input pixels, whose centres sit at j + 0.5
        if antialias:
            # Pillow's filter (cubic a = -0.5), stretched by the scale when shrinking, cut at the borders and
            # renormalised: torch's _upsample_bicubic2d_aa.
            stretch = max(scale, 1.0)
            first = max(int(centre - 2 * stretch + 0.5), 0)
            last = min(int(centre + 2 * stretch + 0.5), n_in)
            js = np.arange(first, last)
            w = cubic((js + 0.5 - centre) / stretch, a=-0.5)
            matrix[i, js] = w / w.sum()
        else:
            # Keys' cubic convolution (a = -0.75) on the 4 nearest pixels, indices clamped at the borders.
            x = centre - 0.5
            base = math.floor(x)
            for j in range(base - 1, base + 3):
                matrix[i, min(max(j, 0), n_in - 1)] += cubic(np.float64(j - x), a=-0.75)
    return matrix


def cubic(x: np.ndarray, a: float) -> np.ndarray:
    """Keys (1981) cubic convolution kernel with parameter a, at distances x (support |x| < 2)."""
    x = np.abs(x)
    near = ((a + 2) * x - (a + 3)) * x * x + 1
    far = ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
    return np.where(x < 1, near, np.where(x < 2, far, 0.0))
