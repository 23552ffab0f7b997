"""Private modules (``_name.py``) stay inside their own package: a module may import one
from its own package, or from a parent package below the top level (``quaterion.eval``'s
subpackages share ``quaterion.eval._ranking``), never across subpackages or packages."""

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGES = ("quaterion", "quaterion_models")


def _module_package(path: pathlib.Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1])  # an __init__ belongs to its own package too


def _private_imports(path: pathlib.Path):
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] not in PACKAGES:
                continue
            for i, part in enumerate(parts[1:], start=1):
                if part.startswith("_") and not part.startswith("__"):
                    owner = parts[:i]
                    if not (ROOT.joinpath(*owner)).is_dir():  # a private name of a module
                        owner = owner[:-1]
                    yield node.lineno, ".".join(owner), ".".join(parts[: i + 1])
                    break


def _allowed(importer: str, owner: str) -> bool:
    if importer == owner:
        return True
    return "." in owner and importer.startswith(owner + ".")


def _violations():
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            importer = _module_package(path)
            for line, owner, private in _private_imports(path):
                if not _allowed(importer, owner):
                    found.append(f"{path.relative_to(ROOT)}:{line} imports {private}")
    return sorted(set(found))


def test_no_private_module_is_imported_across_packages():
    assert _violations() == []


@pytest.mark.parametrize(
    "importer, owner, allowed",
    [
        ("quaterion.loss", "quaterion.loss", True),
        ("quaterion.eval.group", "quaterion.eval", True),
        ("quaterion.mining", "quaterion.train.cache", False),
        ("quaterion.loss", "quaterion", False),  # the top-level package's privates
        ("quaterion", "quaterion", True),
        ("quaterion_models.onnx", "quaterion_models.utils", False),
    ],
)
def test_the_rule(importer, owner, allowed):
    assert _allowed(importer, owner) is allowed
