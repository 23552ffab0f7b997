"""A metric attached to training: logged per batch under ``f"{name}_{stage}"``."""

import math
from typing import Any, Dict, Optional, Tuple

import torch
from torch import Tensor

from quaterion.eval.base_metric import BaseMetric
from quaterion.utils.enums import TrainStage

_GUARDED = ("_metric", "name")

# What an undefined batch is logged as: the neutral element of Lightning's reduction, so it
# changes no epoch value (with weight 0 for the batch-size-weighted mean).
_NEUTRAL = {"mean": 0.0, "avg": 0.0, "sum": 0.0, "max": -math.inf, "min": math.inf}


class AttachedMetric:
    """Wraps a metric for ``TrainableModel.configure_metrics``.

    In each step of a listed stage the training loop logs
    ``metric.compute(embeddings, **targets)`` of the current batch as ``f"{name}_{stage}"``
    with ``log_options`` (Lightning averages batch values over the epoch when ``on_epoch``).
    A batch where the metric is undefined (NaN: no query of the batch has a relevant item,
    e.g. every group a singleton) is left out of the epoch value, see :meth:`batch_value`.
    Attributes missing here (``compute``, ``update``, ``reset``, ``k``, ...) are read from
    the wrapped metric.

    Args:
        name: prefix of the logged key.
        metric: the metric; it must return a scalar (a ``reduce_func=None`` metric is
            refused with ``ValueError``, anything but a ``BaseMetric`` with ``TypeError``).
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
        if not isinstance(metric, BaseMetric):
            raise TypeError(
                f"AttachedMetric({name!r}, metric) needs a BaseMetric such as "
                f"RetrievalRPrecision(), got {type(metric).__name__}."
            )
        if "reduce_func" in vars(metric) and metric.reduce_func is None:
            raise ValueError(
                f"AttachedMetric({name!r}) logs one number per batch, but "
                f"{type(metric).__name__}(reduce_func=None) returns one value per query; pass "
                "a reduce_func such as torch.mean (the default)."
            )
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

    def batch_value(self, embeddings: Tensor, targets: Dict[str, Any]) -> Tuple[Tensor, Tensor]:
        """``(value, weight)`` that the training loop logs for one batch, without host syncs.

        ``value = step_compute(embeddings, **targets)`` (``compute``'s value, see
        :meth:`~quaterion.eval.base_metric.BaseMetric.step_compute`) with
        ``weight = len(embeddings)`` (the ``batch_size`` of Lightning's weighted epoch mean),
        both 0-dim tensors on the embeddings' device: the epoch value is accumulated there
        and read once, at the epoch end. A NaN value means the metric is undefined on this
        batch (no query has a relevant item): it is replaced by the reduction's neutral
        element (0 for ``reduce_fx="mean"``/``"sum"``, ``-inf`` for ``"max"``, ``inf`` for
        ``"min"``) with weight 0, so the epoch value, on one device or summed over DDP ranks,
        covers the defined batches only. An epoch with no defined batch on any rank logs NaN
        (``0 / 0``). The step value of an undefined batch is that neutral element.
        Embeddings holding NaN/inf keep their NaN value and full weight: the epoch value
        becomes NaN instead of silently leaving the batch out.
        """
        value = self._metric.step_compute(embeddings, **targets)
        reduce_fx = self.log_options.get("reduce_fx", "mean")
        name = reduce_fx if isinstance(reduce_fx, str) else getattr(reduce_fx, "__name__", "")
        neutral = _NEUTRAL.get(name.lower(), 0.0)
        finite = torch.isfinite(embeddings.detach()).all()
        undefined = torch.isnan(value).any() & finite
        weight = torch.where(undefined, 0, embeddings.shape[0])
        return torch.where(undefined, torch.full_like(value, neutral), value), weight
