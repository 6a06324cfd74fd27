"""A helper of the encoder tests (not a test file): BatchNorm layers made to show what they compute."""

import torch


def randomise_batchnorm(module: torch.nn.Module, var: tuple[float, float] = (0.5, 2.0)) -> None:
    """Random BatchNorm affine parameters and running statistics: torch starts them at 1, 0, 0 and 1, which makes
    eval-mode normalisation the identity and would hide a statistic or a parameter mixed up."""
    for m in module.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            for tensor, low, high in (
                (m.weight, 0.5, 2),
                (m.bias, -1, 1),
                (m.running_mean, -1, 1),
                (m.running_var, *var),
            ):
                tensor.data.uniform_(low, high)
