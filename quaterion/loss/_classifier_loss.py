"""Shared shell of the group losses that learn one parameter row/column per class."""

from typing import Any, ClassVar

from torch import LongTensor, Tensor

from quaterion.loss._arg_checks import check_positive_int
from quaterion.loss._class_logits import check_group_ids
from quaterion.loss.group_loss import GroupLoss


class ClassifierGroupLoss(GroupLoss):
    """Base of ``SoftmaxLoss``, ``ArcFaceLoss``, ``CosFaceLoss`` and ``CenterLoss``.

    Validates ``embedding_size`` / ``num_groups``, builds ``get_config_dict`` from them plus
    the subclass's ``hyperparameters``, and checks group ids before calling ``_loss``.
    Subclasses create their learned parameter and implement ``_loss``.
    """

    hyperparameters: ClassVar[tuple[str, ...]] = ()

    def __init__(self, embedding_size: int, num_groups: int, gather_across_ranks: bool = False):
        super().__init__(gather_across_ranks=gather_across_ranks)
        name = type(self).__name__
        self.embedding_size = check_positive_int(name, "embedding_size", embedding_size)
        self.num_groups = check_positive_int(name, "num_groups", num_groups)

    def get_config_dict(self) -> dict[str, Any]:
        """Base config plus ``embedding_size``, ``num_groups`` and the hyperparameters."""
        config = {
            **super().get_config_dict(),
            "embedding_size": self.embedding_size,
            "num_groups": self.num_groups,
        }
        config.update({key: getattr(self, key) for key in self.hyperparameters})
        return config

    def forward(self, embeddings: Tensor, groups: LongTensor) -> Tensor:
        """Loss of ``embeddings: float (B, d)`` with class ids ``groups: int64 (B,)``; 0-dim.

        Raises:
            TypeError: ``groups`` is not an integer tensor.
            ValueError: shapes are not ``(B, d)`` and ``(B,)``.
            AssertionError: a group id is outside ``[0, num_groups)``.
        """
        check_group_ids(type(self).__name__, embeddings, groups, self.num_groups)
        return self._loss(*self.gather(embeddings, groups))

    def _loss(self, embeddings: Tensor, groups: Tensor) -> Tensor:
        raise NotImplementedError
