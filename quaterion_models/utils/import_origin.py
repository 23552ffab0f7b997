"""Where an import would load its code from, found before anything runs: a loaded model's
config names modules to import, and none may come from inside the directory being loaded."""

import functools
import os
import site
import sys
import sysconfig
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from importlib.machinery import ModuleSpec
from typing import Optional

from quaterion_models.utils.errors import UnsafeFileError

_ROOTS: ContextVar[tuple] = ContextVar("quaterion_models_loading_roots", default=())


@contextmanager
def loading_directory(path: "str | os.PathLike[str]") -> Iterator[None]:
    """Within the block, :func:`check_import_origin` refuses modules inside ``path``."""
    token = _ROOTS.set(_ROOTS.get() + (os.path.realpath(path),))
    try:
        yield
    finally:
        _ROOTS.reset(token)


def _inside(path: str, roots: tuple) -> bool:
    real = os.path.realpath(path)
    return any(real == root or real.startswith(root.rstrip(os.sep) + os.sep) for root in roots)


@functools.cache
def installed_code_dirs() -> tuple:
    """The standard library and site-packages: code installed there is trusted even if a
    model directory happens to contain it (a project folder holding its ``.venv``)."""
    paths = sysconfig.get_paths()
    found = {
        paths[name] for name in ("stdlib", "platstdlib", "purelib", "platlib") if name in paths
    }
    found.update(getattr(site, "getsitepackages", list)())
    found.add(site.getusersitepackages())
    return tuple(os.path.realpath(path) for path in found if path)


def find_spec_unimported(name: str) -> Optional[ModuleSpec]:
    """The spec ``import name`` would use, found without importing anything (unlike
    ``importlib.util.find_spec``, which imports the parents of a dotted name); ``None`` if
    it cannot be found."""
    if name in sys.modules:
        return getattr(sys.modules[name], "__spec__", None)
    parent, _, _ = name.rpartition(".")
    search_path = None
    if parent:
        if parent in sys.modules:  # its __path__, as import uses it (it may be extended)
            search_path = getattr(sys.modules[parent], "__path__", None)
        else:
            parent_spec = find_spec_unimported(parent)
            search_path = getattr(parent_spec, "submodule_search_locations", None)
        if search_path is None:  # the parent is missing or not a package
            return None
    for finder in sys.meta_path:
        find = getattr(finder, "find_spec", None)
        if find is None:
            continue
        try:
            spec = find(name, search_path)
        except (ImportError, ValueError, AttributeError, TypeError):
            continue
        if spec is not None:
            return spec
    return None


def _locations(name: str) -> list:
    """Files and package folders ``import name`` would read; ``[]`` if it cannot be found
    (the import reports that)."""
    spec = find_spec_unimported(name)
    if spec is None:
        return []
    found = [spec.origin] if spec.origin and os.path.isabs(spec.origin) else []
    return found + [str(path) for path in spec.submodule_search_locations or ()]


def module_inside(module: str, roots: tuple) -> Optional[str]:
    """The file or folder inside ``roots`` that importing the dotted ``module`` would run
    code from, checking each package on the way before anything is imported; ``None`` if
    none."""
    parts = module.split(".")
    for end in range(1, len(parts) + 1):
        name = ".".join(parts[:end])
        if name in sys.modules:  # imported already: importing it runs nothing new
            continue
        for location in _locations(name):
            if _inside(location, roots) and not _inside(location, installed_code_dirs()):
                return location
    return None


def check_import_origin(module: str, config_path: str, field: str, trusted: bool) -> None:
    """Refuse to import ``module`` (named in ``config_path``) from inside a directory being
    loaded (see :func:`loading_directory`) or the config's own directory, unless ``trusted``.

    Raises:
        UnsafeFileError: the module's code lives inside the loaded directory (a file shipped
            with the model, importable because that directory or its parent is on
            ``sys.path``, e.g. the current directory); nothing was imported.
    """
    if trusted:
        return
    roots = _ROOTS.get() + (os.path.realpath(os.path.dirname(os.path.abspath(config_path))),)
    location = module_inside(module, roots)
    if location is not None:
        raise UnsafeFileError(
            f"refusing to import {module!r} named in field {field!r} of {config_path}: it "
            f"would run code from {location}, inside the directory being loaded (on sys.path, "
            "e.g. as the current directory). Classes of a saved model must come from installed "
            "packages. If you created this directory or otherwise trust it, load it with "
            "SimilarityModel.load(path, trusted=True)."
        )
