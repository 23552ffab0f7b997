"""Parameter-free modules."""

import functools
import inspect

import torch.nn.functional as F
from torch import Tensor, nn

#: ``torch.nn.functional`` functions that are random whatever the module's mode.
_ALWAYS_RANDOM = frozenset({"gumbel_softmax"})


@functools.cache
def _follows_training_flag(name: str) -> bool:
    """Whether ``F.<name>`` takes ``training`` defaulting to ``True`` (the dropouts): such a
    function must get the module's mode, or it stays random in eval mode."""
    try:
        parameter = inspect.signature(getattr(F, name)).parameters.get("training")
    except (TypeError, ValueError):  # builtins without a signature
        return False
    return parameter is not None and parameter.default is True


class ActivationFromFnName(nn.Module):
    """Apply the ``torch.nn.functional`` function with the given name.

    Functions with a ``training`` argument that defaults to ``True`` (``"dropout"``, ...) get
    the module's mode, so they are off in eval mode like ``nn.Dropout``.

    Args:
        activation_fn: name of a function in ``torch.nn.functional``, e.g. ``"relu"``,
            ``"gelu"``, ``"tanh"``. Unknown names, and functions that are random even in
            eval mode (``"gumbel_softmax"``), raise ``ValueError`` at construction.
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
        if activation_fn in _ALWAYS_RANDOM:
            raise ValueError(
                f"ActivationFromFnName: {activation_fn!r} is random even in eval mode, so "
                "embeddings would change from call to call; use e.g. 'relu', 'gelu', 'tanh'"
            )
        self._activation_fn = activation_fn

    def forward(self, inputs: Tensor) -> Tensor:
        """Elementwise activation: same shape and dtype as ``inputs``."""
        function = getattr(F, self._activation_fn)
        if _follows_training_flag(self._activation_fn):
            return function(inputs, training=self.training)
        return function(inputs)
