"""Sampler for pair-labelled datasets."""

from typing import Any, Sized, Tuple, Union

import torch
from torch import Tensor

from quaterion.dataset.similarity_data_loader import PairsSimilarityDataLoader
from quaterion.eval.blocks import Problem
from quaterion.eval._relevance import CsrRelevance, pair_entries, remap
from quaterion.eval.accumulators import PairAccumulator
from quaterion.eval.pair import PairMetric
from quaterion.eval.samplers.base_sampler import (
    EncodingSampler,
    draw_rows,
)


class PairSampler(EncodingSampler):
    """Encodes ``SimilarityPairSample`` data (``N = 2P`` objects).

    * ``distinguish=False``: query rows are objects, candidates all ``N`` objects; a query's
      own column ranks last. Result shape ``(n, N)``.
    * ``distinguish=True``: query rows are pairs (their ``obj_a``), candidates every pair's
      ``obj_b``; labels ``L[pairs[rows, 0]][:, pairs[:, 1]]``. Result shape ``(n, P)``.

    Args:
        sample_size: number of query rows; ``-1`` means all.
        distinguish: compare only ``obj_a`` to ``obj_b``.
        encode_batch_size: objects per ``model.encode`` call (``>= 2``; each batch holds
            half as many pairs).
        device: where embeddings are kept (default: the model's output device).
        log_progress: show a progress bar while encoding.
    """

    metric_type = PairMetric
    objects_per_sample = 2

    def __init__(
        self,
        sample_size: int = -1,
        distinguish: bool = False,
        encode_batch_size: int = 16,
        device: Union[torch.device, str, None] = None,
        log_progress: bool = True,
    ):
        super().__init__(sample_size, encode_batch_size, device, log_progress, PairAccumulator())
        self.distinguish = distinguish

    def batch_inputs(self, batch: list) -> Tuple[list, dict]:
        """Every ``obj_a`` then every ``obj_b``, and the collated pair labels."""
        labels = PairsSimilarityDataLoader.collate_labels(batch)  # checks the sample types
        return [sample.obj_a for sample in batch] + [sample.obj_b for sample in batch], labels

    def sample(self, dataset: Sized, metric: PairMetric, model: Any) -> Tuple[Tensor, Tensor]:
        """``(labels, distance_matrix)``: ``(n, N)``, or ``(n, P)`` with ``distinguish``."""
        self.check_metric(metric)
        return self.draw(dataset, model).dense(metric.distance)

    def draw(self, dataset: Sized, model: Any) -> Problem:
        """Random query rows against every candidate (see :meth:`BaseSampler.draw`)."""
        if not self.accumulator.filled:
            self.accumulate(model, dataset)
        embeddings = self.accumulator.embeddings
        pairs = self.accumulator.pairs.to(embeddings.device)
        labels = self.accumulator.labels.to(embeddings.device)
        num_items = embeddings.shape[0]
        item_rows, item_cols, vals = pair_entries(labels, pairs, num_items)
        if not self.distinguish:
            rows = draw_rows(num_items, self.sample_size).to(embeddings.device)
            relevance = CsrRelevance(item_rows, item_cols, vals, num_items, rows)
            return Problem(embeddings[rows], embeddings, relevance, rows)
        rows = draw_rows(pairs.shape[0], self.sample_size).to(embeddings.device)
        entry, column = remap(pairs[:, 1], item_cols)
        relevance = CsrRelevance(item_rows[entry], column, vals[entry], num_items, pairs[rows, 0])
        return Problem(embeddings[pairs[rows, 0]], embeddings[pairs[:, 1]], relevance, None)
