"""File names and the config format of an ONNX export directory (torch-free)."""

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
