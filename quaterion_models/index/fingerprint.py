"""Fingerprint of a servable: its configuration and a hash of its weights."""

import hashlib
import json
from typing import Any

import torch

from quaterion_models.model import SimilarityModel
from quaterion_models.utils.classes import save_class_import


def model_description(model: SimilarityModel) -> dict[str, Any]:
    """JSON-serialisable configuration of ``model``: classes, sizes and head config."""
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


def weights_hash(model: SimilarityModel) -> str:
    """SHA-256 over every tensor of ``model.state_dict()`` (name, dtype, shape and bytes)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        value = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{value.dtype}|{tuple(value.shape)}|".encode())
        if value.numel():
            digest.update(value.view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def servable_fingerprint(model: SimilarityModel) -> str:
    """Short hex id of a servable: SHA-256 of its description and weights hash (16 chars).

    Two models get the same fingerprint when they have the same classes, sizes, head config
    and tensor values. State an encoder keeps outside its tensors (a vocabulary file, say)
    is not part of it.
    """
    payload = json.dumps(
        {"description": model_description(model), "weights": weights_hash(model)},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def describe(model: SimilarityModel) -> str:
    """One line naming the head and encoder classes, for error messages."""
    description = model_description(model)
    encoders = ", ".join(f"{key}={enc['class']}" for key, enc in description["encoders"].items())
    head = description["head"]
    return f"{head['class']}(output_size={head['output_size']}) over [{encoders}]"
