"""Sampler for group-labelled datasets."""

from typing import Any, Sized, Tuple, Union

import torch
from torch import Tensor

from quaterion.dataset.similarity_data_loader import GroupSimilarityDataLoader
from quaterion.eval.blocks import Problem
from quaterion.eval._relevance import group_relevance
from quaterion.eval.accumulators import GroupAccumulator
from quaterion.eval.group import GroupMetric
from quaterion.eval.samplers.base_sampler import (
    BaseSampler,
    check_encoded,
    draw_rows,
)
from quaterion.utils.utils import iter_by_batch


class GroupSampler(BaseSampler):
    """Encodes ``SimilarityGroupSample`` data; query rows are items, candidates are all items.

    Each query's own item is ranked last (distance ``+inf``) and is not relevant to
    itself, so ``sample_size=-1`` gives exactly ``RetrievalRPrecision().compute(E, groups)``.

    Args:
        sample_size: number of query rows; ``-1`` means all.
        encode_batch_size: samples per ``model.encode`` call.
        device: where embeddings are kept (default: the model's output device).
        log_progress: show a progress bar while encoding.
    """

    metric_type = GroupMetric

    def __init__(
        self,
        sample_size: int = -1,
        encode_batch_size: int = 16,
        device: Union[torch.device, str, None] = None,
        log_progress: bool = True,
    ):
        super().__init__(sample_size, device, log_progress)
        _check_batch_size(encode_batch_size, minimum=1)
        self.encode_batch_size = encode_batch_size
        self.accumulator = GroupAccumulator()

    def accumulate(self, model: Any, dataset: Sized) -> None:
        """Encode ``dataset`` in batches (eval mode, no grad) into the accumulator."""
        for batch in iter_by_batch(dataset, self.encode_batch_size, self.log_progress):
            labels = GroupSimilarityDataLoader.collate_labels(batch)
            objs = [sample.obj for sample in batch]
            embeddings = model.encode(objs, batch_size=self.encode_batch_size, to_numpy=False)
            self.accumulator.update(embeddings, **labels, device=self.device)
        check_encoded(self.accumulator.embeddings, dataset)
        self.accumulator.set_filled()

    def reset(self) -> None:
        """Forget the encoded dataset."""
        self.accumulator.reset()

    def sample(self, dataset: Sized, metric: GroupMetric, model: Any) -> Tuple[Tensor, Tensor]:
        """``(labels, distance_matrix)``, both ``(n, N)``; row ``i`` is item ``rows[i]``.

        Builds only the ``n`` sampled label rows, never the ``N x N`` matrix.
        """
        self.check_metric(metric)
        return self.draw(dataset, model).dense(metric.distance)

    def draw(self, dataset: Sized, model: Any) -> Problem:
        """Random query rows against every candidate (see :meth:`BaseSampler.draw`)."""
        if not self.accumulator.filled:
            self.accumulate(model, dataset)
        embeddings, groups = self.accumulator.embeddings, self.accumulator.groups
        rows = draw_rows(embeddings.shape[0], self.sample_size).to(embeddings.device)
        relevance = group_relevance(groups[rows], groups, exclude=rows)
        return Problem(embeddings[rows], embeddings, relevance, rows)


def _check_batch_size(value: int, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"encode_batch_size must be an int >= {minimum}, got {value!r}.")
