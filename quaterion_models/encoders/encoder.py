"""Base class of every encoder."""

from typing import Any

from torch import Tensor, nn
from torch.utils.data import default_collate

from quaterion_models.types import CollateFnType, MetaExtractorFnType, TensorInterchange


def _missing(owner: str, member: str, fix: str) -> NotImplementedError:
    return NotImplementedError(f"{owner}.{member} is not implemented: {fix}")


class Encoder(nn.Module):
    """One input-to-embedding component of a :class:`~quaterion_models.SimilarityModel`.

    Subclasses implement ``trainable``, ``embedding_size`` and ``forward``; ``save`` /
    ``load`` are only needed to persist the encoder. Missing members raise
    ``NotImplementedError`` naming the class and the member when used, never at
    instantiation.
    """

    def __init__(self):
        super().__init__()

    @property
    def trainable(self) -> bool:
        """``False`` freezes the encoder (no gradients; eligible for the training cache)."""
        raise _missing(type(self).__name__, "trainable", "define the `trainable` property")

    @property
    def embedding_size(self) -> int:
        """Width ``d`` of the embeddings returned by :meth:`forward`."""
        raise _missing(
            type(self).__name__, "embedding_size", "define the `embedding_size` property"
        )

    def get_collate_fn(self) -> CollateFnType:
        """Picklable function turning a list of raw records into this encoder's input.

        Default: ``torch.utils.data.default_collate``. Must not capture ``self``.
        """
        return default_collate

    @classmethod
    def extract_meta(cls, batch: list[Any]) -> list[dict]:
        """One meta dict per raw record (default: empty dicts)."""
        return [{} for _ in batch]

    def get_meta_extractor(self) -> MetaExtractorFnType:
        """Picklable meta extractor: ``extract_meta`` bound to the class."""
        return self.extract_meta

    def forward(self, batch: TensorInterchange) -> Tensor:
        """Collated batch -> embeddings, float ``(B, embedding_size)``."""
        raise _missing(type(self).__name__, "forward", "implement forward(batch)")

    def disable_gradients_if_required(self) -> None:
        """Set ``requires_grad = False`` on every parameter when ``trainable`` is false."""
        if not self.trainable:
            for _, parameter in self.named_parameters():
                parameter.requires_grad = False

    def save(self, output_path: str) -> None:
        """Persist the encoder into the existing directory ``output_path``."""
        raise _missing(
            type(self).__name__, "save", "implement save()/load() to persist this encoder"
        )

    @classmethod
    def load(cls, input_path: str) -> "Encoder":
        """Rebuild an encoder from a directory written by :meth:`save`."""
        raise _missing(cls.__name__, "load", "implement save()/load() to persist this encoder")
