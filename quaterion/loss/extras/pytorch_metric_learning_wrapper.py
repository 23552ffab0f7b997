"""Adapter that runs a pytorch-metric-learning loss (and miner) as a :class:`GroupLoss`."""

from typing import Any, Optional, Tuple

from pytorch_metric_learning.losses import BaseMetricLossFunction, CrossBatchMemory
from pytorch_metric_learning.miners import BaseMiner
import torch
from torch import LongTensor, Tensor

from quaterion.distributed import gather_rows
from quaterion.loss._checks import check_embeddings
from quaterion.loss._classifier_loss import check_group_ids, checked_on_device
from quaterion.loss._device_checks import DeviceChecked, device_check_needed
from quaterion.loss.extras.pml_classes import class_layout
from quaterion.loss.group_loss import GroupLoss


class PytorchMetricLearningWrapper(DeviceChecked, GroupLoss):
    """Use any pytorch-metric-learning loss, optionally with a miner, as a group loss.

    Experimental. ``forward`` computes ``indices = miner(embeddings, groups)`` (``None``
    without a miner) and returns ``loss(embeddings, groups, indices)``. Cross-batch memory:
    pass PML's own ``CrossBatchMemory`` as ``loss`` (``xbm_loss`` is not implemented); in
    eval mode (validation) the wrapper computes its inner loss over the batch alone, so that
    validation rows never enter the training memory, as Quaterion's own XBM.

    PML losses with one learned vector per class (``ArcFaceLoss``, ``CosFaceLoss``,
    ``ProxyAnchorLoss``, ``ProxyNCALoss``, ``NormalizedSoftmaxLoss``, ``SoftTripleLoss``, ...)
    get their group ids checked against their number of classes (``AssertionError``, as
    Quaterion's own classifier losses; some of PML's would otherwise return a wrong value
    without an error) and the embedding width against theirs (``ValueError``). Their
    parameters are this module's parameters: give them to the optimiser.

    Inputs: ``SimilarityGroupSample`` batches from a ``GroupSimilarityDataLoader``.

    Args:
        loss: a ``pytorch_metric_learning.losses.BaseMetricLossFunction`` or
            ``CrossBatchMemory`` instance.
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
        if not isinstance(loss, (BaseMetricLossFunction, CrossBatchMemory)):
            raise TypeError(
                "PytorchMetricLearningWrapper: loss must be an instance of "
                "pytorch_metric_learning.losses.BaseMetricLossFunction (or CrossBatchMemory), "
                f"got {type(loss).__name__}. Pass e.g. losses.TripletMarginLoss() (instead of "
                "PML's DistributedLossWrapper, pass the loss it wraps with "
                "gather_across_ranks=True)."
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

    def _layout(self) -> Optional[Tuple[int, int]]:
        """``(classes, embedding width)`` of a PML loss with per-class parameters."""
        return class_layout(self._loss)

    def check_batch_targets(self, targets: dict) -> None:
        """Check a CPU batch's group ids against the wrapped loss's number of classes
        (only for a PML loss with per-class parameters)."""
        layout = self._layout()
        groups = targets.get("groups")
        if layout is not None and _is_id_tensor(groups):
            check_group_ids(self._owner(), groups, layout[0], mark=True)

    def _owner(self) -> str:
        return f"PytorchMetricLearningWrapper({type(self._loss).__name__})"

    def forward(self, embeddings: Tensor, groups: LongTensor) -> Tensor:
        """PML loss of ``embeddings: float (B, d)`` with ``groups: int64 (B,)``; 0-dim float.

        Raises:
            TypeError: ``groups`` is not a tensor.
            ValueError: shapes are not ``(B, d)`` and ``(B,)``, or ``d`` differs from the
                embedding size of a PML loss with per-class parameters.
            AssertionError: a group id is outside ``[0, num_classes)`` of such a loss (for
                ids on a device: checked there and raised two calls later, that call's loss
                zeroed, as for Quaterion's classifier losses).
        """
        check_embeddings(embeddings)
        if not isinstance(groups, Tensor):
            raise TypeError(
                f"`groups` must be a torch.Tensor of shape (B,), got {type(groups).__name__}; "
                "convert it with torch.as_tensor."
            )
        if groups.shape != embeddings.shape[:1]:
            raise ValueError(
                f"`groups` must have shape ({embeddings.shape[0]},) to match `embeddings` "
                f"{tuple(embeddings.shape)}, got {tuple(groups.shape)}."
            )
        layout = self._layout()
        valid = None
        if layout is not None:
            groups, valid = self._checked_ids(embeddings, groups, layout)
        if self.gather_across_ranks:
            embeddings, groups = gather_rows(embeddings, groups)
        indices_tuple = None if self._miner is None else self._miner(embeddings, groups)
        if isinstance(self._loss, CrossBatchMemory):
            loss = self._memory_loss(self._loss, embeddings, groups, indices_tuple)
        else:
            loss = self._loss(embeddings, groups, indices_tuple)
        return loss if valid is None else loss * valid.to(loss.dtype)

    def _memory_loss(
        self, memory: CrossBatchMemory, embeddings: Tensor, groups: Tensor, indices_tuple: Any
    ) -> Tensor:
        """``CrossBatchMemory`` in training; its inner loss over the batch alone in eval mode
        (validation must not put its rows into the training memory)."""
        if embeddings.shape[1] != memory.embedding_size:
            raise ValueError(
                f"{self._owner()}: embeddings have {embeddings.shape[1]} columns but the "
                f"memory was built with embedding_size={memory.embedding_size}; build it with "
                f"embedding_size={embeddings.shape[1]} (the encoder's output size)."
            )
        if not self.training:
            return memory.loss(embeddings, groups, indices_tuple)
        if embeddings.shape[0] > memory.memory_size:
            raise ValueError(
                f"{self._owner()}: a batch of {embeddings.shape[0]} rows (every rank's, with "
                f"gather_across_ranks) does not fit memory_size={memory.memory_size}; build "
                f"the memory with memory_size >= {embeddings.shape[0]}."
            )
        return memory(embeddings, groups, indices_tuple)

    def _checked_ids(
        self, embeddings: Tensor, groups: Tensor, layout: Tuple[int, int]
    ) -> Tuple[Tensor, Optional[Tensor]]:
        """Group ids checked against the classes of the wrapped loss (see :meth:`forward`)."""
        classes, width = layout
        if embeddings.shape[1] != width:
            raise ValueError(
                f"{self._owner()}: embeddings have {embeddings.shape[1]} columns but the PML "
                f"loss was built for embedding_size={width}; build it with "
                f"embedding_size={embeddings.shape[1]} (the encoder's output size)."
            )
        if not _is_id_tensor(groups):
            return groups, None
        if not device_check_needed(groups):
            check_group_ids(self._owner(), groups, classes)
            return groups, None
        return checked_on_device(self._owner(), groups, classes, self.device_checks())


def _is_id_tensor(groups: object) -> bool:
    """A 1-D integer (not bool) tensor: the group ids a class-count check can read."""
    return (
        isinstance(groups, Tensor)
        and groups.dim() == 1
        and not groups.is_floating_point()
        and groups.dtype is not torch.bool
    )
