"""Text to token-id arrays with the ``tokenizers`` library (torch-free).

Shared by :class:`~quaterion_models.encoders.extras.transformer_encoder.TransformerEncoder`
(which turns the arrays into tensors) and the ONNX runtime, so both tokenise identically.
"""

from typing import Any, Optional

import numpy as np


#: Model input name -> attribute of a ``tokenizers.Encoding`` holding it.
TOKEN_ARRAYS = {
    "input_ids": "ids",
    "attention_mask": "attention_mask",
    "token_type_ids": "type_ids",
}


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


def check_texts(batch: Any, owner: str, text_field: Optional[str] = None) -> list:
    """``batch`` as a list of ``str``; dict records give their ``text_field`` value.

    Raises:
        TypeError: a record is neither a ``str`` nor (with ``text_field``) a dict holding one.
    """
    if not isinstance(batch, (list, tuple)):
        batch = [batch]
    texts = []
    for record in batch:
        if text_field is not None and isinstance(record, dict):
            record = record.get(text_field)
        if not isinstance(record, str):
            accepted = "str" if text_field is None else f"str or dicts with a str {text_field!r}"
            raise TypeError(
                f"{owner} encodes text: records must be {accepted}, got "
                f"{type(record).__name__} {record!r:.60}; pass strings, e.g. "
                f"model.encode(['a query', 'another text']){_array_hint(record)}"
            )
        texts.append(record)
    return texts


def _array_hint(record: Any) -> str:
    """For an array of strings (``df["text"].values``), which encode takes as one record."""
    kind = getattr(getattr(record, "dtype", None), "kind", None)
    if kind in ("U", "S", "O") and callable(getattr(record, "tolist", None)):
        return (
            f". An array ({type(record).__name__}) is one record, not a list of texts: pass "
            "model.encode(array.tolist())"
        )
    return ""


def tokenize(tokenizer: Any, texts: list, names: tuple) -> dict:
    """Token arrays ``{name: int64 (B, L)}`` for ``names`` among ``input_ids``,
    ``attention_mask`` and ``token_type_ids``."""
    encodings = tokenizer.encode_batch(texts)
    return {
        name: np.asarray(
            [getattr(e, TOKEN_ARRAYS[name]) for e in encodings], dtype=np.int64
        ).reshape(len(texts), -1)
        for name in names
    }
