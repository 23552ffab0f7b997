"""Base sampler."""

import random
from collections.abc import Sized
from numbers import Integral
from typing import Any, ClassVar, Optional, Tuple, Union

import numpy as np
import torch
from torch import Tensor

from quaterion.eval.blocks import Problem, check_embeddings
from quaterion.eval.base_metric import BaseMetric
from quaterion.utils.utils import iter_by_batch


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
        if isinstance(sample_size, bool) or not isinstance(sample_size, Integral):
            raise TypeError(f"sample_size must be an int (-1 for all rows), got {sample_size!r}.")
        self.sample_size = int(sample_size)
        self.device = check_device(device)
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


class EncodingSampler(BaseSampler):
    """Base of the built-in samplers: encodes a dataset batch by batch into ``accumulator``.

    Subclasses set ``objects_per_sample`` and implement :meth:`batch_inputs`.

    Args:
        sample_size, device, log_progress: as in :class:`BaseSampler`.
        encode_batch_size: objects per ``model.encode`` call (``>= objects_per_sample``).
        accumulator: where the embeddings and labels are kept.
    """

    #: Objects encoded per sample (2 for a pair).
    objects_per_sample: ClassVar[int] = 1

    def __init__(self, sample_size, encode_batch_size, device, log_progress, accumulator):
        super().__init__(sample_size, device, log_progress)
        minimum = self.objects_per_sample
        value = encode_batch_size
        if isinstance(value, bool) or not isinstance(value, Integral) or value < minimum:
            raise ValueError(f"encode_batch_size must be an int >= {minimum}, got {value!r}.")
        self.encode_batch_size = int(encode_batch_size)
        self.accumulator = accumulator

    def batch_inputs(self, batch: list) -> Tuple[list, dict]:
        """``(objects to encode, labels for accumulator.update)`` of a list of samples."""
        raise NotImplementedError

    def accumulate(self, model: Any, dataset: Sized) -> None:
        """Encode ``dataset`` (eval mode, no grad; ``encode_batch_size // objects_per_sample``
        samples per batch) into the accumulator."""
        samples_per_batch = self.encode_batch_size // self.objects_per_sample
        for batch in iter_by_batch(dataset, samples_per_batch, self.log_progress):
            objs, labels = self.batch_inputs(batch)
            embeddings = model.encode(objs, batch_size=self.encode_batch_size, to_numpy=False)
            embeddings = check_encode_output(embeddings, len(objs), model)
            self.accumulator.update(embeddings, **labels, device=self.device)
        check_encoded(self.accumulator.embeddings, dataset)
        self.accumulator.set_filled()

    def reset(self) -> None:
        """Forget the encoded dataset."""
        self.accumulator.reset()


def check_encode_output(embeddings: Any, num_objects: int, model: Any) -> Tensor:
    """What ``model.encode(objs, ..., to_numpy=False)`` returned, as a tensor with one row
    per object (a numpy array is converted); ``TypeError``/``ValueError`` naming the model."""
    converted = torch.from_numpy(embeddings) if isinstance(embeddings, np.ndarray) else embeddings
    rows = converted.shape[0] if isinstance(converted, Tensor) and converted.dim() else None
    if rows != num_objects:
        shape = tuple(converted.shape) if isinstance(converted, Tensor) else None
        raise (TypeError if shape is None else ValueError)(
            f"{type(model).__name__}.encode(objects, batch_size, to_numpy=False) must return a "
            f"torch.Tensor (or numpy array) with one row per object ({num_objects}), got "
            + (type(embeddings).__name__ if shape is None else f"shape {shape}")
            + "."
        )
    return converted


def check_device(device: Union[torch.device, str, None]) -> Union[torch.device, str, None]:
    """``device`` unchanged if torch can parse it, else ``TypeError``/``ValueError`` naming
    the argument (checked when the sampler is built, not after encoding a dataset)."""
    if device is None or isinstance(device, torch.device):
        return device
    if not isinstance(device, (str, int)) or isinstance(device, bool):
        raise TypeError(
            f"device must be a torch.device, a string such as 'cpu' or 'cuda:0', or None, got "
            f"{type(device).__name__} {device!r}."
        )
    try:
        torch.device(device)
    except RuntimeError as err:
        raise ValueError(
            f"device {device!r} is not a device torch knows ({str(err).splitlines()[0]}); pass "
            "e.g. 'cpu', 'cuda' or 'cuda:0', or None for the model's output device."
        ) from err
    return device


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
