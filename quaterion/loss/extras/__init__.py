"""Losses that need optional dependencies (``pip install 'quaterion[pytorch-metric-learning]'``)."""

from quaterion.loss.extras.pytorch_metric_learning_wrapper import PytorchMetricLearningWrapper

__all__ = ["PytorchMetricLearningWrapper"]
