"""Cross-batch memory (XBM): a ring buffer of past embeddings used as extra references."""

from quaterion.train.xbm.xbm_config import XbmConfig, XbmDevice

__all__ = ["XbmConfig", "XbmDevice"]
