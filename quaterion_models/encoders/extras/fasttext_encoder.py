"""fastText / gensim ``KeyedVectors`` encoder (optional extra: ``pip install quaterion[fasttext]``)."""

import os
from collections.abc import Callable
from typing import Any, ClassVar, Optional

import numpy as np
import torch
from torch import Tensor, nn

from quaterion_models.encoders.encoder import Encoder, _missing
from quaterion_models.types import CollateFnType
from quaterion_models.utils.checks import check_bool
from quaterion_models.utils.config import ConfigFile
from quaterion_models.utils.errors import UnsafeFileError
from quaterion_models.utils.files import TRUSTED_FIX, write_json
from quaterion_models.utils.trust import is_loading_trusted

try:
    from gensim.models import FastText, KeyedVectors
    from gensim.models.fasttext import load_facebook_vectors
except ImportError as _err:  # pragma: no cover - exercised only without gensim
    raise ImportError(
        "quaterion_models.encoders.extras.fasttext_encoder requires gensim: install the "
        "'fasttext' extra (pip install 'quaterion[fasttext]') or pip install gensim"
    ) from _err


def load_fasttext_model(path: str) -> KeyedVectors:
    """Load word vectors from a gensim FastText model, a Facebook binary or ``KeyedVectors``.

    Tries, in order: ``FastText.load(path).wv``, ``load_facebook_vectors(path)``,
    ``KeyedVectors.load(path)``. Gensim files are pickles: load trusted files only.

    Raises:
        ValueError: none of the three formats could read ``path`` (all errors are listed).
    """
    loaders = [
        ("FastText.load", lambda: FastText.load(path).wv),
        ("load_facebook_vectors", lambda: load_facebook_vectors(path)),
        ("KeyedVectors.load", lambda: KeyedVectors.load(path)),
    ]
    errors = []
    for name, loader in loaders:
        try:
            return loader()
        except Exception as err:  # noqa: BLE001 - any failure means: try the next format
            errors.append(f"{name}: {type(err).__name__}: {err}")
    raise ValueError(
        f"load_fasttext_model: cannot read {path} as a gensim FastText model, a Facebook "
        f"fastText binary or KeyedVectors. Tried: {'; '.join(errors)}"
    )


def _avg(embeddings: Tensor) -> Tensor:
    return embeddings.mean(dim=0)


def _max(embeddings: Tensor) -> Tensor:
    return embeddings.max(dim=0).values


def _min(embeddings: Tensor) -> Tensor:
    return embeddings.min(dim=0).values


_AGGREGATIONS: dict[str, Callable[[Tensor], Tensor]] = {"avg": _avg, "max": _max, "min": _min}


class FasttextEncoder(Encoder):
    """Frozen encoder aggregating gensim token vectors per record.

    Subclasses implement :meth:`get_tokens` (raw records -> token lists).
    ``forward`` returns float32 ``(B, vector_size * len(aggregations))``: the aggregations
    of each record's token vectors, concatenated in the order given.

    Args:
        model_path: path of a gensim ``KeyedVectors`` file (e.g. ``FastText(...).wv.save``).
        on_disk: memory-map the vectors (``mmap="r"``) instead of reading them into RAM.
        aggregations: subset of ``["min", "max", "avg"]``; default ``["avg"]``.
    """

    aggregation_options: ClassVar[list[str]] = ["min", "max", "avg"]

    def __init__(self, model_path: str, on_disk: bool, aggregations: Optional[list[str]] = None):
        super().__init__()
        aggregations = ["avg"] if aggregations is None else list(aggregations)
        unknown = [name for name in aggregations if name not in self.aggregation_options]
        if unknown or not aggregations:
            raise ValueError(
                f"FasttextEncoder: `aggregations` must be a non-empty list drawn from "
                f"{self.aggregation_options}, got {aggregations!r}"
            )
        self.aggregations = aggregations
        self.on_disk = check_bool("FasttextEncoder", "on_disk", on_disk)
        self.model = KeyedVectors.load(str(model_path), mmap="r" if on_disk else None)
        self._device_tensor = nn.Parameter(torch.zeros(1))

    @property
    def trainable(self) -> bool:
        """Always ``False``."""
        return False

    @property
    def embedding_size(self) -> int:
        """``vector_size * len(aggregations)``."""
        return self.model.vector_size * len(self.aggregations)

    @classmethod
    def get_tokens(cls, batch: list[Any]) -> list[list[str]]:
        """Tokenise raw records (implement in a subclass)."""
        raise _missing(cls.__name__, "get_tokens", "return one list of tokens per record")

    def get_collate_fn(self) -> CollateFnType:
        """``type(self).get_tokens``."""
        return type(self).get_tokens

    @classmethod
    def aggregate(cls, embeddings: Tensor, operation: str) -> Tensor:
        """Aggregate float ``(T, d)`` token vectors along dim 0 -> ``(d,)``.

        Raises:
            RuntimeError: ``operation`` is not one of ``min``, ``max``, ``avg``.
        """
        if operation not in _AGGREGATIONS:
            raise RuntimeError(
                f"FasttextEncoder.aggregate: unknown operation {operation!r}; allowed: "
                f"{cls.aggregation_options}"
            )
        return _AGGREGATIONS[operation](embeddings)

    def _token_vectors(self, tokens: list[str]) -> np.ndarray:
        if not tokens:
            return np.zeros((1, self.model.vector_size), dtype=self.model.vectors.dtype)
        return np.stack([self.model.get_vector(token) for token in tokens])

    def forward(self, batch: list[list[str]]) -> Tensor:
        """Token lists -> float32 ``(B, embedding_size)``."""
        device = self._device_tensor.device
        rows = []
        for tokens in batch:
            vectors = torch.from_numpy(self._token_vectors(tokens)).to(device)
            rows.append(torch.cat([self.aggregate(vectors, op) for op in self.aggregations]))
        return torch.stack(rows)

    def save(self, output_path: str) -> None:
        """Write ``fasttext.model`` (+ separate arrays) and ``config.json``."""
        self.model.save(
            os.path.join(output_path, "fasttext.model"),
            separately=["vectors_ngrams", "vectors", "vectors_vocab"],
        )
        write_json(
            os.path.join(output_path, "config.json"),
            {"on_disk": self.on_disk, "aggregations": self.aggregations},
        )

    @classmethod
    def load(cls, input_path: str, trusted: Optional[bool] = None) -> Encoder:
        """``cls(model_path=input_path/fasttext.model, **config.json)``.

        gensim model files are pickles, so this needs trust: ``trusted=True`` here or
        ``SimilarityModel.load(path, trusted=True)`` (``None`` inherits the latter).

        Raises:
            UnsafeFileError: loading is not trusted.
        """
        model_path = os.path.join(input_path, "fasttext.model")
        if not is_loading_trusted(trusted):
            raise UnsafeFileError(
                f"refusing to load {model_path}: {cls.__name__} stores a gensim model, which "
                f"is a pickle (unpickling it can run code). If you created this file or "
                f"otherwise trust it, load it with {TRUSTED_FIX}."
            )
        config = ConfigFile.read(
            os.path.join(input_path, "config.json"), f"the {cls.__name__} config"
        )
        on_disk = config.boolean("on_disk")
        aggregations = config.sequence("aggregations", item=str)
        return cls(model_path=model_path, on_disk=on_disk, aggregations=aggregations)
