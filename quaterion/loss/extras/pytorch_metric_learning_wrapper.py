"""Adapter that runs a pytorch-metric-learning loss (and miner) as a :class:`GroupLoss`."""

from typing import Optional

from pytorch_metric_learning.losses import BaseMetricLossFunction
from pytorch_metric_learning.miners import BaseMiner
from torch import LongTensor, Tensor

from quaterion.distributed import gather_rows
from quaterion.loss._checks import check_embeddings
from quaterion.loss.group_loss import GroupLoss


class PytorchMetricLearningWrapper(GroupLoss):
    """Use any pytorch-metric-learning loss, optionally with a miner, as a group loss.

    Experimental. ``forward`` computes ``indices = miner(embeddings, groups)`` (``None``
    without a miner) and returns ``loss(embeddings, groups, indices)``. Cross-batch memory:
    use PML's own ``CrossBatchMemory`` loss; ``xbm_loss`` is not implemented.

    Inputs: ``SimilarityGroupSample`` batches from a ``GroupSimilarityDataLoader``.

    Args:
        loss: a ``pytorch_metric_learning.losses.BaseMetricLossFunction`` instance.
        miner: a ``pytorch_metric_learning.miners.BaseMiner`` instance, or ``None``.
        gather_across_ranks: under DDP, mine and compute the loss over every rank's batch
            (this replaces PML's ``DistributedLossWrapper``; do not combine them). PML's
            losses and miners cannot leave padded rows out, so this gather is the checked
            one (:func:`quaterion.distributed.gather_rows` without ``equal_rows``): compact
            rows, ranks may hold different batch sizes; for CUDA tensors under NCCL it
            exchanges the row counts over the host first (two collectives, no device wait;
            PML itself reads device values on the host).

    Raises:
        TypeError: ``loss`` or ``miner`` has the wrong type.

    Example::

        from pytorch_metric_learning import losses, miners
        loss = PytorchMetricLearningWrapper(losses.TripletMarginLoss(), miners.MultiSimilarityMiner())
    """

    def __init__(
        self,
        loss: BaseMetricLossFunction,
        miner: Optional[BaseMiner] = None,
        gather_across_ranks: bool = False,
    ):
        if not isinstance(loss, BaseMetricLossFunction):
            raise TypeError(
                "PytorchMetricLearningWrapper: loss must be an instance of "
                "pytorch_metric_learning.losses.BaseMetricLossFunction, got "
                f"{type(loss).__name__}. Pass e.g. losses.TripletMarginLoss()."
            )
        if miner is not None and not isinstance(miner, BaseMiner):
            raise TypeError(
                "PytorchMetricLearningWrapper: miner must be None or an instance of "
                f"pytorch_metric_learning.miners.BaseMiner, got {type(miner).__name__}. "
                "Pass e.g. miners.MultiSimilarityMiner()."
            )
        super().__init__(gather_across_ranks=gather_across_ranks)
        self._loss = loss
        self._miner = miner

    def forward(self, embeddings: Tensor, groups: LongTensor) -> Tensor:
        """PML loss of ``embeddings: float (B, d)`` with ``groups: int64 (B,)``; 0-dim float."""
        check_embeddings(embeddings)
        if not isinstance(groups, Tensor):
            raise TypeError(
                f"`groups` must be a torch.Tensor of shape (B,), got {type(groups).__name__}; "
                "convert it with torch.as_tensor."
            )
        if self.gather_across_ranks:
            embeddings, groups = gather_rows(embeddings, groups)
        indices_tuple = None if self._miner is None else self._miner(embeddings, groups)
        return self._loss(embeddings, groups, indices_tuple)
