"""``SimilarityModel``: encoders + head, with batched ``encode`` and ``save``/``load``."""

import os
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import torch
from torch import Tensor, nn

from quaterion_models.encoders.encoder import Encoder
from quaterion_models.heads.encoder_head import EncoderHead
from quaterion_models.onnx.layout import EXPORT
from quaterion_models.types import CollateFnType, MetaExtractorFnType
from quaterion_models.utils.batch_checks import (
    check_encoder_output,
    check_head_output,
    check_rows,
    dtype_mismatch,
    depends_on_width,
    head_shape_failure,
    width_mismatch,
)
from quaterion_models.utils.checks import check_bool, check_positive_int
from quaterion_models.utils.classes import save_class_import
from quaterion_models.utils.config import ConfigFile
from quaterion_models.utils.directory_swap import atomic_directory, reading_directory
from quaterion_models.utils.errors import DamagedFileError
from quaterion_models.utils.files import existing_dir, first_non_finite, write_json
from quaterion_models.utils.import_origin import loading_directory
from quaterion_models.utils.record_inputs import encode_chunks
from quaterion_models.utils.records import collate_batch
from quaterion_models.utils.tensors import check_materialised, move_to_device
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
        if not encoders:
            raise ValueError(
                "SimilarityModel: `encoders` must hold at least one encoder, got {}; pass an "
                "Encoder or a dict {name: Encoder}"
            )
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
        """Refuse a head built for another width if its parameters have that width; warn
        for other heads (``EmptyHead`` passes any width through, as in the original)."""
        expected = getattr(self.head, "input_embedding_size", None)
        if not isinstance(expected, int):
            return
        try:
            sizes = {key: encoder.embedding_size for key, encoder in self.encoders.items()}
        except NotImplementedError:
            return  # reported by forward when the encoder is used
        if sum(sizes.values()) == expected:
            return
        message = (
            f"SimilarityModel: the head {type(self.head).__name__} expects "
            f"input_embedding_size={expected} but the encoders' embedding_size add up to "
            f"{sum(sizes.values())} ({sizes}); build the head with "
            "SimilarityModel.get_encoders_output_size(encoders)"
        )
        if depends_on_width(self.head, expected):
            raise ValueError(message)
        warnings.warn(
            f"{message}. The head has no parameters of that width, so it still works on the "
            "real width, "
            f"but its output_size reports {self.head.output_size}",
            UserWarning,
            stacklevel=3,
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
        """Raw records -> ``{"data": {key: collated}, "meta": List[dict]}``.

        A collate fn or meta extractor failing on the batch is re-raised as ``TypeError`` /
        ``ValueError`` naming the encoder key and the index of the offending record.
        """
        return collate_batch(batch, encoders_collate_fns, meta_extractors)

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
            check_head_output(self.head, output, joined.shape[-1])
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
            inputs: a list or other sequence of records, or an iterator / generator of
                records (read lazily, ``batch_size`` at a time). A tuple is one record, as in
                the original Quaterion, when it encodes as one record (e.g. for an encoder
                taking ``(query, title)`` pairs); when encoding it as one record fails (the
                original raised), its items are the records (e.g. a tuple of tensors).
                Anything else (a tensor, a string, a dict, a named tuple) is one record.
            batch_size: records per forward pass (a positive int; numpy integers accepted).
            to_numpy: return ``np.ndarray`` (bfloat16 cast to float32) instead of a tensor.

        Returns:
            ``(N, head.output_size)`` (``(1, D_out)`` for a single record, ``(0, D_out)``
            for no records). The model is left in eval mode.

        Raises:
            TypeError / ValueError: a record cannot be collated; the message names its index
                and the encoder.
        """
        batch_size = check_positive_int("encode", "batch_size", batch_size, "e.g. 32")
        to_numpy = check_bool("encode", "to_numpy", to_numpy)
        self._require_head("encode")
        self.eval()
        device = next(self.parameters(), torch.empty(0)).device
        collate = self._encode_collate()
        with torch.no_grad():
            chunks, single = encode_chunks(
                inputs,
                batch_size,
                lambda part, start, one: self._encode_records(
                    part, start, collate, device, to_numpy, one
                ),
            )
        if chunks:
            result = torch.cat(chunks, dim=0)
        else:
            empty = torch.empty((0, self.head.output_size), device=device)
            result = _finish_chunk(empty, to_numpy)
        if single:
            result = result.squeeze()
        result = torch.atleast_2d(result)
        return result.numpy() if to_numpy else result

    def _encode_records(
        self,
        part: list,
        start: int,
        collate: Callable,
        device: torch.device,
        to_numpy: bool,
        one_record: bool = False,
    ) -> Tensor:
        """One batch of records through collate and forward, finished for ``encode``.

        Each record must give one row, except a lone record (``one_record``): its rows are
        squeezed by ``encode`` as in the original, e.g. a ``(3, 5)`` tensor encodes to 3 rows.
        """
        batch = collate(part, start)
        try:
            output = self.forward(move_to_device(batch, device))
        except Exception as err:
            err.add_note(f"while encoding records {start}..{start + len(part) - 1}")
            raise
        rows = len(output) if output.dim() else 0  # shape only: no host sync
        if not one_record and rows != len(part):
            raise ValueError(
                f"SimilarityModel.encode: {len(part)} records (records {start}.."
                f"{start + len(part) - 1}) gave {rows} rows; the encoders and the head "
                f"{type(self.head).__name__} must return one row per record (rows would be "
                "matched to the wrong records)"
            )
        return _finish_chunk(output.detach(), to_numpy)

    def _encode_collate(self) -> Callable[[list, int], dict[str, Any]]:
        """``(records, index of the first) -> batch``: :meth:`get_collate_fn` if a subclass
        overrides it, else the per-encoder collates with errors naming the record index."""
        if type(self).get_collate_fn is not SimilarityModel.get_collate_fn:
            custom = self.get_collate_fn()
            return lambda part, start: custom(part)
        return partial(
            _collate_from,
            collates={key: enc.get_collate_fn() for key, enc in self.encoders.items()},
            extractors={key: enc.get_meta_extractor() for key, enc in self.encoders.items()},
            names={key: type(enc).__name__ for key, enc in self.encoders.items()},
        )

    def save(self, output_path: str) -> None:
        """Save into ``output_path`` atomically (see the saving-and-loading guide for the layout).

        Everything is written to a temp sibling directory which then replaces
        ``output_path``; if any part fails, ``output_path`` keeps the previous save intact.
        A symbolic link is followed (the model is written where it points; the link stays).
        Files of your own in ``output_path`` (anything but ``config.json``, ``head/`` and
        ``encoders/``) are kept.

        A head whose weights hold NaN or inf is saved with a warning (``load`` refuses such
        weights unless ``trusted=True``).

        Raises:
            NotADirectoryError: ``output_path`` is a file.
            FileExistsError: ``output_path`` is not a saved model but holds ``config.json``,
                ``head`` or ``encoders``; nothing is changed.
            PermissionError: ``output_path`` (or a directory in it) is read-only; checked
                before anything is moved, so nothing is changed.
            TimeoutError: another process kept saving or loading in the same parent
                directory for ``directory_swap.LOCK_TIMEOUT_S`` seconds.
            ValueError: a parameter or buffer is on the meta device (no values to save).
        """
        self._require_head("save")
        check_materialised(self, "SimilarityModel.save")
        non_finite = first_non_finite(self.head.state_dict())
        if non_finite is not None:
            warnings.warn(
                f"SimilarityModel.save: the head's {non_finite}; the model encodes inputs to "
                "NaN, and SimilarityModel.load will refuse this save unless trusted=True.",
                stacklevel=2,
            )
        with atomic_directory(output_path) as tmp:
            head_path = os.path.join(tmp, "head")
            os.makedirs(head_path, exist_ok=True)
            with _noted(f"while saving the head {type(self.head).__name__} to {output_path}"):
                self.head.save(head_path)
            os.makedirs(os.path.join(tmp, "encoders"), exist_ok=True)
            for key, encoder in self.encoders.items():
                encoder_path = os.path.join(tmp, "encoders", key)
                os.makedirs(encoder_path, exist_ok=True)
                with _noted(f"while saving encoder {key!r} of SimilarityModel to {output_path}"):
                    encoder.save(encoder_path)
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

        Imports the modules named in ``config.json`` (your installed encoder/head code; never
        a module inside ``input_path``, which would run code shipped with the model) but
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
            UnsafeFileError: a file needs classes outside the allowlist, or the config names
                a module inside ``input_path``, and not ``trusted``.
            ImportError: a recorded class cannot be imported.
        """
        with trusted_loading(check_bool("SimilarityModel.load", "trusted", trusted)):
            with reading_directory(input_path) as model_dir, loading_directory(model_dir):
                return cls._load(input_path, model_dir)

    @classmethod
    def _load(cls, input_path: str, model_dir: Path) -> "SimilarityModel":
        config_path = os.path.join(model_dir, "config.json")
        if not os.path.isfile(config_path):
            raise FileNotFoundError(
                f"{input_path} is not a saved SimilarityModel: {config_path} does not exist. "
                "Pass the directory given to SimilarityModel.save()"
            )
        config = ConfigFile.read(config_path, "the SimilarityModel config written by save()")
        if EXPORT.is_own(config.data):
            raise DamagedFileError(
                f"{input_path} is an ONNX export (export_onnx), not a servable written by "
                "SimilarityModel.save: run it with "
                "quaterion_models.onnx.OnnxSimilarityModel.load(path), or load the servable it "
                "was exported from"
            )
        if not {"encoders", "head"} <= config.data.keys():
            raise DamagedFileError(
                f"{config_path} is damaged or not a SimilarityModel config: expected keys "
                f"'encoders' and 'head', got {sorted(config.data)}; pass the directory given "
                "to SimilarityModel.save(), or save the model again"
            )
        records = config.sequence("encoders", item=dict)
        classes = {}
        for index, record in enumerate(records):
            field = f"encoders[{index}]"
            key = ConfigFile(config_path, record, config.what).string("key", label=f"{field}.key")
            if not _is_safe_key(key) or key in classes:
                problem = "repeats an earlier key" if key in classes else "is not a valid key"
                raise config.damaged(f"{field}.key", f"{problem}: invalid encoder key {key!r}")
            classes[key] = config.class_record(record, Encoder, field)
        head_class = config.class_record(config.data["head"], EncoderHead, "head")
        head = head_class.load(existing_dir(model_dir, "head"))
        encoders = {
            key: encoder_class.load(existing_dir(model_dir, "encoders", key))
            for key, encoder_class in classes.items()
        }
        return cls(head=head, encoders=encoders)


def _is_safe_key(key: Any) -> bool:
    """A key usable as child-module and directory name: no '.', path separators or reserved names."""
    return (
        isinstance(key, str)
        and key != ""
        and not any(char in key for char in "./\\\0")
        and key not in _RESERVED_KEYS
    )


@contextmanager
def _noted(note: str) -> Iterator[None]:
    """Add ``note`` to an exception leaving the block."""
    try:
        yield
    except Exception as err:
        err.add_note(note)
        raise


def _collate_from(part: list, start: int, collates: dict, extractors: dict, names: dict) -> dict:
    return collate_batch(part, collates, extractors, names, start)


def _finish_chunk(chunk: Tensor, to_numpy: bool) -> Tensor:
    """Leave ``chunk`` on its device, or bring it to CPU (bfloat16 -> float32) for numpy."""
    if not to_numpy:
        return chunk
    if chunk.dtype == torch.bfloat16:  # numpy has no bfloat16
        chunk = chunk.float()
    return chunk.cpu()


#: Alias of :class:`SimilarityModel`, kept for compatibility.
MetricModel = SimilarityModel
