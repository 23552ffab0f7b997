import subprocess
import sys

import quaterion.utils as package
import quaterion.utils.utils as module

_STUB_PARENT = (
    # Stand-in for quaterion/__init__.py (which imports Quaterion -> Lightning), so this
    # checks what the subpackage itself imports.
    "import sys, types, pathlib; import importlib.util as u\n"
    "pkg = types.ModuleType('quaterion'); "
    "pkg.__path__ = [str(pathlib.Path(u.find_spec('quaterion').origin).parent)]\n"
    "sys.modules['quaterion'] = pkg\n"
)


NAMES = list(
    """
    get_triplet_mask get_anchor_positive_mask get_anchor_negative_mask get_masked_maximum
    get_masked_minimum l2_norm info_value_of_dtype min_value_of_dtype
    max_value_of_dtype
    """.split()
)


def test_import_paths():
    for name in NAMES:
        assert getattr(package, name) is getattr(module, name)
    assert callable(module.iter_by_batch)
    assert set(package.__all__) == set(NAMES)


def test_importing_utils_does_not_import_lightning():
    code = _STUB_PARENT + (
        "import quaterion.utils, quaterion.utils.utils, quaterion.utils.enums;"
        "print('pytorch_lightning' in sys.modules or 'lightning' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
