"""Parameter-free modules."""

import torch.nn.functional as F
from torch import Tensor, nn


class ActivationFromFnName(nn.Module):
    """Apply the ``torch.nn.functional`` function with the given name.

    Args:
        activation_fn: name of a function in ``torch.nn.functional``, e.g. ``"relu"``,
            ``"gelu"``, ``"tanh"``. Unknown names raise ``ValueError`` at construction.
    """

    def __init__(self, activation_fn: str):
        super().__init__()
        if not isinstance(activation_fn, str):
            raise TypeError(
                f"ActivationFromFnName: `activation_fn` must be a str, got "
                f"{type(activation_fn).__name__}; use e.g. 'relu'"
            )
        function = getattr(F, activation_fn, None)
        if function is None or not callable(function):
            raise ValueError(
                f"ActivationFromFnName: `activation_fn` must name a function of "
                f"torch.nn.functional, got {activation_fn!r}; use e.g. 'relu', 'gelu', 'tanh'"
            )
        self._activation_fn = activation_fn

    def forward(self, inputs: Tensor) -> Tensor:
        """Elementwise activation: same shape and dtype as ``inputs``."""
        return getattr(F, self._activation_fn)(inputs)
