"""Light subpackages must import without pytorch-lightning (training.md §1)."""

import subprocess
import sys

import pytest

LIGHT = ["quaterion.utils", "quaterion.distances", "quaterion.loss"]


@pytest.mark.parametrize("module", LIGHT)
def test_light_subpackage_does_not_import_lightning(module):
    code = (
        "import sys, importlib\n"
        f"importlib.import_module({module!r})\n"
        "print('pytorch_lightning' in sys.modules, 'lightning' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"], out.stdout + out.stderr


def test_top_level_names_resolve_lazily():
    import quaterion
    from quaterion.main import Quaterion
    from quaterion.train.trainable_model import TrainableModel

    assert quaterion.Quaterion is Quaterion
    assert quaterion.TrainableModel is TrainableModel
    assert set(quaterion.__all__) == {"Quaterion", "TrainableModel"}
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        quaterion.Nope  # noqa: B018
