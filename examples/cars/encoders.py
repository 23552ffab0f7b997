"""``CarsEncoder``: a frozen ResNet backbone saved as a state dict plus a JSON config."""

import json
import os

import torch
from torch import Tensor, nn

from quaterion_models.encoders import Encoder
from quaterion_models.utils import atomic_write

from .backbone import build_backbone
from .config import DEFAULT_ARCH

WEIGHTS_FILE = "encoder.pth"
CONFIG_FILE = "config.json"


class CarsEncoder(Encoder):
    """Frozen image encoder: float ``(B, 3, H, W)`` -> ``(B, embedding_size)`` pooled features.

    Args:
        encoder_model: backbone whose classifier is already ``nn.Identity()``.
        arch: torchvision builder name used to rebuild the backbone on :meth:`load`.
        embedding_size: width of the backbone's output (2048 for ResNet152).
    """

    def __init__(
        self, encoder_model: nn.Module, arch: str = DEFAULT_ARCH, embedding_size: int = 2048
    ) -> None:
        super().__init__()
        self._encoder = encoder_model
        self._config = {"arch": arch, "embedding_size": embedding_size}  # what save() writes

    @property
    def embedding_size(self) -> int:
        return self._config["embedding_size"]

    @property
    def trainable(self) -> bool:
        """Frozen: training caches the backbone's outputs, so each image is encoded once."""
        return False

    def forward(self, images: Tensor) -> Tensor:
        return self._encoder(images)

    def save(self, output_path: str) -> None:
        """Write ``encoder.pth`` (the backbone's ``state_dict``) and ``config.json``
        (``arch``, ``embedding_size``) atomically into ``output_path``."""
        os.makedirs(output_path, exist_ok=True)
        state = {key: value.detach().cpu() for key, value in self._encoder.state_dict().items()}
        config = self._config
        with atomic_write(os.path.join(output_path, WEIGHTS_FILE)) as file:
            torch.save(state, file)
        with atomic_write(os.path.join(output_path, CONFIG_FILE), "w") as file:
            json.dump(config, file, indent=2)

    @classmethod
    def load(cls, input_path: str) -> "CarsEncoder":
        """Rebuild ``<arch>(weights=None)`` and load ``encoder.pth`` with ``weights_only=True``.

        A directory without ``config.json`` is read as ResNet152 (2048-d)."""
        weights_path = os.path.join(input_path, WEIGHTS_FILE)
        if not os.path.isfile(weights_path):
            raise FileNotFoundError(
                f"input_path {input_path!r} holds no {WEIGHTS_FILE}; pass a directory written "
                "by CarsEncoder.save (encoders/default inside a saved servable)"
            )
        config = {"arch": DEFAULT_ARCH, "embedding_size": 2048}
        config_path = os.path.join(input_path, CONFIG_FILE)
        if os.path.isfile(config_path):
            with open(config_path, encoding="utf-8") as file:
                config.update(json.load(file))
        backbone, embedding_size = build_backbone(config["arch"], weights=None)
        state = torch.load(weights_path, map_location="cpu", weights_only=True)
        backbone.load_state_dict(state)
        return cls(backbone, arch=config["arch"], embedding_size=embedding_size)
