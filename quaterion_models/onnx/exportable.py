"""What an encoder implements so that :func:`~quaterion_models.onnx.export.export_onnx` can
trace it end to end (torch-free declaration; implemented by the transformer and torchvision
encoders)."""

from typing import Any


class OnnxExportable:
    """Mixin of encoders that can be traced into an ONNX graph.

    The graph takes the named arrays of :meth:`onnx_example_inputs` (what the encoder's
    collate function produces, as plain tensors) and returns ``(B, embedding_size)``. The
    runtime rebuilds those arrays from raw records with the preprocessing description that
    :meth:`save_onnx_preprocessing` returns.
    """

    def onnx_example_inputs(self) -> "dict[str, Any]":
        """Example collated batch ``{input name: Tensor}`` in graph-input order."""
        raise NotImplementedError(f"{type(self).__name__} does not implement onnx_example_inputs")

    def onnx_dynamic_axes(self) -> "dict[str, dict[int, str]]":
        """``{input name: {axis: axis name}}`` for axes whose size varies (batch, length)."""
        raise NotImplementedError(f"{type(self).__name__} does not implement onnx_dynamic_axes")

    def onnx_forward(self, *inputs: Any) -> Any:
        """The encoder's forward over the inputs of :meth:`onnx_example_inputs`, in order."""
        raise NotImplementedError(f"{type(self).__name__} does not implement onnx_forward")

    def save_onnx_preprocessing(self, output_path: str) -> dict:
        """Write what the runtime needs to build the inputs from raw records (a tokenizer, say)
        into the existing directory ``output_path``; return its JSON description, with
        ``"type"`` ``"text"`` or ``"tensor"`` and ``"inputs"`` (the input names in order)."""
        raise NotImplementedError(
            f"{type(self).__name__} does not implement save_onnx_preprocessing"
        )
