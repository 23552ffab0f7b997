"""``OnnxSimilarityModel``: a servable exported by ``export_onnx``, run with ONNX Runtime.

Torch-free: needs ``onnxruntime`` and ``numpy`` (plus ``tokenizers`` for text encoders).
"""

import json
import os
from collections.abc import Sequence
from typing import Any, Optional, Union

import numpy as np

from quaterion_models.onnx import layout
from quaterion_models.onnx.text import (
    TOKEN_ARRAYS,
    check_texts,
    configure_tokenizer,
    load_tokenizer_file,
    tokenize,
)
from quaterion_models.utils.checks import check_bool, check_positive_int
from quaterion_models.utils.config import read_config_fields
from quaterion_models.utils.directory_swap import reading_directory
from quaterion_models.utils.record_inputs import encode_chunks
from quaterion_models.utils.errors import DamagedFileError

_CONFIG_FIELDS = {
    "format": str,
    "fingerprint": str,
    "description": dict,
    "head_input_size": int,
    "output_size": int,
    "head": str,
    "end_to_end": (str, type(None)),
    "encoders": list,
}
_TEXT_FIELDS = {
    "inputs": list,
    "tokenizer": str,
    "max_length": int,
    "pad_token": str,
    "pad_id": int,
}


def _missing_onnxruntime(error: ImportError) -> ImportError:
    return ImportError(
        "OnnxSimilarityModel needs onnxruntime: pip install 'quaterion[onnx]' "
        "(or pip install onnxruntime)"
    )


def check_is_export(config_path: str) -> None:
    """``DamagedFileError`` with the fix when ``config_path`` is a torch servable's config."""
    try:
        with open(config_path, encoding="utf-8") as file:
            data = json.load(file)
    except (OSError, ValueError):
        return  # read_config_fields reports it
    if isinstance(data, dict) and "format" not in data and {"encoders", "head"} <= data.keys():
        raise DamagedFileError(
            f"{config_path} has no field 'format': its directory is a torch servable "
            "(SimilarityModel.save), not an ONNX export. Export it with "
            "SimilarityModel.load(path).export_onnx(export_dir) and load export_dir"
        )


def _check_providers(providers: Any) -> list:
    """``providers`` as ONNX Runtime takes them (a single name is a list of one; ONNX Runtime
    itself warns about names it does not have and skips them).

    Raises:
        TypeError: not a name or a non-empty list of names / ``(name, options dict)`` pairs.
    """
    if providers is None:
        return ["CPUExecutionProvider"]
    if isinstance(providers, str):
        providers = [providers]
    valid = isinstance(providers, Sequence) and len(providers) > 0
    for entry in providers if valid else ():
        if isinstance(entry, tuple) and len(entry) == 2 and isinstance(entry[1], dict):
            entry = entry[0]
        valid = valid and isinstance(entry, str)
    if not valid:
        raise TypeError(
            "OnnxSimilarityModel: `providers` must be an execution provider name or a non-empty "
            f"list of names (or (name, options) pairs), got {providers!r:.80}; e.g. "
            "['CUDAExecutionProvider', 'CPUExecutionProvider']"
        )
    return list(providers)


class TextInputs:
    """Raw ``str`` records -> token arrays, with the tokenizer saved beside the graph."""

    def __init__(self, key: str, config: dict, folder: str, config_path: str):
        for name, kind in _TEXT_FIELDS.items():
            if not isinstance(config.get(name), kind) or isinstance(config.get(name), bool):
                raise DamagedFileError(
                    f"{config_path} is damaged: field 'encoders[{key}].preprocessing.{name}' "
                    f"must be {kind.__name__}, got {config.get(name)!r}; export the model again"
                )
        text_field = config.get("text_field")
        if text_field is not None and not isinstance(text_field, str):
            raise DamagedFileError(
                f"{config_path} is damaged: field 'encoders[{key}].preprocessing.text_field' "
                f"must be a str or null, got {text_field!r}; export the model again"
            )
        unknown = set(config["inputs"]) - set(TOKEN_ARRAYS)
        if unknown or not config["inputs"]:
            raise DamagedFileError(
                f"{config_path} is damaged: field 'encoders[{key}].preprocessing.inputs' must "
                f"name some of {list(TOKEN_ARRAYS)}, got {config['inputs']!r}; export again"
            )
        self.text_field = text_field
        self.key = key
        self.names = tuple(config["inputs"])
        path = os.path.join(folder, os.path.basename(config["tokenizer"]))
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path} does not exist: export the model again")
        try:
            tokenizer = load_tokenizer_file(path)
        except ImportError:
            raise
        except Exception as err:  # noqa: BLE001 - the tokenizers library's parse errors
            raise DamagedFileError(
                f"{path} is damaged or not a tokenizer.json ({err}); export the model again"
            ) from err
        self.tokenizer = configure_tokenizer(
            tokenizer, config["max_length"], config["pad_id"], config["pad_token"]
        )

    def __call__(self, records: list) -> dict:
        return tokenize(
            self.tokenizer, check_texts(records, "OnnxSimilarityModel", self.text_field), self.names
        )


class TensorInputs:
    """Array-like records of one shape -> one stacked float32 array (like ``default_collate``)."""

    def __init__(self, key: str, config: dict, config_path: str):
        names = config.get("inputs")
        if not isinstance(names, list) or len(names) != 1 or not isinstance(names[0], str):
            raise DamagedFileError(
                f"{config_path} is damaged: field 'encoders[{key}].preprocessing.inputs' must "
                f"be a list of one name, got {names!r}; export the model again"
            )
        self.key = key
        self.names = tuple(names)
        shape = config.get("shape")
        self.shape = tuple(shape) if isinstance(shape, list) else None

    def __call__(self, records: list) -> dict:
        try:
            array = np.stack([np.asarray(record, dtype=np.float32) for record in records])
        except (TypeError, ValueError) as err:
            raise TypeError(
                f"OnnxSimilarityModel: encoder {self.key!r} takes arrays of one shape "
                f"{self.shape or ''}; could not stack the records ({err})"
            ) from err
        got = array.shape[1:]
        if self.shape is not None and (
            len(got) != len(self.shape)
            or any(fixed is not None and fixed != size for fixed, size in zip(self.shape, got))
        ):
            expected = tuple("any" if fixed is None else fixed for fixed in self.shape)
            raise ValueError(
                f"OnnxSimilarityModel: encoder {self.key!r} expects records of shape "
                f"{expected}, got {got}"
            )
        return {self.names[0]: array}


class OnnxSimilarityModel:
    """An ONNX export of a ``SimilarityModel``; ``encode`` works like ``SimilarityModel.encode``.

    With ``model.onnx`` (traceable encoders) it takes the same raw records as the torch
    servable (texts, image arrays). A head-only export (or ``head_only=True``) takes the
    encoders' concatenated embeddings, ``(head_input_size,)`` per record. Works with
    :class:`~quaterion_models.index.SimilarityIndex`: it reports the torch servable's
    fingerprint, so an index built with the torch servable opens with its export.

    Args:
        path: directory written by ``SimilarityModel.export_onnx`` / ``export_onnx``.
        providers: ONNX Runtime execution providers, a name or a list (default: CPU).
        head_only: run ``head.onnx`` on embeddings even when ``model.onnx`` exists.
        session_options: ``onnxruntime.SessionOptions`` (threads, graph optimisation).

    Example::

        model = OnnxSimilarityModel.load("servable-onnx")
        vectors = model.encode(["a query"])  # numpy (1, output_size)
    """

    def __init__(
        self,
        path: Union[str, "os.PathLike[str]"],
        providers: Optional[Sequence[str]] = None,
        head_only: bool = False,
        session_options: Any = None,
    ):
        try:
            import onnxruntime
        except ImportError as error:
            raise _missing_onnxruntime(error) from error
        # an export interrupted between its two renames is finished first, as for servables;
        # the shared lock keeps a concurrent export from swapping the files while they are read
        with reading_directory(path, layout.EXPORT) as directory:
            self._open(os.fspath(directory), providers, head_only, session_options, onnxruntime)

    def _open(
        self,
        path: str,
        providers: Optional[Sequence[str]],
        head_only: bool,
        session_options: Any,
        onnxruntime: Any,
    ) -> None:
        self.path = path
        config_path = os.path.join(self.path, layout.CONFIG_FILE)
        if not os.path.isfile(config_path):
            raise FileNotFoundError(
                f"{self.path} is not an ONNX export: {config_path} does not exist; export a "
                "servable with SimilarityModel.export_onnx(dir)"
            )
        check_is_export(config_path)
        config = read_config_fields(config_path, _CONFIG_FIELDS, "the ONNX export config")
        if config["format"] != layout.FORMAT:
            raise DamagedFileError(
                f"{config_path}: field 'format' is {config['format']!r}, this runtime reads "
                f"{layout.FORMAT!r}; export the model again with this version"
            )
        self.config = config
        head_only = check_bool("OnnxSimilarityModel", "head_only", head_only)
        graph = (
            config["head"] if head_only or config["end_to_end"] is None else config["end_to_end"]
        )
        graph_path = os.path.join(self.path, os.path.basename(graph))
        if not os.path.isfile(graph_path):
            raise FileNotFoundError(f"{graph_path} does not exist: export the model again")
        self.head_only = graph == config["head"]
        providers = _check_providers(providers)
        if session_options is None:
            session_options = onnxruntime.SessionOptions()
            session_options.log_severity_level = 3
        elif not isinstance(session_options, onnxruntime.SessionOptions):
            raise TypeError(
                f"OnnxSimilarityModel: `session_options` must be an onnxruntime.SessionOptions, "
                f"got {type(session_options).__name__} {session_options!r:.60}"
            )
        try:
            self.session = onnxruntime.InferenceSession(
                graph_path, session_options, providers=providers
            )
        except Exception as err:  # noqa: BLE001 - onnxruntime's own error types
            raise DamagedFileError(
                f"{graph_path} is damaged or not an ONNX graph ({type(err).__name__}: "
                f"{str(err).strip()[:200]}); export the model again"
            ) from err
        self.inputs = [] if self.head_only else self._inputs(config, config_path)
        self._check_graph(graph_path, config_path)

    def _check_graph(self, graph_path: str, config_path: str) -> None:
        """The graph's inputs and output width are the ones the config declares (a config
        edited or mixed from two exports failed inside ONNX Runtime at the first encode, or
        reported an ``output_size`` its vectors did not have).

        Raises:
            DamagedFileError: naming the config field and what the graph has.
        """
        if self.head_only:
            declared = {layout.HEAD_INPUT: ("head_input_size", self.config["head_input_size"])}
        else:
            declared = {
                layout.input_name(inputs.key, name): (f"encoders[{inputs.key}]", None)
                for inputs in self.inputs
                for name in inputs.names
            }
        graph_inputs = {node.name: node.shape for node in self.session.get_inputs()}
        if set(graph_inputs) != set(declared):
            raise DamagedFileError(
                f"{config_path} does not match {graph_path}: the graph takes inputs "
                f"{sorted(graph_inputs)}, the config describes {sorted(declared)}; the config "
                "was edited or mixes two exports: export the model again"
            )
        checks = [(field, size, graph_inputs[name]) for name, (field, size) in declared.items()]
        outputs = {node.name: node.shape for node in self.session.get_outputs()}
        if layout.OUTPUT not in outputs:
            raise DamagedFileError(
                f"{graph_path} has no output {layout.OUTPUT!r} (it has {sorted(outputs)}): it "
                "is not a graph of this export; export the model again"
            )
        checks.append(("output_size", self.config["output_size"], outputs[layout.OUTPUT]))
        for field, size, shape in checks:
            width = shape[-1] if shape else None
            if size is not None and isinstance(width, int) and width != size:
                raise DamagedFileError(
                    f"{config_path} is damaged or was edited: field {field!r} is {size}, but "
                    f"{graph_path} has width {width}; export the model again"
                )

    @classmethod
    def load(
        cls,
        path: Union[str, "os.PathLike[str]"],
        providers: Optional[Sequence[str]] = None,
        head_only: bool = False,
        session_options: Any = None,
    ) -> "OnnxSimilarityModel":
        """Load an export directory (see the class for the arguments)."""
        return cls(path, providers, head_only, session_options)

    def _inputs(self, config: dict, config_path: str) -> list:
        inputs = []
        for entry in config["encoders"]:
            key = entry.get("key") if isinstance(entry, dict) else None
            preprocessing = entry.get("preprocessing") if isinstance(entry, dict) else None
            if not isinstance(key, str) or not isinstance(preprocessing, dict):
                raise DamagedFileError(
                    f"{config_path} is damaged: each 'encoders' entry needs a 'key' and a "
                    f"'preprocessing' object, got {entry!r}; export the model again"
                )
            folder = os.path.join(self.path, layout.ENCODERS_DIR, os.path.basename(key))
            kind = preprocessing.get("type")
            if kind == "text":
                inputs.append(TextInputs(key, preprocessing, folder, config_path))
            elif kind == "tensor":
                inputs.append(TensorInputs(key, preprocessing, config_path))
            else:
                raise DamagedFileError(
                    f"{config_path} is damaged: field 'encoders[{key}].preprocessing.type' "
                    f"must be 'text' or 'tensor', got {kind!r}; export the model again"
                )
        return inputs

    @property
    def output_size(self) -> int:
        """Width of the vectors ``encode`` returns."""
        return self.config["output_size"]

    @property
    def fingerprint(self) -> str:
        """Fingerprint of the torch servable this was exported from."""
        return self.config["fingerprint"]

    @property
    def description(self) -> dict:
        """Classes and sizes of the torch servable this was exported from."""
        return self.config["description"]

    def _feeds(self, records: list) -> dict:
        if self.head_only:
            try:
                array = np.asarray(records, dtype=np.float32)
            except (TypeError, ValueError) as err:
                raise TypeError(
                    f"OnnxSimilarityModel (head only) takes embeddings of size "
                    f"{self.config['head_input_size']} per record; could not read them ({err})"
                ) from err
            if array.ndim != 2 or array.shape[1] != self.config["head_input_size"]:
                raise ValueError(
                    f"OnnxSimilarityModel (head only) takes embeddings of size "
                    f"{self.config['head_input_size']} per record, got shape {array.shape[1:]}"
                )
            return {layout.HEAD_INPUT: array}
        feeds = {}
        for inputs in self.inputs:
            for name, array in inputs(records).items():
                feeds[layout.input_name(inputs.key, name)] = array
        return feeds

    def encode(self, inputs: Union[list, Any], batch_size: int = 32, to_numpy: bool = True) -> Any:
        """Embed raw records in batches; takes the inputs ``SimilarityModel.encode`` takes.

        Args:
            inputs: a list or other sequence of records, or an iterator / generator of
                records (read ``batch_size`` at a time). A tuple is one record when it encodes
                as one, else its items are the records. Anything else (a string, a dict, an
                array, a named tuple) is one record.
            batch_size: records per run of the graph.
            to_numpy: ``np.ndarray`` (default); ``False`` returns a torch tensor (needs torch).

        Returns:
            float32 ``(N, output_size)``; ``(1, output_size)`` for a single record and
            ``(0, output_size)`` for no records.
        """
        batch_size = check_positive_int("encode", "batch_size", batch_size, "e.g. 32")
        to_numpy = check_bool("encode", "to_numpy", to_numpy)
        chunks, single = encode_chunks(
            inputs,
            batch_size,
            lambda part, start, one: self.session.run([layout.OUTPUT], self._feeds(part))[0],
        )
        if chunks:
            result = np.concatenate(chunks, axis=0).astype(np.float32, copy=False)
        else:
            result = np.zeros((0, self.output_size), dtype=np.float32)
        if single:
            result = result.squeeze()
        result = np.atleast_2d(result)
        if to_numpy:
            return result
        import torch  # only on request: serving without torch uses numpy

        return torch.from_numpy(result)
