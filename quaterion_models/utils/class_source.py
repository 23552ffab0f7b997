"""Whether a class named in a saved model's config can be imported without running code the
caller did not ask for: checked on the module's source, before the module is imported.

A config records ``{"module": m, "class": c}`` as :func:`~quaterion_models.utils.save_class_import`
wrote it, so module ``m`` defines ``c`` in its own source. A config edited to name another
module (``this``, ``antigravity``, a module of the standard library or a package that defines
no such class) would run that module's top-level code on import: refused before the import.
"""

import ast
import sys
from typing import Optional

from quaterion_models.utils.errors import UnsafeFileError, WrongClassError
from quaterion_models.utils.import_origin import find_spec_unimported

#: Top-level names of the standard library (it holds no Encoder or EncoderHead subclass).
_STDLIB = frozenset(sys.stdlib_module_names)

_BLOCKS = ("body", "orelse", "finalbody", "handlers")


def _bound_names(statements: list) -> dict:
    """``{name: class node or None}`` of the names bound at this level of ``statements``
    (class and function definitions, assignments, imports), looking into ``if``/``try``/
    ``with`` blocks but not into functions or classes."""
    names: dict = {}
    for node in statements:
        if isinstance(node, ast.ClassDef):
            names[node.name] = node
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            names.setdefault(node.name, None)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                names.setdefault((alias.asname or alias.name).split(".")[0], None)
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                for leaf in ast.walk(target):
                    if isinstance(leaf, ast.Name):
                        names.setdefault(leaf.id, None)
        else:
            for block in _BLOCKS:
                for child in getattr(node, block, None) or ():
                    inner = child.body if isinstance(child, ast.ExceptHandler) else [child]
                    for name, value in _bound_names(inner).items():
                        if value is not None or name not in names:
                            names[name] = value
    return names


def source_defines(source: str, qualname: str) -> bool:
    """Whether Python ``source`` binds ``qualname`` (``"Outer.Inner"``: a class ``Inner``
    inside class ``Outer``). A name bound otherwise than by a ``class`` statement (an import,
    an assignment) counts, and then its inner parts cannot be checked."""
    statements = ast.parse(source).body
    for part in qualname.split("."):
        names = _bound_names(statements)
        if part not in names:
            return False
        if names[part] is None:
            return True
        statements = names[part].body
    return True


def check_class_source(module: str, qualname: str, config_path: str, field: str) -> None:
    """Refuse, before importing it, a module that cannot define the recorded class.

    Nothing is checked for a module imported already (importing it again runs nothing).

    Raises:
        WrongClassError: ``module`` is part of the standard library, or its source does not
            define ``qualname``: the config was edited or is not a saved model.
        ImportError: the module does not exist here.
        UnsafeFileError: the module has no Python source to check (a compiled extension);
            import it yourself before loading, or load with ``trusted=True``.
    """
    if module in sys.modules:
        return
    where = f"field {field!r} of {config_path} names class {qualname!r} of module {module!r}"
    if module.split(".")[0] in _STDLIB:
        raise WrongClassError(
            f"{where}, part of the Python standard library, which holds no class of a saved "
            "model; refused without importing it. The config was edited or is not a saved "
            "model: save the model again"
        )
    spec = find_spec_unimported(module)
    if spec is None:
        raise ImportError(
            f"{where}, which is not installed here (nothing was imported). Install the package "
            "that defines the class, or make its module importable (sys.path)"
        )
    source = _source(spec)
    if source is None:
        raise UnsafeFileError(
            f"{where}, which has no Python source to check before it is imported ({spec.origin}"
            f"). Import {module} yourself before loading, or, if you trust the directory, "
            "load it with SimilarityModel.load(path, trusted=True)"
        )
    try:
        defined = source_defines(source, qualname)
    except (SyntaxError, ValueError, RecursionError):
        defined = False
    if not defined:
        raise WrongClassError(
            f"{where}, but {spec.origin} does not define it; refused without importing the "
            "module (it would run its code). The config was edited or is not a saved model: "
            "save the model again (a class your module creates at run time: import the module "
            "before loading)"
        )


def _source(spec) -> Optional[str]:
    """The Python source of a found module, or ``None`` if it has none (extension, frozen)."""
    loader = spec.loader
    get_source = getattr(loader, "get_source", None)
    if get_source is None:
        return None
    try:
        return get_source(spec.name)
    except (ImportError, OSError, UnicodeDecodeError, SyntaxError):
        return None
