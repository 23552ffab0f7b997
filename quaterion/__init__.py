"""quaterion: fine-tuning framework for similarity learning (training side)."""

from quaterion.main import Quaterion
from quaterion.train.trainable_model import TrainableModel

__all__ = ["Quaterion", "TrainableModel"]
