"""read_config_fields (quaterion_models.utils.config): typed fields of small JSON configs, errors naming file and field."""

import json

import pytest

from quaterion_models.utils import DamagedFileError
from quaterion_models.utils.config import read_config_fields

FIELDS = {"name": str, "size": int, "scale": float, "flag": bool}


def write(tmp_path, content) -> str:
    path = tmp_path / "config.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return str(path)


def test_valid_config_with_defaults(tmp_path):
    path = write(tmp_path, {"name": "a", "size": 3, "scale": 2, "flag": False})
    config = read_config_fields(path, FIELDS, "a test config", {"extra": ((str, type(None)), None)})
    assert config == {"name": "a", "size": 3, "scale": 2, "flag": False, "extra": None}


@pytest.mark.parametrize(
    "content,match",
    [
        ({"name": "a", "size": True, "scale": 1.0, "flag": False}, "field 'size'.*must be int"),
        ({"name": "a", "size": 1.5, "scale": 1.0, "flag": False}, "field 'size'"),
        ({"name": "a", "size": 1, "scale": "1", "flag": False}, "field 'scale'.*float"),
        ({"name": "a", "size": 1, "scale": 1.0, "flag": 0}, "field 'flag'.*bool"),
        ({"name": "a", "size": 1, "scale": 1.0}, "field 'flag' is missing"),
        ({"name": "a", "size": 1, "scale": 1.0, "flag": True, "extra": 3}, "field 'extra'"),
        ([1, 2], "JSON object, got list"),
        ('{"name": ', "not valid JSON"),
    ],
)
def test_damaged_configs_name_file_and_field(tmp_path, content, match):
    path = write(tmp_path, content)
    with pytest.raises(DamagedFileError, match=match) as error:
        read_config_fields(path, FIELDS, "a test config", {"extra": ((str, type(None)), None)})
    assert "config.json" in str(error.value)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="a test config"):
        read_config_fields(str(tmp_path / "absent.json"), FIELDS, "a test config")
