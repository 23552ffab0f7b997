"""Base sampler."""

import random
from collections.abc import Sized
from typing import Any, ClassVar, Optional, Tuple, Union

import torch
from torch import Tensor

from quaterion.eval.blocks import Problem, check_embeddings
from quaterion.eval.base_metric import BaseMetric


class BaseSampler:
    """Encodes a dataset with a model and returns ``(labels, distance_matrix)`` for a random
    subset of query rows against all items.

    Args:
        sample_size: number of query rows; ``-1`` (or any value ``<= 0``) means all.
        device: where embeddings are kept (default: the model's output device).
        log_progress: show a progress bar while encoding.
    """

    #: Metric base class this sampler can feed; checked by :meth:`check_metric`.
    metric_type: ClassVar[type] = BaseMetric

    def __init__(
        self,
        sample_size: int = -1,
        device: Union[torch.device, str, None] = None,
        log_progress: bool = True,
    ):
        if isinstance(sample_size, bool) or not isinstance(sample_size, int):
            raise TypeError(f"sample_size must be an int (-1 for all rows), got {sample_size!r}.")
        self.sample_size = sample_size
        self.device = device
        self.log_progress = log_progress

    def sample(self, dataset: Any, metric: BaseMetric, model: Any) -> Tuple[Tensor, Tensor]:
        """``(labels, distance_matrix)`` of equal shape; ``None`` in the base class."""
        return None

    def reset(self) -> None:
        """Forget accumulated embeddings (no-op in the base class)."""

    def check_metric(self, metric: BaseMetric) -> None:
        """``TypeError`` naming both classes when ``metric`` does not fit this sampler."""
        if not isinstance(metric, self.metric_type):
            raise TypeError(
                f"{type(self).__name__} cannot evaluate {type(metric).__name__}: it needs a "
                f"{self.metric_type.__name__} subclass. Use GroupSampler for group metrics "
                f"(RetrievalRPrecision) and PairSampler for pair metrics (RetrievalPrecision, "
                f"RetrievalReciprocalRank)."
            )

    def draw(self, dataset: Any, model: Any) -> Optional[Problem]:
        """One random draw of query rows as a :class:`~quaterion.eval.blocks.Problem`
        (encoding ``dataset`` first if needed); ``None`` in the base class.

        ``sample`` returns ``draw(...).dense(metric.distance)``; ``Evaluator`` streams
        ``draw(...).blocks(distance)`` once for all its metrics.
        """
        return None


def draw_rows(total: int, sample_size: int) -> Tensor:
    """Random query rows: ``random.sample(range(total), k=n)`` with ``n = min(sample_size, total)``,
    or ``total`` when ``sample_size <= 0`` (still a random permutation). Reads Python's
    global ``random``; never reseeds."""
    n = min(sample_size, total) if sample_size > 0 else total
    return torch.LongTensor(random.sample(range(total), k=n))


def check_encoded(embeddings: Tensor, dataset: Any) -> None:
    """A non-empty dataset was encoded into finite rows."""
    if embeddings.numel() == 0:
        size = len(dataset) if isinstance(dataset, Sized) else "no"
        raise ValueError(
            f"dataset is empty ({size} samples were encoded); pass a dataset with at least "
            f"one sample to evaluate."
        )
    check_embeddings(embeddings, "encoded embeddings")
