"""Record a class as ``{"module", "class"}`` and import it back."""

import importlib
import logging
from typing import Any

logger = logging.getLogger(__name__)


def save_class_import(obj: Any) -> dict:
    """Describe the class of ``obj`` so that :func:`restore_class` can import it again.

    Args:
        obj: any instance.

    Returns:
        ``{"module": type(obj).__module__, "class": type(obj).__qualname__}``. A warning is
        logged when the class lives in ``__main__``: such a class cannot be imported by
        another process, so a model saved with it cannot be loaded elsewhere.
    """
    cls = type(obj)
    module = cls.__module__
    if module == "__main__":
        logger.warning(
            "Class %s is defined in __main__: it is recorded as {'module': '__main__'} and "
            "cannot be restored by another process. Move it to an importable module.",
            cls.__qualname__,
        )
    return {"module": module, "class": cls.__qualname__}


def restore_class(data: dict) -> Any:
    """Import the class described by a :func:`save_class_import` record.

    Dotted qualnames (``"Outer.Inner"``) are resolved attribute by attribute.

    Args:
        data: ``{"module": <module path>, "class": <qualname>}``.

    Returns:
        The class object.

    Raises:
        ImportError: the module cannot be imported or does not define the class.
    """
    if not isinstance(data, dict) or not {"module", "class"} <= data.keys():
        raise ValueError(
            f"restore_class: expected a dict with 'module' and 'class' keys, got {data!r}; "
            "pass a record produced by save_class_import()"
        )
    module_name, qualname = data["module"], data["class"]
    hint = (
        " The class was saved from a script (__main__) and cannot be restored: define it in "
        "an importable module and save again."
        if module_name == "__main__"
        else " Make sure the module is importable (installed or on sys.path)."
    )
    try:
        target = importlib.import_module(module_name)
    except ImportError as err:
        raise ImportError(f"cannot restore class {qualname!r}: {err}.{hint}") from err
    for part in qualname.split("."):
        try:
            target = getattr(target, part)
        except AttributeError as err:
            raise ImportError(
                f"cannot restore class {qualname!r}: module {module_name!r} has no "
                f"attribute path {qualname!r} (missing {part!r}).{hint}"
            ) from err
    return target
