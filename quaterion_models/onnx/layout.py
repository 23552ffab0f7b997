"""File names and the config format of an ONNX export directory (torch-free)."""

from quaterion_models.utils.directory_swap import SaveLayout

#: ``config.json`` of an export holds ``"format": FORMAT`` (a torch servable's has no such key).
FORMAT = "quaterion-onnx/1"
CONFIG_FILE = "config.json"
END_TO_END_FILE = "model.onnx"
HEAD_FILE = "head.onnx"
HEAD_INPUT = "embeddings"
OUTPUT = "output"
ENCODERS_DIR = "encoders"


def input_name(key: str, name: str) -> str:
    """Graph input name of encoder ``key``'s input ``name``."""
    return f"{key}.{name}"


def _is_export_config(config: dict) -> bool:
    kind = config.get("format")
    return isinstance(kind, str) and kind.startswith(FORMAT.split("/")[0] + "/")


#: An export directory: re-exporting replaces it, ``SimilarityModel.save`` does not.
EXPORT = SaveLayout(
    "an ONNX export",
    frozenset({CONFIG_FILE, HEAD_FILE, END_TO_END_FILE, ENCODERS_DIR}),
    _is_export_config,
)
