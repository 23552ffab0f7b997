"""``StartupEncoder``: a frozen sentence-transformer (model name or local directory)."""

import sys

try:
    from sentence_transformers import SentenceTransformer
except ImportError:
    print(
        "The startup_search example needs sentence-transformers: "
        "pip install 'quaterion[examples]' or pip install sentence-transformers",
        file=sys.stderr,
    )
    sys.exit(1)

from typing import Any, List

from torch import Tensor

from quaterion_models.encoders import Encoder
from quaterion_models.types import CollateFnType


def extract_texts(batch: List[Any]) -> List[str]:
    """Collate: a list of ``str`` as is, a list of dicts -> their ``"description"`` values."""
    if all(isinstance(item, str) for item in batch):
        return batch
    if all(isinstance(item, dict) for item in batch):
        return [item["description"] for item in batch]
    raise TypeError("Expecting list of strings or dicts as inputs")


class StartupEncoder(Encoder):
    """Frozen text encoder: ``List[str]`` -> float ``(B, embedding_size)`` (384 for MiniLM).

    Args:
        encoder_path: a sentence-transformers model name or a local model directory.
    """

    def __init__(self, encoder_path: str) -> None:
        super().__init__()
        self.encoder = SentenceTransformer(encoder_path)

    @property
    def trainable(self) -> bool:
        return False

    @property
    def embedding_size(self) -> int:
        # Newer sentence-transformers renamed get_sentence_embedding_dimension (now deprecated).
        dimension = getattr(self.encoder, "get_embedding_dimension", None)
        if dimension is None:
            dimension = self.encoder.get_sentence_embedding_dimension
        return int(dimension())

    def get_collate_fn(self) -> CollateFnType:
        return extract_texts

    def forward(self, batch: List[str]) -> Tensor:
        embeddings = self.encoder.encode(
            batch, convert_to_numpy=False, convert_to_tensor=True, show_progress_bar=False
        )
        # sentence-transformers encodes under inference mode; a clone made outside it is an
        # ordinary tensor that the trainable head can back-propagate through.
        return embeddings.clone() if embeddings.is_inference() else embeddings

    def save(self, output_path: str) -> None:
        self.encoder.save(output_path)

    @classmethod
    def load(cls, input_path: str) -> "StartupEncoder":
        return cls(input_path)
