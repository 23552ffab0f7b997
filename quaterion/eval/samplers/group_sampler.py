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
    EncodingSampler,
    draw_rows,
)


class GroupSampler(EncodingSampler):
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
        super().__init__(sample_size, encode_batch_size, device, log_progress, GroupAccumulator())

    def batch_inputs(self, batch: list) -> Tuple[list, dict]:
        """Each sample's ``obj`` and the collated ``groups``."""
        labels = GroupSimilarityDataLoader.collate_labels(batch)  # checks the sample types
        return [sample.obj for sample in batch], labels

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
