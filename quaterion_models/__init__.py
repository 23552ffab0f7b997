"""quaterion_models: the inference side of quaterion (torch and numpy only).

Importing this package only defines names: it never imports ``pytorch_lightning``,
``quaterion`` or ``gensim``. ``SimilarityModel`` (and torch with it) is imported on first
use, so the torch-free ONNX runtime (:mod:`quaterion_models.onnx`) works without torch.
"""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from quaterion_models.model import SimilarityModel as SimilarityModel

__all__ = ["SimilarityModel"]


def __getattr__(name: str) -> Any:
    if name == "SimilarityModel":
        from quaterion_models.model import SimilarityModel

        return SimilarityModel
    raise AttributeError(f"module 'quaterion_models' has no attribute {name!r}")
