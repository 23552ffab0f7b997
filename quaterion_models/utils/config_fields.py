"""Typed fields of small JSON configs, checked on load: errors name the file and the field.

Torch-free, so the ONNX runtime can use it in a serving environment without torch.
"""

import json
import os
from typing import Any, Optional, Union

from quaterion_models.utils.errors import DamagedFileError

#: JSON value types a field may be declared with (``bool`` is never accepted as ``int``).
FieldType = Union[type, tuple]


def _type_name(kind: FieldType) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join("null" if k is type(None) else k.__name__ for k in kinds)


def _matches(value: Any, kind: FieldType) -> bool:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool):
        return bool in kinds
    if isinstance(value, int) and float in kinds:
        return True
    return isinstance(value, kinds)


def read_config_fields(
    path: Union[str, "os.PathLike[str]"],
    fields: dict[str, FieldType],
    what: str,
    optional: Optional[dict[str, tuple[FieldType, Any]]] = None,
) -> dict[str, Any]:
    """Read the JSON object at ``path`` and check the type of every declared field.

    Args:
        path: the JSON file.
        fields: required ``{name: type or tuple of types}``.
        what: what the file is, for messages (e.g. "the TransformerEncoder config").
        optional: ``{name: (type, default)}`` for fields that may be missing.

    Returns:
        the JSON object, with the defaults of missing optional fields filled in.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        DamagedFileError: the file is not a JSON object, or a field is missing or mistyped;
            the message names the file and the field.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} does not exist: expected {what}")
    try:
        with open(path, encoding="utf-8") as file:
            data = json.load(file)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DamagedFileError(
            f"{path} is damaged: expected {what} as JSON ({err}); save the model again"
        ) from err
    if not isinstance(data, dict):
        raise DamagedFileError(
            f"{path} is damaged: expected {what} holding a JSON object, got "
            f"{type(data).__name__}; save the model again"
        )
    missing = [name for name in fields if name not in data]
    if missing:
        raise DamagedFileError(
            f"{path} is damaged: {what} lacks the field(s) {missing}; save the model again"
        )
    optional = optional or {}
    kinds = {**{name: kind for name, (kind, _) in optional.items()}, **fields}
    for name, kind in kinds.items():
        if name in data and not _matches(data[name], kind):
            raise DamagedFileError(
                f"{path} is damaged: field {name!r} of {what} must be {_type_name(kind)}, "
                f"got {type(data[name]).__name__} {data[name]!r}; save the model again"
            )
    return {**{name: default for name, (_, default) in optional.items()}, **data}
