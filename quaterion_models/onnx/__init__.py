"""ONNX export and a torch-free ONNX Runtime servable (extra ``onnx``).

``SimilarityModel.export_onnx(dir)`` (or :func:`~quaterion_models.onnx.export.export_onnx`)
writes the graphs; :class:`~quaterion_models.onnx.runtime.OnnxSimilarityModel` loads them
with ``onnxruntime`` and encodes like ``SimilarityModel.encode``. Neither this package nor
the runtime imports torch: a serving environment needs ``onnxruntime``, ``numpy`` and, for
text, ``tokenizers``.
"""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from quaterion_models.onnx.runtime import OnnxSimilarityModel as OnnxSimilarityModel

__all__ = ["OnnxSimilarityModel"]


def __getattr__(name: str) -> Any:
    if name == "OnnxSimilarityModel":
        from quaterion_models.onnx.runtime import OnnxSimilarityModel

        return OnnxSimilarityModel
    raise AttributeError(f"module 'quaterion_models.onnx' has no attribute {name!r}")
