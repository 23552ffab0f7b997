"""Callbacks ``Quaterion.fit`` adds to the trainer, and ``WeightInterpolation`` for users to add."""

from quaterion.train.callbacks.cleanup_callback import CleanupCallback
from quaterion.train.callbacks.guard_callback import (
    GuardCallback,
    NonFiniteGradientError,
    NonFiniteLossError,
    NonFiniteValidationError,
)
from quaterion.train.callbacks.metrics_callback import MetricsCallback
from quaterion.train.callbacks.rank_failure_callback import RankFailureCallback
from quaterion.train.callbacks.weight_interpolation_callback import WeightInterpolation

__all__ = [
    "CleanupCallback",
    "GuardCallback",
    "MetricsCallback",
    "NonFiniteGradientError",
    "NonFiniteLossError",
    "NonFiniteValidationError",
    "RankFailureCallback",
    "WeightInterpolation",
]
