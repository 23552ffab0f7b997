"""Training machinery: trainable model, encoder cache, cross-batch memory, callbacks."""

from quaterion.train.gradient_cache import GradientCacheConfig

__all__ = ["GradientCacheConfig"]
