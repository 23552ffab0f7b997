"""``SimilarityModel``: encoders + head, with batched ``encode`` and ``save``/``load``."""

import os
from collections.abc import Callable
from functools import partial
from typing import Any, Optional, Union

import numpy as np
import torch
from torch import Tensor, nn

from quaterion_models.encoders.encoder import Encoder
from quaterion_models.heads.encoder_head import EncoderHead
from quaterion_models.types import CollateFnType, MetaExtractorFnType
from quaterion_models.utils._batch_checks import (
    check_encoder_output,
    check_head_output,
    check_rows,
    dtype_mismatch,
    head_shape_failure,
    width_mismatch,
)
from quaterion_models.utils._files import (
    atomic_directory,
    existing_dir,
    read_json_dict,
    recover_directory,
    restore_subclass,
    write_json,
)
from quaterion_models.utils.classes import save_class_import
from quaterion_models.utils.errors import DamagedFileError
from quaterion_models.utils.meta import merge_meta
from quaterion_models.utils.tensors import move_to_device
from quaterion_models.utils.trust import trusted_loading

#: Key under which a single (non-dict) encoder is stored in ``SimilarityModel.encoders``.
DEFAULT_ENCODER_KEY = "default"

_RESERVED_KEYS = frozenset({"head", "encoders"})


class SimilarityModel(nn.Module):
    """Encoders whose outputs are concatenated (sorted by key) and passed through a head.

    ``self.encoders`` is a plain ``dict``; each encoder is also registered as a child module
    under its key, so the state dict holds ``"<key>.<...>"`` and ``"head.<...>"``.
    Non-trainable encoders are frozen at construction.

    Args:
        encoders: one encoder (stored under ``DEFAULT_ENCODER_KEY``) or ``{key: encoder}``.
            Keys must be valid module / directory names other than ``"head"`` and ``"encoders"``.
        head: head taking ``sum(embedding_size)`` inputs. ``None`` is tolerated (training
            builds stub models whose ``configure_head`` returns ``None``), but such a model
            cannot ``encode`` or ``save``.

    Example::

        model = SimilarityModel(encoders=my_encoder, head=EmptyHead(my_encoder.embedding_size))
        model.encode(records).shape  # (len(records), head.output_size)
    """

    def __init__(self, encoders: Union[Encoder, dict[str, Encoder]], head: EncoderHead):
        super().__init__()
        if not isinstance(encoders, dict):
            encoders = {DEFAULT_ENCODER_KEY: encoders}
        for key, encoder in encoders.items():
            self._check_encoder_key(key)
            if not isinstance(encoder, Encoder):
                raise TypeError(
                    f"SimilarityModel: encoder {key!r} must be an Encoder, got "
                    f"{type(encoder).__name__}; subclass quaterion_models.encoders.Encoder"
                )
        if head is not None and not isinstance(head, EncoderHead):
            raise TypeError(
                f"SimilarityModel: `head` must be an EncoderHead, got {type(head).__name__}; "
                "use one of quaterion_models.heads or subclass EncoderHead"
            )
        for key, encoder in encoders.items():
            encoder.disable_gradients_if_required()
            self.add_module(key, encoder)
        self.encoders = encoders
        self.head = head
        self._check_head_width()
        #: the ``encoders`` dict whose outputs the first batch checked (see ``forward``)
        self._checked_encoders: Optional[dict] = None

    def _check_head_width(self) -> None:
        expected = getattr(self.head, "input_embedding_size", None)
        if not isinstance(expected, int):
            return
        try:
            sizes = {key: encoder.embedding_size for key, encoder in self.encoders.items()}
        except NotImplementedError:
            return  # reported by forward when the encoder is used
        if sum(sizes.values()) != expected:
            raise ValueError(
                f"SimilarityModel: the head {type(self.head).__name__} expects "
                f"input_embedding_size={expected} but the encoders' embedding_size add up to "
                f"{sum(sizes.values())} ({sizes}); build the head with "
                "SimilarityModel.get_encoders_output_size(encoders)"
            )

    def _check_encoder_key(self, key: Any) -> None:
        if not _is_safe_key(key) or hasattr(self, key):
            raise ValueError(
                f"SimilarityModel: invalid encoder key {key!r}: keys must be non-empty strings "
                "without '.', '/' or '\\', must not be 'head' or 'encoders' and must not shadow "
                "a model attribute; rename the encoder (e.g. 'text', 'image')"
            )

    def _require_head(self, action: str) -> None:
        if self.head is None:
            raise ValueError(
                f"SimilarityModel.{action}: the model has no head (head=None); build it with "
                "a head, e.g. SimilarityModel(encoders, head=EmptyHead(embedding_size))"
            )

    @classmethod
    def collate_fn(
        cls,
        batch: list[Any],
        encoders_collate_fns: dict[str, CollateFnType],
        meta_extractors: dict[str, MetaExtractorFnType],
    ) -> dict[str, Any]:
        """Raw records -> ``{"data": {key: collated}, "meta": List[dict]}``."""
        return {
            "data": {key: collate(batch) for key, collate in encoders_collate_fns.items()},
            "meta": merge_meta({key: extract(batch) for key, extract in meta_extractors.items()}),
        }

    @classmethod
    def get_encoders_output_size(cls, encoders: Union[Encoder, dict[str, Encoder]]) -> int:
        """Sum of ``embedding_size`` over one encoder or a dict of encoders."""
        if isinstance(encoders, dict):
            return sum(encoder.embedding_size for encoder in encoders.values())
        return encoders.embedding_size

    def get_collate_fn(self) -> Callable[[list[Any]], dict[str, Any]]:
        """Picklable collate fn (does not reference ``self``) producing :meth:`forward` input."""
        return partial(
            SimilarityModel.collate_fn,
            encoders_collate_fns={key: enc.get_collate_fn() for key, enc in self.encoders.items()},
            meta_extractors={key: enc.get_meta_extractor() for key, enc in self.encoders.items()},
        )

    def forward(self, batch: dict[str, Any]) -> Tensor:
        """``{"data": {key: input}, "meta": [...]}`` -> float ``(B, head.output_size)``.

        Encoder outputs are concatenated along dim 1 in sorted key order. The first batch
        after construction (or after ``encoders`` is replaced) checks every encoder's output
        against its ``embedding_size`` and the head's output against ``output_size``
        (``ValueError`` naming the encoder). A layer failing on inputs of another dtype than
        the model's is reported as ``TypeError`` naming both dtypes.
        """
        # getattr: models unpickled from before this attribute existed check once too
        check = getattr(self, "_checked_encoders", None) is not self.encoders
        embeddings = sorted(
            (
                (key, self._encode_part(key, encoder, batch))
                for key, encoder in self.encoders.items()
            ),
            key=lambda pair: pair[0],
        )
        if check:
            for key, embedding in embeddings:
                check_encoder_output(key, self.encoders[key], embedding)
            check_rows({key: embedding.shape[0] for key, embedding in embeddings})
        joined = torch.cat([embedding for _, embedding in embeddings], dim=1)
        try:
            output = self.head(joined, meta=batch["meta"])
        except RuntimeError as err:
            sizes = {key: embedding.shape[-1] for key, embedding in embeddings}
            explained = (
                width_mismatch(self.head, joined, sizes)
                or dtype_mismatch(err, f"head {type(self.head).__name__}", joined, self.head)
                or head_shape_failure(err, self.head, joined, sizes)
            )
            if explained is None:
                raise
            raise explained from err
        if check:
            check_head_output(self.head, output)
            self._checked_encoders = self.encoders
        return output

    def _encode_part(self, key: str, encoder: Encoder, batch: dict[str, Any]) -> Tensor:
        try:
            inputs = batch["data"][key]
        except KeyError:
            raise KeyError(
                f"SimilarityModel.forward: the batch has no input for encoder {key!r} (it has "
                f"{sorted(batch.get('data', {}))}); build batches with model.get_collate_fn()"
            ) from None
        try:
            return encoder.forward(inputs)
        except RuntimeError as err:
            name = f"encoder {key!r} ({type(encoder).__name__})"
            explained = dtype_mismatch(err, name, inputs, encoder)
            if explained is None:
                raise
            raise explained from err

    def encode(
        self, inputs: Union[list[Any], Any], batch_size: int = 32, to_numpy: bool = True
    ) -> Union[Tensor, np.ndarray]:
        """Embed raw records in batches, in eval mode and without gradients.

        Args:
            inputs: list of raw records; anything else is one record.
            batch_size: records per forward pass.
            to_numpy: return ``np.ndarray`` (bfloat16 cast to float32) instead of a tensor.

        Returns:
            ``(N, head.output_size)`` (``(1, D_out)`` for a single record, ``(0, D_out)``
            for an empty list). The model is left in eval mode.
        """
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(
                f"encode: `batch_size` must be a positive int, got {batch_size!r}; e.g. 32"
            )
        self._require_head("encode")
        self.eval()
        device = next(self.parameters(), torch.empty(0)).device
        single = not isinstance(inputs, list)
        records = [inputs] if single else inputs
        collate = self.get_collate_fn()
        chunks = []
        with torch.no_grad():
            for start in range(0, len(records), batch_size):
                batch = move_to_device(collate(records[start : start + batch_size]), device)
                chunks.append(_finish_chunk(self.forward(batch).detach(), to_numpy))
        if chunks:
            result = torch.cat(chunks, dim=0)
        else:
            empty = torch.empty((0, self.head.output_size), device=device)
            result = _finish_chunk(empty, to_numpy)
        if single:
            result = result.squeeze()
        result = torch.atleast_2d(result)
        return result.numpy() if to_numpy else result

    def save(self, output_path: str) -> None:
        """Save into ``output_path`` atomically (see the saving-and-loading guide for the layout).

        Everything is written to a temp sibling directory which then replaces
        ``output_path``; if any part fails, ``output_path`` keeps the previous save intact.
        """
        self._require_head("save")
        with atomic_directory(output_path) as tmp:
            head_path = os.path.join(tmp, "head")
            os.makedirs(head_path, exist_ok=True)
            self.head.save(head_path)
            os.makedirs(os.path.join(tmp, "encoders"), exist_ok=True)
            for key, encoder in self.encoders.items():
                encoder_path = os.path.join(tmp, "encoders", key)
                os.makedirs(encoder_path, exist_ok=True)
                try:
                    encoder.save(encoder_path)
                except Exception as err:
                    err.add_note(
                        f"while saving encoder {key!r} of SimilarityModel to {output_path}"
                    )
                    raise
            config = {
                "encoders": [
                    {"key": key, **save_class_import(encoder)}
                    for key, encoder in self.encoders.items()
                ],
                "head": save_class_import(self.head),
            }
            write_json(os.path.join(tmp, "config.json"), config)

    def export_onnx(self, output_path: str, opset_version: int = 17) -> dict:
        """Export to ONNX for :class:`~quaterion_models.onnx.runtime.OnnxSimilarityModel`
        (extra ``onnx``): the head always, the whole model when every encoder can be traced.
        See :func:`quaterion_models.onnx.export.export_onnx`; returns the export's config."""
        from quaterion_models.onnx.export import export_onnx

        return export_onnx(self, output_path, opset_version=opset_version)

    @classmethod
    def load(cls, input_path: str, trusted: bool = False) -> "SimilarityModel":
        """Load a model saved by :meth:`save`.

        Imports the modules named in ``config.json`` (your installed encoder/head code) but
        never unpickles code stored in the files unless ``trusted=True``: head weights are
        read with ``torch.load(weights_only=True)`` (``SequentialHead``: plus the
        ``torch.nn`` building blocks). If a crash interrupted a :meth:`save` into
        ``input_path``, the last complete save is restored first.

        Args:
            input_path: the directory given to :meth:`save`.
            trusted: allow files that need arbitrary classes (custom layers pickled in a
                ``SequentialHead``, gensim models) to be unpickled, which **runs code
                from the files**. Only for directories you created or otherwise trust.

        Raises:
            FileNotFoundError: ``input_path`` is not a saved model directory.
            DamagedFileError: a file is truncated, not JSON / torch, or inconsistent.
            UnsafeFileError: a file needs classes outside the allowlist and not ``trusted``.
            ImportError: a recorded class cannot be imported.
        """
        with trusted_loading(trusted):
            return cls._load(input_path)

    @classmethod
    def _load(cls, input_path: str) -> "SimilarityModel":
        model_dir = recover_directory(input_path)
        config_path = os.path.join(model_dir, "config.json")
        if not os.path.isfile(config_path):
            raise FileNotFoundError(
                f"{input_path} is not a saved SimilarityModel: {config_path} does not exist. "
                "Pass the directory given to SimilarityModel.save()"
            )
        config = read_json_dict(config_path, "the SimilarityModel config written by save()")
        if not {"encoders", "head"} <= config.keys() or not isinstance(config["encoders"], list):
            raise DamagedFileError(
                f"{config_path} is damaged or not a SimilarityModel config: expected keys "
                f"'encoders' and 'head' ('encoders' a list), got {sorted(config)}; pass the directory "
                "given to SimilarityModel.save(), or save the model again"
            )
        head_class = restore_subclass(config["head"], EncoderHead, config_path)
        head = head_class.load(existing_dir(model_dir, "head"))
        encoders = {}
        for record in config["encoders"]:
            encoder_class = restore_subclass(record, Encoder, config_path)
            key = record.get("key")
            if not _is_safe_key(key):
                raise DamagedFileError(
                    f"{config_path} lists an invalid encoder key {key!r}; the config is "
                    "damaged or was edited: save the model again"
                )
            encoders[key] = encoder_class.load(existing_dir(model_dir, "encoders", key))
        return cls(head=head, encoders=encoders)


def _is_safe_key(key: Any) -> bool:
    """A key usable as child-module and directory name: no '.', path separators or reserved names."""
    return (
        isinstance(key, str)
        and key != ""
        and not any(char in key for char in "./\\\0")
        and key not in _RESERVED_KEYS
    )


def _finish_chunk(chunk: Tensor, to_numpy: bool) -> Tensor:
    """Leave ``chunk`` on its device, or bring it to CPU (bfloat16 -> float32) for numpy."""
    if not to_numpy:
        return chunk
    if chunk.dtype == torch.bfloat16:  # numpy has no bfloat16
        chunk = chunk.float()
    return chunk.cpu()


#: Alias of :class:`SimilarityModel`, kept for compatibility.
MetricModel = SimilarityModel
