"""A metric attached to training: logged per batch under ``f"{name}_{stage}"``."""

from typing import Any, Optional

from quaterion.eval.base_metric import BaseMetric
from quaterion.utils.enums import TrainStage

_GUARDED = ("_metric", "name")


class AttachedMetric:
    """Wraps a metric for ``TrainableModel.configure_metrics``.

    In each step of a listed stage the training loop logs
    ``metric.compute(embeddings, **targets)`` of the current batch as ``f"{name}_{stage}"``
    with ``log_options`` (Lightning averages batch values over the epoch when ``on_epoch``).
    Attributes missing here (``compute``, ``update``, ``reset``, ``k``, ...) are read from
    the wrapped metric.

    Args:
        name: prefix of the logged key.
        metric: the metric; it must return a scalar (a ``reduce_func=None`` metric cannot
            be logged).
        logger, prog_bar, on_step, on_epoch: passed to ``LightningModule.log``.
        **log_options: further ``LightningModule.log`` keyword arguments, stored as given.
    """

    def __init__(
        self,
        name: str,
        metric: BaseMetric,
        logger: bool = True,
        prog_bar: bool = False,
        on_step: Optional[bool] = None,
        on_epoch: Optional[bool] = None,
        **log_options: Any,
    ):
        self.name = name
        self._metric = metric
        self.stages = [TrainStage.TRAIN, TrainStage.VALIDATION]
        self.log_options = {
            "logger": logger,
            "prog_bar": prog_bar,
            "on_step": on_step,
            "on_epoch": on_epoch,
            **log_options,
        }

    def __getattr__(self, item: str) -> Any:
        # Called only when normal lookup fails. While the object is half-built (copy,
        # deepcopy, unpickling) `_metric`/`name` are missing: fail at once, never recurse.
        if item in _GUARDED:
            raise AttributeError(item)
        try:
            return getattr(self._metric, item)
        except AttributeError as exc:
            raise AttributeError(
                f"`AttachedMetric` object (<{self.name}>) has no attribute <{item}>"
            ) from exc
