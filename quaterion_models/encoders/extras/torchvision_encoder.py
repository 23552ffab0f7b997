"""``TorchvisionEncoder``: a torchvision classification backbone inside a servable.

Needs ``torchvision`` (extra ``torchvision``), imported when an encoder is built, not when this
module is imported.
"""

import json
import os
from typing import Any

import torch
from torch import Tensor, nn

from quaterion_models.encoders.encoder import Encoder
from quaterion_models.onnx.exportable import OnnxExportable
from quaterion_models.utils.files import torch_load
from quaterion_models.utils.atomic import atomic_write
from quaterion_models.utils.checks import check_positive_int
from quaterion_models.utils.config import read_config_fields
from quaterion_models.utils.errors import DamagedFileError

WEIGHTS_FILE = "encoder.pth"
CONFIG_FILE = "config.json"
_CONFIG_FIELDS = {"arch": str, "embedding_size": int}
_OPTIONAL_FIELDS = {"trainable": (bool, False), "image_size": (int, 224)}


def _torchvision_models() -> Any:
    try:
        import torchvision
    except ImportError as error:
        raise ImportError(
            "TorchvisionEncoder needs torchvision: pip install 'quaterion[torchvision]' "
            "(or pip install torchvision)"
        ) from error
    return torchvision.models


def build_torchvision_backbone(arch: str, weights: Any = None) -> "tuple[nn.Module, int]":
    """``torchvision.models.<arch>(weights=weights)`` with its last ``Linear`` (the ImageNet
    classifier) replaced by ``Identity``; returns ``(module, embedding_size)``.

    The builder is looked up on ``torchvision.models`` at call time (tests and users can
    substitute a stand-in); only names of torchvision's classification models are accepted.
    """
    models = _torchvision_models()
    if not isinstance(arch, str) or arch not in models.list_models(module=models):
        raise ValueError(
            f"TorchvisionEncoder: `arch` must name a torchvision classification model "
            f"(e.g. 'resnet50', 'mobilenet_v3_small', 'efficientnet_b0'), got {arch!r}"
        )
    model = getattr(models, arch)(weights=weights)
    linears = [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]
    if not linears:
        raise ValueError(f"TorchvisionEncoder: {arch} has no Linear classifier to remove")
    parent_name, _, child = linears[-1].rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    embedding_size = getattr(parent, child).in_features
    setattr(parent, child, nn.Identity())
    return model, embedding_size


class TorchvisionEncoder(Encoder, OnnxExportable):
    """A torchvision backbone without its classifier: float ``(B, 3, H, W)`` -> ``(B, D)``.

    ``D`` is the input width of the model's last ``Linear`` layer (2048 for ResNet50/152,
    512 for ResNet18, 1024 for MobileNetV3-small). ``save`` writes ``encoder.pth`` (the
    state dict) and ``config.json``; ``load`` rebuilds ``torchvision.models.<arch>(weights=None)``
    by name and loads the state dict with ``torch.load(weights_only=True)``: no code from the
    files runs and no download happens.

    Args:
        arch: torchvision builder name, e.g. ``"resnet50"``.
        weights: torchvision weights (an enum member such as
            ``ResNet50_Weights.IMAGENET1K_V1``, or its name) or ``None`` for random weights.
        trainable: fine-tune the backbone (``False``: frozen, cacheable in training).
        image_size: side of the square example image used to trace the ONNX export.

    Example::

        encoder = TorchvisionEncoder("resnet50", weights="IMAGENET1K_V1")
        model = SimilarityModel(encoder, head=EmptyHead(encoder.embedding_size))
    """

    def __init__(
        self,
        arch: str,
        weights: Any = None,
        trainable: bool = False,
        image_size: int = 224,
    ):
        super().__init__()
        if not isinstance(trainable, bool):
            raise TypeError(f"TorchvisionEncoder: `trainable` must be bool, got {trainable!r}")
        image_size = check_positive_int("TorchvisionEncoder", "image_size", image_size)
        self.backbone, size = build_torchvision_backbone(arch, weights)
        self._config = {
            "arch": arch,
            "embedding_size": size,
            "trainable": trainable,
            "image_size": image_size,
        }

    @property
    def trainable(self) -> bool:
        return self._config["trainable"]

    @property
    def embedding_size(self) -> int:
        return self._config["embedding_size"]

    def forward(self, images: Tensor) -> Tensor:
        return self.backbone(images)

    def save(self, output_path: str) -> None:
        """Write ``encoder.pth`` (state dict) and ``config.json`` atomically."""
        os.makedirs(output_path, exist_ok=True)
        state = {key: value.detach().cpu() for key, value in self.backbone.state_dict().items()}
        with atomic_write(os.path.join(output_path, WEIGHTS_FILE)) as file:
            torch.save(state, file)
        with atomic_write(os.path.join(output_path, CONFIG_FILE), "w") as file:
            json.dump(self._config, file, indent=2)

    @classmethod
    def load(cls, input_path: str) -> "TorchvisionEncoder":
        """Rebuild ``<arch>(weights=None)`` and load ``encoder.pth`` (weights only).

        Raises:
            FileNotFoundError: ``config.json`` or ``encoder.pth`` is missing.
            DamagedFileError: the config or the weights are damaged or do not match the
                architecture (the file and field are named).
        """
        config_path = os.path.join(input_path, CONFIG_FILE)
        config = read_config_fields(
            config_path, _CONFIG_FIELDS, "the TorchvisionEncoder config", _OPTIONAL_FIELDS
        )
        weights_path = os.path.join(input_path, WEIGHTS_FILE)
        state = torch_load(weights_path, "TorchvisionEncoder weights (a state dict)")
        try:
            encoder = cls(config["arch"], None, config["trainable"], config["image_size"])
        except ValueError as err:
            raise DamagedFileError(f"{config_path}: field 'arch' is not usable: {err}") from err
        if encoder.embedding_size != config["embedding_size"]:
            raise DamagedFileError(
                f"{config_path} is damaged: field 'embedding_size' is "
                f"{config['embedding_size']} but {config['arch']} gives "
                f"{encoder.embedding_size}; save the model again"
            )
        try:
            encoder.backbone.load_state_dict(state)
        except (RuntimeError, TypeError, AttributeError) as err:
            raise DamagedFileError(
                f"{weights_path} does not hold {config['arch']} weights ({err}); save the "
                "model again"
            ) from err
        return encoder

    # -- ONNX export ---------------------------------------------------------------------

    def onnx_example_inputs(self) -> dict:
        size = self._config["image_size"]
        return {"images": torch.rand(2, 3, size, size)}

    def onnx_dynamic_axes(self) -> dict:
        return {"images": {0: "batch", 2: "height", 3: "width"}}

    def onnx_forward(self, images: Tensor) -> Tensor:
        return self.backbone(images)

    def save_onnx_preprocessing(self, output_path: str) -> dict:
        return {"type": "tensor", "inputs": ["images"], "shape": [3, None, None]}
