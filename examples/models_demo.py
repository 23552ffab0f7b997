"""Build a SimilarityModel, encode, save, reload and check the reloaded model agrees.

Run: ``PYTHONPATH=. python examples/models_demo.py`` (exit code 1 if the models disagree).
"""

import json
import os
import sys
import tempfile

import numpy as np
import torch
from torch import nn

from quaterion_models import SimilarityModel
from quaterion_models.encoders import Encoder
from quaterion_models.heads import SkipConnectionHead


class BagOfCharsEncoder(Encoder):
    """Embeds a string as the mean of learned per-character vectors (toy encoder)."""

    def __init__(self, dim: int = 8):
        super().__init__()
        self.chars = nn.EmbeddingBag(256, dim, mode="mean")

    @property
    def embedding_size(self) -> int:
        return self.chars.embedding_dim

    @property
    def trainable(self) -> bool:
        return True

    def get_collate_fn(self):
        return collate_strings

    def forward(self, batch):
        codes, offsets = batch
        return self.chars(codes, offsets)

    def save(self, output_path: str) -> None:
        with open(os.path.join(output_path, "config.json"), "w") as file:
            json.dump({"dim": self.embedding_size}, file)
        torch.save(self.state_dict(), os.path.join(output_path, "weights.pt"))

    @classmethod
    def load(cls, input_path: str) -> "BagOfCharsEncoder":
        with open(os.path.join(input_path, "config.json")) as file:
            encoder = cls(**json.load(file))
        state = torch.load(
            os.path.join(input_path, "weights.pt"), map_location="cpu", weights_only=True
        )
        encoder.load_state_dict(state)
        return encoder


def collate_strings(batch):
    """Strings -> (byte codes, offsets) for ``nn.EmbeddingBag``; picklable module function."""
    encoded = [list(text.encode("utf-8"))[:64] or [0] for text in batch]
    lengths = torch.tensor([0] + [len(codes) for codes in encoded[:-1]])
    return torch.tensor([c for codes in encoded for c in codes]), torch.cumsum(lengths, 0)


def main() -> int:
    # Saved models record the import path of each class, and a class defined in a script
    # lives in ``__main__``, which another process cannot import. Use the module's import path.
    from examples.models_demo import BagOfCharsEncoder as ImportableEncoder

    torch.manual_seed(0)
    encoder = ImportableEncoder(dim=8)
    model = SimilarityModel(encoders=encoder, head=SkipConnectionHead(encoder.embedding_size))
    texts = ["red car", "blue car", "a cat", "a dog"]
    embeddings = model.encode(texts, batch_size=2)  # np.ndarray (4, 8)
    with tempfile.TemporaryDirectory() as tmp:
        model.save(os.path.join(tmp, "servable"))
        reloaded = SimilarityModel.load(os.path.join(tmp, "servable"))
    same = np.allclose(reloaded.encode(texts), embeddings, atol=1e-6)
    print(f"embeddings {embeddings.shape}, reloaded model agrees: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
