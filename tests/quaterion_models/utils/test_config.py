"""``ConfigFile``: every field read from a config file is type-checked, and damaged files raise
``DamagedFileError`` naming the file and the field; the same holds for the configs of
``SwitchEncoder`` and ``SwitchHead``."""

import json

import pytest

from quaterion_models.encoders import Encoder, SwitchEncoder
from quaterion_models.heads import EmptyHead, GatedHead, SwitchHead
from quaterion_models.utils import DamagedFileError
from quaterion_models.utils.config import ConfigFile
from quaterion_models.utils.errors import WrongClassError
from tests.quaterion_models.toy_encoders import StackEncoder, ZerosOnesSwitch

CONFIG = {
    "size": 4,
    "flag": True,
    "name": "x",
    "items": ["a", "b"],
    "table": {"k": 1},
    "blank": "",
}

# (id, getter call on ConfigFile(CONFIG), words in the DamagedFileError)
FIELD_CASES = [
    ("missing", lambda c: c.integer("width"), ["'width'", "is missing", "'size'"]),
    ("bool-as-int", lambda c: c.integer("flag"), ["'flag'", "must be int", "bool True"]),
    ("int-as-bool", lambda c: c.boolean("size"), ["'size'", "must be bool", "int 4"]),
    ("out-of-range", lambda c: c.integer("size", maximum=3), ["'size'", "[1, 3]", "got 4"]),
    ("str-as-list", lambda c: c.sequence("name"), ["'name'", "must be list", "str 'x'"]),
    ("list-items", lambda c: c.sequence("items", item=int), ["'items[0]'", "must be int"]),
    ("empty-string", lambda c: c.string("blank"), ["'blank'", "got ''"]),
    ("dict-as-str", lambda c: c.string("table"), ["'table'", "must be str", "dict"]),
    (
        "class-record-relative",
        lambda c: c.class_record({"module": ".x", "class": "Y"}, Encoder, "enc"),
        ["'enc.module'", "dotted Python name", "'.x'"],
    ),
]


@pytest.mark.parametrize("get, words", [pytest.param(*row[1:], id=row[0]) for row in FIELD_CASES])
def test_field_errors_name_file_and_field(get, words):
    with pytest.raises(DamagedFileError) as info:
        get(ConfigFile("/models/m/config.json", CONFIG, "a test config"))
    message = str(info.value)
    assert message.startswith("/models/m/config.json is damaged"), message
    for word in words:
        assert word in message, (word, message)


def test_valid_fields_and_defaults_are_returned():
    config = ConfigFile("f", CONFIG, "a test config")
    assert config.integer("size") == 4 and config.boolean("flag") is True
    assert config.sequence("items", item=str) == ["a", "b"] and config.string("name") == "x"
    assert config.integer("absent", default=None) is None
    assert (
        config.class_record(
            {"module": "tests.quaterion_models.toy_encoders", "class": "StackEncoder"}, Encoder, "e"
        )
        is StackEncoder
    )
    with pytest.raises(WrongClassError, match="not a Encoder subclass") as info:
        config.class_record({"module": "collections", "class": "Counter"}, Encoder, "e")
    assert isinstance(info.value, TypeError) and isinstance(info.value, DamagedFileError)


def _switch_encoder_dir(tmp_path, config: dict):
    ZerosOnesSwitch({"a": StackEncoder(3), "b": StackEncoder(3)}).save(str(tmp_path))
    (tmp_path / "config.json").write_text(json.dumps(config))
    return tmp_path


def _switch_head_dir(tmp_path, edit):
    SwitchHead({"a": GatedHead(3), "b": EmptyHead(3)}, input_embedding_size=3).save(str(tmp_path))
    config = json.loads((tmp_path / "config.json").read_text())
    edit(config)
    (tmp_path / "config.json").write_text(json.dumps(config))
    return tmp_path


STACK = {"module": "tests.quaterion_models.toy_encoders", "class": "StackEncoder"}

# (id, load(tmp_path), words)
COMPONENT_CASES = [
    (
        "switch-encoder-list",
        lambda p: ZerosOnesSwitch.load(str(_switch_encoder_dir(p, {"encoders": [STACK]}))),
        ["'encoders'", "must be dict", "list"],
    ),
    (
        "switch-encoder-empty",
        lambda p: ZerosOnesSwitch.load(str(_switch_encoder_dir(p, {"encoders": {}}))),
        ["'encoders'", "non-empty"],
    ),
    (
        "switch-encoder-module-int",
        lambda p: ZerosOnesSwitch.load(
            str(_switch_encoder_dir(p, {"encoders": {"a": {"module": 1, "class": "X"}}}))
        ),
        ["'encoders.a.module'", "int 1"],
    ),
    (
        "switch-encoder-traversal-key",
        lambda p: ZerosOnesSwitch.load(str(_switch_encoder_dir(p, {"encoders": {"..": STACK}}))),
        ["'encoders...'", "not a valid option key"],
    ),
    (
        "switch-head-no-heads",
        lambda p: SwitchHead.load(str(_switch_head_dir(p, lambda c: c.pop("heads")))),
        ["'heads'", "is missing"],
    ),
    (
        "switch-head-option-width",
        lambda p: SwitchHead.load(
            str(
                _switch_head_dir(
                    p, lambda c: c["heads"]["b"]["config"].update(input_embedding_size=2**40)
                )
            )
        ),
        ["'heads.b.config.input_embedding_size'", "1099511627776"],
    ),
    (
        "switch-head-option-config-list",
        lambda p: SwitchHead.load(
            str(_switch_head_dir(p, lambda c: c["heads"]["a"].update(config=[3])))
        ),
        ["'heads.a.config'", "must be dict"],
    ),
    (
        "switch-head-width-str",
        lambda p: SwitchHead.load(
            str(_switch_head_dir(p, lambda c: c.update(input_embedding_size="3")))
        ),
        ["'input_embedding_size'", "must be int", "str '3'"],
    ),
]


@pytest.mark.parametrize(
    "load, words", [pytest.param(*row[1:], id=row[0]) for row in COMPONENT_CASES]
)
def test_switch_configs_are_type_checked(tmp_path, load, words):
    with pytest.raises(DamagedFileError) as info:
        load(tmp_path)
    message = str(info.value)
    assert str(tmp_path / "config.json") in message, message
    for word in words:
        assert word in message, (word, message)


def test_switch_round_trips_still_load(tmp_path):
    switch = ZerosOnesSwitch({"a": StackEncoder(3), "b": StackEncoder(3)})
    switch.save(str(tmp_path))
    loaded = ZerosOnesSwitch.load(str(tmp_path))
    assert type(loaded) is ZerosOnesSwitch and sorted(loaded.options) == ["a", "b"]
    assert isinstance(SwitchEncoder.load(str(tmp_path)), SwitchEncoder)
