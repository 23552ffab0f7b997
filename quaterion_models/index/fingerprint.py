"""Fingerprint of a servable: its configuration and a hash of its weights."""

import hashlib
import json
from typing import Any

from typing import TYPE_CHECKING, Union

from quaterion_models.utils.classes import save_class_import

if TYPE_CHECKING:
    from quaterion_models.model import SimilarityModel
    from quaterion_models.onnx.runtime import OnnxSimilarityModel

#: a torch servable or its ONNX export (which reports the torch servable's fingerprint)
Servable = Union["SimilarityModel", "OnnxSimilarityModel"]


def is_exported(model: object) -> bool:
    """Whether ``model`` is an ONNX export (it carries the fingerprint of its torch servable)."""
    from quaterion_models.onnx.runtime import OnnxSimilarityModel

    return isinstance(model, OnnxSimilarityModel)


def output_size(model: Servable) -> int:
    """Width of the vectors the servable encodes."""
    return model.output_size if is_exported(model) else model.head.output_size


def model_description(model: Servable) -> dict[str, Any]:
    """JSON-serialisable configuration of ``model``: classes, sizes and head config."""
    if is_exported(model):
        return model.description
    encoders = {
        key: {**save_class_import(encoder), "embedding_size": encoder.embedding_size}
        for key, encoder in sorted(model.encoders.items())
    }
    head = {**save_class_import(model.head), "output_size": model.head.output_size}
    try:
        head["config"] = model.head.get_config_dict()
    except NotImplementedError:
        pass
    return {"encoders": encoders, "head": head}


def weights_hash(model: "SimilarityModel") -> str:
    """SHA-256 over every tensor of ``model.state_dict()`` (name, dtype, shape and bytes)."""
    import torch

    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        value = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{value.dtype}|{tuple(value.shape)}|".encode())
        if value.numel():
            digest.update(value.view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def servable_fingerprint(model: Servable) -> str:
    """Short hex id of a servable: SHA-256 of its description and weights hash (16 chars).

    Two models get the same fingerprint when they have the same classes, sizes, head config
    and tensor values. State an encoder keeps outside its tensors (a vocabulary file, say)
    is not part of it. An ONNX export reports the fingerprint of the servable it was
    exported from.
    """
    if is_exported(model):
        return model.fingerprint
    payload = json.dumps(
        {"description": model_description(model), "weights": weights_hash(model)},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def describe(model: Servable) -> str:
    """One line naming the head and encoder classes, for error messages."""
    description = model_description(model)
    encoders = ", ".join(f"{key}={enc['class']}" for key, enc in description["encoders"].items())
    head = description["head"]
    return f"{head['class']}(output_size={head['output_size']}) over [{encoders}]"
