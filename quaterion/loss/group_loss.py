"""Base class of losses trained on groups (``GroupSimilarityDataLoader``)."""

from typing import Any, Callable, ClassVar, Optional

from torch import LongTensor, Tensor

from quaterion.distances import Distance
from quaterion.distributed import gather_rows, gather_rows_padded, world_size
from quaterion.loss._checks import attached_zero, check_choice, check_groups, check_number
from quaterion.loss._valid_rows import ValidRows, check_row_mask, takes_row_masks
from quaterion.loss.similarity_loss import SimilarityLoss


def rows_of_every_rank(
    embeddings: Tensor, groups: Tensor
) -> tuple[Tensor, Tensor, Optional[Tensor]]:
    """``(embeddings, groups, valid)`` of every rank through
    :func:`quaterion.distributed.gather_rows_padded`; in one process the inputs and
    ``valid=None`` (every row real)."""
    if world_size() == 1:
        return embeddings, groups, None
    (embeddings, groups), valid = gather_rows_padded(embeddings, groups)
    return embeddings, groups, valid


class GroupLoss(SimilarityLoss):
    """Loss over embeddings labelled with group ids.

    Inputs: batches of ``SimilarityGroupSample`` from a ``GroupSimilarityDataLoader``; the
    trainer calls ``loss(embeddings=..., groups=...)``.

    Args:
        distance_metric_name: distance used by the loss.
        gather_across_ranks: under DDP, compute the loss over the embeddings and groups of
            every rank (each rank's rows see all ranks' rows as positives / negatives);
            gradients flow back to each rank's own rows. No effect in a single process.
    """

    #: Whether :meth:`xbm_loss` has a cross-batch-memory term (``False``: it raises).
    supports_xbm: ClassVar[bool] = False

    def __init__(
        self, distance_metric_name: Distance = Distance.COSINE, gather_across_ranks: bool = False
    ):
        super().__init__(distance_metric_name=distance_metric_name)
        self.gather_across_ranks = bool(gather_across_ranks)

    def get_config_dict(self) -> dict[str, Any]:
        """Base config, plus ``gather_across_ranks`` when it is on."""
        config = super().get_config_dict()
        if self.gather_across_ranks:
            config["gather_across_ranks"] = True
        return config

    def gather(self, embeddings: Tensor, groups: Tensor) -> tuple[Tensor, Tensor]:
        """Every rank's ``embeddings`` and ``groups`` if ``gather_across_ranks``, else the inputs.

        Compact rows under the promise that every rank passes as many rows
        (``gather_rows(..., equal_rows=True)``: on the device path, ranks that differ get
        NaN and a ``RankMismatchError`` two calls later). The losses of this package use
        :meth:`gather_padded` instead, which takes any row counts. See
        :func:`quaterion.distributed.gather_rows` for the gradient scaling under DDP.
        """
        if not self.gather_across_ranks:
            return embeddings, groups
        return gather_rows(embeddings, groups, equal_rows=True)

    def gather_padded(
        self, embeddings: Tensor, groups: Tensor
    ) -> tuple[Tensor, Tensor, Optional[Tensor]]:
        """``(embeddings, groups, valid)`` of every rank if ``gather_across_ranks``.

        Under DDP, :func:`quaterion.distributed.gather_rows_padded`: on the device path the
        rows of each rank are padded to one capacity and ``valid`` (bool, on the device)
        marks the real ones, so ranks may hold batches of different sizes (one collective,
        no host sync); the loss must leave padded rows out of its pairs and means.
        Otherwise (no gathering, a single process) the inputs and ``valid=None``: every
        row is real.
        """
        if not self.gather_across_ranks:
            return embeddings, groups, None
        return rows_of_every_rank(embeddings, groups)

    def forward(self, embeddings: Tensor, groups: LongTensor) -> Tensor:
        """Compute the loss.

        Args:
            embeddings: float ``(B, d)``.
            groups: int64 ``(B,)`` group id of every row.

        Returns:
            0-dim float tensor.
        """
        raise NotImplementedError

    def xbm_loss(
        self,
        embeddings: Tensor,
        groups: LongTensor,
        memory_embeddings: Tensor,
        memory_groups: LongTensor,
        *,
        valid: Optional[Tensor] = None,
        memory_valid: Optional[Tensor] = None,
    ) -> Tensor:
        """Cross-batch-memory term: the batch as anchors, the memory as candidates.

        A loss with such a term sets ``supports_xbm = True`` and implements
        ``_memory_loss(embeddings, groups, memory_embeddings, memory_groups)`` (with
        keyword arguments ``valid`` and ``memory_valid`` to take padded rows, see below);
        this method checks the inputs and returns a zero attached to the graph for an empty
        memory.

        Args:
            embeddings: float ``(B, d)``.
            groups: int64 ``(B,)``.
            memory_embeddings: float ``(M, d)``.
            memory_groups: int64 ``(M,)``.
            valid: bool ``(B,)``: the real rows of a batch gathered with padding (see
                :meth:`gather_padded`); ``None``: all.
            memory_valid: bool ``(M,)``: the real rows of the memory; ``None``: all.

        Raises:
            NotImplementedError: the loss has no cross-batch-memory support.
            TypeError: masks were given to a ``_memory_loss`` that takes none, or a mask
                is not a bool tensor.
            ValueError: a mask's shape or device does not match its rows.
        """
        if not self.supports_xbm:
            raise NotImplementedError(f"XBM is not implemented for {self.__class__.__name__}")
        check_groups(embeddings, groups)
        check_row_mask("valid", valid, embeddings)
        if len(memory_groups) == 0:
            return attached_zero(embeddings)
        check_groups(memory_embeddings, memory_groups)
        check_row_mask("memory_valid", memory_valid, memory_embeddings)
        if valid is None and memory_valid is None:
            return self._memory_loss(embeddings, groups, memory_embeddings, memory_groups)
        if not takes_row_masks(type(self)._memory_loss):
            raise TypeError(
                f"{type(self).__name__}._memory_loss takes no `valid`/`memory_valid` "
                "keyword arguments, but the batch or the memory holds padded rows (a "
                "batch gathered across ranks of different sizes). Add both keyword "
                "arguments and leave the rows they mark False out of the loss."
            )
        return self._memory_loss(
            embeddings,
            groups,
            memory_embeddings,
            memory_groups,
            valid=valid,
            memory_valid=memory_valid,
        )

    def _memory_loss(self, embeddings, groups, memory_embeddings, memory_groups) -> Tensor:
        raise NotImplementedError

    def xbm_takes_masks(self) -> bool:
        """Whether :meth:`xbm_loss` (and the ``_memory_loss`` behind it) take the keyword
        arguments ``valid`` and ``memory_valid``: true for the losses of this package;
        false for an override written with the four positional arguments only, which the
        training step then hands compact rows (as ``gather``). An ``xbm_loss`` of its own
        is judged alone (it need not call ``_memory_loss``)."""
        cls = type(self)
        if cls.xbm_loss is not GroupLoss.xbm_loss:
            return takes_row_masks(cls.xbm_loss)
        return takes_row_masks(cls._memory_loss)


class MinedMarginLoss(GroupLoss):
    """Shell of the group losses that mine one distance matrix with a margin.

    ``loss = strategy(distance_matrix(anchors, candidates), anchor_groups, candidate_groups,
    margin)``, the strategy picked by ``mining`` from the subclass's ``strategies`` table.
    Used by :class:`~quaterion.loss.TripletLoss` and
    :class:`~quaterion.loss.OnlineContrastiveLoss`.

    Args:
        margin: margin ``m`` (>= 0).
        distance_metric_name: distance whose ``distance_matrix`` is used.
        mining: a key of ``strategies``.
        gather_across_ranks: see :class:`GroupLoss`.
    """

    strategies: ClassVar[dict[str, Callable[..., Tensor]]] = {}

    def __init__(
        self,
        margin: Optional[float],
        distance_metric_name: Distance,
        mining: Optional[str],
        gather_across_ranks: bool,
    ):
        check_choice("mining", mining, self.strategies)
        check_number(type(self).__name__, "margin", margin, minimum=0)
        super().__init__(
            distance_metric_name=distance_metric_name, gather_across_ranks=gather_across_ranks
        )
        self._margin = margin
        self._mining = mining
        self._strategy = self.strategies[mining]

    def get_config_dict(self) -> dict[str, Any]:
        """Base config plus ``margin`` and ``mining``."""
        return {**super().get_config_dict(), "margin": self._margin, "mining": self._mining}

    def forward(self, embeddings: Tensor, groups: LongTensor) -> Tensor:
        """Loss of ``embeddings: float (B, d)`` with ``groups: int64 (B,)``; 0-dim tensor."""
        check_groups(embeddings, groups)
        embeddings, groups, valid = self.gather_padded(embeddings, groups)
        return self._loss(embeddings, groups, valid=None if valid is None else (valid, valid))

    def _loss(
        self, embeddings_a, groups_a, embeddings_b=None, groups_b=None, valid: ValidRows = None
    ) -> Tensor:
        """Anchors ``(A, d)`` against candidates ``(M, d)``; ``None``: the anchors themselves.
        ``valid``: ``(real anchors, real candidates)``, ``None`` for all."""
        dist = self.distance_metric.distance_matrix(embeddings_a, embeddings_b)
        groups_b = groups_a if groups_b is None else groups_b
        if valid is None:
            return self._strategy(dist, groups_a, groups_b, self._margin)
        return self._strategy(dist, groups_a, groups_b, self._margin, valid=valid)
