"""Evaluate a model on a dataset with one or more metrics."""

import os
from collections.abc import Iterable, Sized
from numbers import Integral
from typing import Any, Dict, List, Union

import torch
from torch import Tensor
from torch.utils.data import DataLoader

from quaterion.eval.base_metric import BaseMetric
from quaterion.eval.blocks import BlockReducer
from quaterion.eval.samplers.base_sampler import BaseSampler


class Evaluator:
    """Runs metrics over a dataset through a sampler.

    ``evaluate`` encodes the dataset once (in the sampler). Each repeat draws query rows once
    (``sampler.draw``) for all metrics, then makes one blocked distance pass per distance in
    use (memory O(block x N), exact) and feeds every block to each metric's
    ``block_reducer()``. A metric without a reducer gets the dense matrices of the same draw
    and its ``raw_compute``; a sampler without ``draw`` falls back to ``sample`` per metric.
    The sampler is reset afterwards.

    Args:
        metrics: one metric (keyed by its class name) or ``{name: metric}``.
        sampler: a ``GroupSampler`` for group metrics or a ``PairSampler`` for pair metrics.
        repeats: number of sampled evaluations. With ``repeats > 1`` the result holds, per
            metric, the mean over repeats under ``name`` and the standard deviation
            (``torch.std``, unbiased) under ``f"{name}_std"``; every metric must then return
            a 0-dim value (a ``reduce_func``). ``1`` keeps the plain result.

    Raises:
        TypeError: a metric or the sampler has the wrong type, or a metric does not fit the
            sampler.
        ValueError: ``metrics`` is empty, ``repeats`` is not an int ``>= 1``, or (with
            ``repeats > 1``) a metric has ``reduce_func=None`` or its name ends like another's
            ``_std`` key.

    Example:
        >>> from quaterion.eval.group import RetrievalRPrecision
        >>> from quaterion.eval.samplers import GroupSampler
        >>> evaluator = Evaluator(RetrievalRPrecision(), GroupSampler(sample_size=1000), repeats=5)
        >>> sorted(evaluator.metrics), evaluator.repeats
        (['RetrievalRPrecision'], 5)
        >>> evaluator.evaluate(dataset, model)  # doctest: +SKIP
        {'RetrievalRPrecision': tensor(0.81), 'RetrievalRPrecision_std': tensor(0.01)}
    """

    def __init__(
        self,
        metrics: Union[BaseMetric, Dict[str, BaseMetric]],
        sampler: BaseSampler,
        repeats: int = 1,
    ):
        self.metrics = metrics if isinstance(metrics, dict) else {type(metrics).__name__: metrics}
        if not self.metrics:
            raise ValueError(
                "metrics is empty: evaluate would encode the dataset and return {}; pass a "
                "metric or {name: metric}, e.g. {'rp': RetrievalRPrecision()}."
            )
        for name, metric in self.metrics.items():
            if not isinstance(metric, BaseMetric):
                raise TypeError(
                    f"metrics[{name!r}] must be a BaseMetric (e.g. RetrievalRPrecision()), got "
                    f"{type(metric).__name__}."
                )
        if not isinstance(sampler, BaseSampler):
            raise TypeError(
                "sampler must be a BaseSampler (GroupSampler or PairSampler), got "
                f"{type(sampler).__name__}."
            )
        for metric in self.metrics.values():
            sampler.check_metric(metric)
        if isinstance(repeats, bool) or not isinstance(repeats, Integral) or repeats < 1:
            raise ValueError(f"repeats must be an int >= 1, got {repeats!r}.")
        repeats = int(repeats)
        clash = sorted(f"{name}_std" for name in self.metrics if f"{name}_std" in self.metrics)
        vectors = sorted(name for name, metric in self.metrics.items() if _returns_vector(metric))
        if repeats > 1 and vectors:
            raise ValueError(
                f"repeats={repeats} averages one number per metric, but {vectors} return a "
                "value per drawn query (reduce_func=None), and the queries differ between "
                "repeats; use a reduce_func such as torch.mean, or repeats=1."
            )
        if repeats > 1 and clash:
            raise ValueError(
                f"metric names {clash} clash with the standard deviations repeats={repeats} "
                "adds under '<name>_std'; rename those metrics."
            )
        self.sampler = sampler
        self.repeats = repeats

    def evaluate(self, dataset: Sized, model: Any) -> Dict[str, Tensor]:
        """``{name: value}`` (plus ``{name}_std`` when ``repeats > 1``).

        Args:
            dataset: sized/iterable dataset of similarity samples.
            model: a ``SimilarityModel`` (anything with ``encode(objs, batch_size, to_numpy)``).

        Raises:
            TypeError: see :func:`check_evaluate_inputs`.
            ValueError: the dataset is empty.
        """
        check_evaluate_inputs(dataset, model)
        if isinstance(dataset, Sized) and len(dataset) == 0:
            raise ValueError("dataset is empty (len 0); pass a dataset with at least one sample.")
        try:
            runs = [self._evaluate_once(dataset, model) for _ in range(self.repeats)]
        finally:
            self.sampler.reset()
        return runs[0] if self.repeats == 1 else _mean_and_std(runs)

    def _evaluate_once(self, dataset: Sized, model: Any) -> Dict[str, Tensor]:
        problem = self.sampler.draw(dataset, model)
        if problem is None:
            return {
                name: metric.raw_compute(*reversed(self.sampler.sample(dataset, metric, model)))
                for name, metric in self.metrics.items()
            }
        reducers = {name: metric.block_reducer() for name, metric in self.metrics.items()}
        by_distance: Dict[type, Dict[str, BlockReducer]] = {}
        for name, reducer in reducers.items():
            if reducer is not None:
                by_distance.setdefault(self.metrics[name].distance, {})[name] = reducer
        for distance, group in by_distance.items():
            for block in problem.blocks(distance):
                for reducer in group.values():
                    reducer.update(block)
        result = {}
        for name, metric in self.metrics.items():
            if reducers[name] is not None:
                result[name] = reducers[name].compute()
            else:
                result[name] = metric.raw_compute(*reversed(problem.dense(metric.distance)))
        return result


def _returns_vector(metric: BaseMetric) -> bool:
    return "reduce_func" in vars(metric) and metric.reduce_func is None


def _encodes(obj: Any) -> bool:
    return callable(getattr(obj, "encode", None)) and not isinstance(obj, (str, bytes))


def check_evaluate_inputs(dataset: Any, model: Any) -> None:
    """Refuse arguments :meth:`Evaluator.evaluate` cannot use, naming the fix.

    Raises:
        TypeError: ``model`` cannot encode (a path, a ``TrainableModel``: pass its
            ``.model``), the two arguments are swapped, or ``dataset`` is a ``DataLoader``
            (pass its ``.dataset``) or neither iterable nor indexable.
    """
    if _encodes(dataset) and not _encodes(model):
        raise TypeError(
            f"evaluate(dataset, model) got a model ({type(dataset).__name__}) as dataset: the "
            "arguments are swapped; call evaluate(dataset, model)"
        )
    if isinstance(model, (str, bytes, os.PathLike)):
        raise TypeError(
            f"model must be a loaded model, got the path {model!r}; pass SimilarityModel.load(path)"
        )
    if not _encodes(model):
        hint = (
            "; it is a trainable model: pass its servable, trainable_model.model"
            if _encodes(getattr(model, "model", None))
            else ""
        )
        raise TypeError(
            "model must be a SimilarityModel (anything with encode(objects, batch_size, "
            f"to_numpy)), got {type(model).__name__}{hint}"
        )
    if isinstance(dataset, DataLoader):
        raise TypeError(
            f"dataset must hold similarity samples, got a {type(dataset).__name__}; pass its "
            "dataset (loader.dataset), which evaluate reads in its own batches"
        )
    if not isinstance(dataset, Iterable) and not hasattr(dataset, "__getitem__"):
        raise TypeError(
            "dataset must be a dataset or a list of similarity samples (SimilarityGroupSample "
            f"or SimilarityPairSample), got {type(dataset).__name__}"
        )


def _mean_and_std(runs: List[Dict[str, Tensor]]) -> Dict[str, Tensor]:
    result = {}
    for name in runs[0]:
        values = [run[name] for run in runs]
        if any(value.dim() != 0 for value in values):
            raise ValueError(
                f"repeats > 1 averages one number per metric, but {name!r} gave a tensor of "
                f"shape {tuple(values[0].shape)}: its entries belong to different randomly "
                "drawn queries in each repeat, so their mean would mean nothing. Use a "
                "reduce_func such as torch.mean, or repeats=1."
            )
        stacked = torch.stack(values).to(torch.float32)
        result[name] = stacked.mean(0)
        result[f"{name}_std"] = stacked.std(0)
    return result
