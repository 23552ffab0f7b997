"""First-batch checks of ``SimilarityModel.forward`` and explanations of layer errors.

Public so that the training package can apply the same checks (e.g. while filling a cache).
"""

from typing import Any, Optional

import torch
from torch import Tensor, nn


def floating_dtypes(obj: Any) -> set:
    """Floating dtypes of the tensors nested in ``obj`` (dicts, lists, tuples)."""
    if isinstance(obj, Tensor):
        return {obj.dtype} if obj.is_floating_point() else set()
    if isinstance(obj, dict):
        obj = list(obj.values())
    if isinstance(obj, (list, tuple)):
        found: set = set()
        for item in obj:
            found |= floating_dtypes(item)
        return found
    return set()


def module_dtype(module: nn.Module) -> Optional[torch.dtype]:
    """dtype of the first floating parameter or buffer of ``module`` (``None`` if none)."""
    for tensor in (*module.parameters(), *module.buffers()):
        if tensor.is_floating_point():
            return tensor.dtype
    return None


def dtype_mismatch(
    err: BaseException, what: str, inputs: Any, module: nn.Module
) -> Optional[TypeError]:
    """A ``TypeError`` naming both dtypes if ``err`` came from inputs of the wrong dtype."""
    model_dtype = module_dtype(module)
    given = floating_dtypes(inputs) - {model_dtype}
    if model_dtype is None or not given:
        return None
    input_dtype = sorted(str(dtype) for dtype in given)[0]
    return TypeError(
        f"{what} got {input_dtype} input but its parameters are {model_dtype}: convert the "
        f"model with model.to({input_dtype}) or the inputs with .to({model_dtype}) "
        f"(the layer said: {str(err).splitlines()[0] if str(err) else type(err).__name__})"
    )


def check_encoder_output(key: str, encoder: nn.Module, embeddings: Any) -> None:
    """The output of encoder ``key`` is a ``(B, ..., embedding_size)`` tensor."""
    name = f"encoder {key!r} ({type(encoder).__name__})"
    if not isinstance(embeddings, Tensor):
        raise TypeError(
            f"{name} returned {type(embeddings).__name__}, expected a Tensor of shape "
            f"(batch, embedding_size); return torch tensors from forward()"
        )
    size = encoder.embedding_size
    if embeddings.dim() < 2 or embeddings.shape[-1] != size:
        width = embeddings.shape[-1] if embeddings.dim() else None
        raise ValueError(
            f"{name} returned embeddings of width {width} (shape {tuple(embeddings.shape)}) but "
            f"its embedding_size is {size}: forward() must return (batch, {size}); fix forward() "
            "or make embedding_size report the real width"
        )


def check_rows(rows: dict[str, int]) -> None:
    """Every encoder returned the same number of rows."""
    if len(set(rows.values())) > 1:
        raise ValueError(
            f"encoders returned different numbers of rows for one batch: {rows}; each "
            "encoder must return one embedding per record"
        )


def width_mismatch(head: nn.Module, joined: Tensor, sizes: dict[str, int]) -> Optional[ValueError]:
    """A ``ValueError`` if the concatenated width differs from ``head.input_embedding_size``."""
    expected = getattr(head, "input_embedding_size", None)
    if not isinstance(expected, int) or joined.dim() < 1 or joined.shape[-1] == expected:
        return None
    return ValueError(
        f"the encoders' outputs are {joined.shape[-1]} wide in total ({sizes}) but the head "
        f"{type(head).__name__} expects input_embedding_size={expected}; build the head with "
        "SimilarityModel.get_encoders_output_size(encoders)"
    )


def depends_on_width(module: nn.Module, width: int) -> bool:
    """Whether a parameter or buffer of ``module`` has a dimension of size ``width`` (so the
    module was built for that input width: gates, linear layers), unlike a scalar temperature."""
    return any(width in tensor.shape for tensor in (*module.parameters(), *module.buffers()))


def check_head_output(head: nn.Module, output: Any, input_width: Optional[int] = None) -> None:
    """The head's output is ``(B, ..., head.output_size)``.

    Tolerated: a head without parameters of its declared width that passes its input
    through (``EmptyHead(100)`` on 5-wide embeddings returns 5 wide rows, as in the original);
    ``SimilarityModel`` warned about it at construction.
    """
    size = head.output_size
    if isinstance(output, Tensor) and output.dim() >= 2 and output.shape[-1] == size:
        return
    declared = getattr(head, "input_embedding_size", None)
    passes_through = (  # the case SimilarityModel warned about at construction
        isinstance(output, Tensor)
        and output.dim() >= 2
        and isinstance(declared, int)
        and declared != input_width
        and output.shape[-1] == input_width
        and not depends_on_width(head, declared)
    )
    if passes_through:
        return
    shape = tuple(output.shape) if isinstance(output, Tensor) else type(output).__name__
    raise ValueError(
        f"head {type(head).__name__} returned {shape} but its output_size is {size}: "
        f"forward() must return (batch, {size}); fix the head's output_size"
    )


def head_shape_failure(
    err: BaseException, head: nn.Module, joined: Tensor, sizes: dict[str, int]
) -> Optional[ValueError]:
    """A ``ValueError`` naming the widths if the head failed on the shape of its input."""
    message = str(err)
    if "shape" not in message and "size" not in message:
        return None
    return ValueError(
        f"head {type(head).__name__} cannot take the encoders' output: it is "
        f"{joined.shape[-1]} wide in total ({sizes}); build the head for that width, e.g. "
        "from SimilarityModel.get_encoders_output_size(encoders) (the layer said: "
        f"{message.splitlines()[0]})"
    )
