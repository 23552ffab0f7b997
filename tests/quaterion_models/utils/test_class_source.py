"""A config naming a module that cannot hold the recorded class is refused before the module is
imported: loading never runs code the caller did not ask for."""

import functools
import json
import py_compile
import sys
import textwrap

import pytest
import torch

from quaterion_models import SimilarityModel
from quaterion_models.heads import GatedHead
from quaterion_models.utils import DamagedFileError, UnsafeFileError
from quaterion_models.utils.class_source import source_defines
from tests.quaterion_models.toy_encoders import StackEncoder

#: top of a module that records its import by writing a marker file
_MARKS_IMPORT = "import pathlib\npathlib.Path({marker!r}).write_text('imported')\n"

_HEAD_MODULE = _MARKS_IMPORT + textwrap.dedent(
    """
    from quaterion_models.heads import GatedHead

    if True:
        class UserHead(GatedHead):
            pass

    class Outer:
        class NestedHead(GatedHead):
            pass
    """
)


def _saved(root) -> str:
    model = SimilarityModel(encoders=StackEncoder(4), head=GatedHead(4))
    model.save(str(root))
    return str(root)


def _name_head(root, module: str, qualname: str) -> None:
    path = root / "config.json"
    config = json.loads(path.read_text())
    config["head"] = {"module": module, "class": qualname}
    path.write_text(json.dumps(config))


@pytest.fixture
def code_dir(tmp_path, monkeypatch):
    """A directory on sys.path outside the servable (code installed by someone else)."""
    code = tmp_path / "code"
    code.mkdir()
    monkeypatch.syspath_prepend(str(code))
    return code


@pytest.mark.parametrize("module", ["this", "http.server", "tkinter"])
def test_a_standard_library_module_is_not_imported(tmp_path, monkeypatch, module):
    monkeypatch.delitem(sys.modules, module, raising=False)  # restored afterwards
    root = tmp_path / "model"
    _saved(root)
    _name_head(root, module, "GatedHead")
    with pytest.raises(DamagedFileError, match="standard library") as info:
        SimilarityModel.load(str(root))
    assert isinstance(info.value, TypeError)  # WrongClassError, as for any wrong class
    assert module in str(info.value) and str(root / "config.json") in str(info.value)
    assert module not in sys.modules


def test_a_module_that_does_not_define_the_class_is_not_imported(tmp_path, code_dir):
    name = f"sideeffect_{tmp_path.name}"
    marker = tmp_path / "marker"
    (code_dir / f"{name}.py").write_text(_MARKS_IMPORT.format(marker=str(marker)))
    root = tmp_path / "model"
    _saved(root)
    _name_head(root, name, "GatedHead")
    with pytest.raises(DamagedFileError, match="does not define it") as info:
        SimilarityModel.load(str(root))
    assert name in str(info.value)
    assert not marker.exists() and name not in sys.modules


def test_the_parent_package_of_a_missing_module_is_not_imported(tmp_path, code_dir):
    """Looking a dotted name up with importlib.util.find_spec imports its parents: a config
    naming ``pkg.missing`` ran ``pkg/__init__.py`` before the import failed."""
    name = f"parentpkg_{tmp_path.name}"
    marker = tmp_path / "marker"
    (code_dir / name).mkdir()
    (code_dir / name / "__init__.py").write_text(_MARKS_IMPORT.format(marker=str(marker)))
    root = tmp_path / "model"
    _saved(root)
    _name_head(root, f"{name}.missing", "GatedHead")
    with pytest.raises(ImportError, match="not installed here"):
        SimilarityModel.load(str(root))
    assert not marker.exists() and name not in sys.modules


@pytest.mark.parametrize("qualname", ["UserHead", "Outer.NestedHead"])
def test_a_user_module_defining_the_class_still_loads(tmp_path, code_dir, qualname):
    """The usual case: a fresh process loads a servable whose head class lives in the user's
    own (not yet imported) module."""
    name = f"userheads_{tmp_path.name}_{qualname.replace('.', '_')}"
    marker = tmp_path / "marker"
    (code_dir / f"{name}.py").write_text(_HEAD_MODULE.format(marker=str(marker)))
    module = __import__(name)
    head = functools.reduce(getattr, qualname.split("."), module)(4)
    with torch.no_grad():
        head.gates.copy_(torch.tensor([0.5, -1.0, 2.0, 0.1]))
    model = SimilarityModel(encoders=StackEncoder(4), head=head)
    root = tmp_path / "model"
    model.save(str(root))
    del sys.modules[name]  # as in a fresh process
    marker.unlink()
    loaded = SimilarityModel.load(str(root))
    assert marker.exists()  # imported on load: the config names it and it defines the class
    assert type(loaded.head).__qualname__ == qualname
    inputs = torch.rand(3, 4)
    expected = inputs * torch.tanh(torch.tensor([0.5, -1.0, 2.0, 0.1]))
    torch.testing.assert_close(loaded.encode(list(inputs), to_numpy=False), expected)


def test_a_module_without_source_needs_an_import_or_trust(tmp_path, code_dir):
    """A compiled module (here a sourceless .pyc) cannot be checked before it runs: import it
    yourself first, or trust the directory."""
    name = f"compiled_{tmp_path.name}"
    marker = tmp_path / "marker"
    source = tmp_path / f"{name}.py"
    source.write_text(_HEAD_MODULE.format(marker=str(marker)))
    py_compile.compile(str(source), cfile=str(code_dir / f"{name}.pyc"), doraise=True)
    root = tmp_path / "model"
    _saved(root)
    _name_head(root, name, "UserHead")
    with pytest.raises(UnsafeFileError, match="no Python source") as info:
        SimilarityModel.load(str(root))
    assert "trusted=True" in str(info.value) and f"Import {name}" in str(info.value)
    assert not marker.exists() and name not in sys.modules
    loaded = SimilarityModel.load(str(root), trusted=True)  # the caller asks: it is imported
    assert marker.exists() and type(loaded.head).__name__ == "UserHead"


@pytest.mark.parametrize(
    "source, qualname, expected",
    [
        ("class A:\n    pass\n", "A", True),
        ("class A:\n    class B:\n        pass\n", "A.B", True),
        ("class A:\n    pass\n", "A.B", False),
        ("def A():\n    class B:\n        pass\n", "A.B", True),  # bound, inner unchecked
        ("if X:\n    class A: pass\nelse:\n    A = None\n", "A", True),
        ("try:\n    pass\nexcept E:\n    class A: pass\n", "A", True),
        ("from pkg.mod import A\n", "A", True),
        ("import pkg.mod as A\n", "A", True),
        ("A, B = make()\n", "B", True),
        ("def f():\n    class A: pass\n", "A", False),
        ("print('zen')\n", "A", False),
        ("", "A", False),
    ],
)
def test_source_defines(source, qualname, expected):
    assert source_defines(source, qualname) is expected
