"""Public path of :class:`CacheTrainCollator`, defined with the batches it makes in
``_batches.py``."""

from quaterion.train.cache._batches import CacheTrainCollator

__all__ = ["CacheTrainCollator"]
