import logging
from collections import Counter

import pytest
import torch

from quaterion_models.utils import restore_class, save_class_import
from tests.quaterion_models.toy_encoders import Outer


def test_examples_from_spec():
    assert restore_class({"module": "torch.nn", "class": "Linear"})(10, 10).out_features == 10
    assert save_class_import(Counter()) == {"module": "collections", "class": "Counter"}


def test_dotted_qualname_round_trip():
    record = save_class_import(Outer.InnerEncoder())
    assert record == {
        "module": "tests.quaterion_models.toy_encoders",
        "class": "Outer.InnerEncoder",
    }
    assert restore_class(record) is Outer.InnerEncoder


def test_main_module_warns_and_cannot_be_restored(caplog):
    cls = type("ScriptOnly", (), {"__module__": "__main__"})
    with caplog.at_level(logging.WARNING, logger="quaterion_models.utils.classes"):
        record = save_class_import(cls())
    assert record == {"module": "__main__", "class": "ScriptOnly"}
    assert "__main__" in caplog.text and "ScriptOnly" in caplog.text
    with pytest.raises(ImportError, match="importable module"):
        restore_class(record)


def test_missing_module_or_attribute():
    with pytest.raises(ImportError, match="no_such_module_xyz"):
        restore_class({"module": "no_such_module_xyz", "class": "A"})
    with pytest.raises(ImportError, match="Nope"):
        restore_class({"module": "torch.nn", "class": "Linear.Nope"})
    with pytest.raises(ValueError, match="module"):
        restore_class({"class": "Linear"})
    assert torch.nn.Linear is restore_class({"module": "torch.nn", "class": "Linear"})
