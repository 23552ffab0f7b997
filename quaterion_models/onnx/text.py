"""Text to token-id arrays with the ``tokenizers`` library (torch-free).

Shared by :class:`~quaterion_models.encoders.extras.transformer_encoder.TransformerEncoder`
(which turns the arrays into tensors) and the ONNX runtime, so both tokenise identically.
"""

from typing import Any

import numpy as np


def missing_tokenizers(error: ImportError) -> ImportError:
    """The error to raise when the ``tokenizers`` package is not installed."""
    return ImportError(
        "text encoders need the `tokenizers` package: pip install tokenizers "
        "(installed with transformers, and by pip install 'quaterion[onnx]')"
    )


def configure_tokenizer(tokenizer: Any, max_length: int, pad_id: int, pad_token: str) -> Any:
    """Make ``tokenizer`` (a ``tokenizers.Tokenizer``) truncate to ``max_length`` tokens and pad
    each batch to its longest text with ``pad_token``; returns it."""
    tokenizer.no_padding()
    tokenizer.no_truncation()
    tokenizer.enable_truncation(max_length=max_length)
    tokenizer.enable_padding(pad_id=pad_id, pad_token=pad_token)
    return tokenizer


def load_tokenizer_file(path: str) -> Any:
    """``tokenizers.Tokenizer.from_file(path)`` (a ``tokenizer.json``); plain data, no code."""
    try:
        from tokenizers import Tokenizer
    except ImportError as error:
        raise missing_tokenizers(error) from error
    return Tokenizer.from_file(path)


def check_texts(batch: Any, owner: str) -> list:
    """``batch`` as a list of ``str``; a ``TypeError`` naming ``owner`` otherwise."""
    if not isinstance(batch, (list, tuple)) or not all(isinstance(t, str) for t in batch):
        kinds = (
            sorted({type(t).__name__ for t in batch})
            if isinstance(batch, (list, tuple))
            else [type(batch).__name__]
        )
        raise TypeError(
            f"{owner} encodes text: expected a list of str, got {kinds}; pass strings, e.g. "
            "model.encode(['a query', 'another text'])"
        )
    return list(batch)


def tokenize(tokenizer: Any, texts: list, names: tuple) -> dict:
    """Token arrays ``{name: int64 (B, L)}`` for ``names`` among ``input_ids``,
    ``attention_mask`` and ``token_type_ids``."""
    encodings = tokenizer.encode_batch(texts)
    fields = {"input_ids": "ids", "attention_mask": "attention_mask", "token_type_ids": "type_ids"}
    return {
        name: np.asarray([getattr(e, fields[name]) for e in encodings], dtype=np.int64).reshape(
            len(texts), -1
        )
        for name in names
    }
