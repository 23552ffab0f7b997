"""Type-checked reading of saved-model config files (``config.json`` of models, heads, encoders).

Every value read from a config file goes through :class:`ConfigFile`, whose getters check the
type (and range) of one field and raise :class:`~quaterion_models.utils.DamagedFileError`
naming the file and the field, so a hand-edited or corrupted file never surfaces as a raw
``AttributeError``, ``TypeError``, ``RecursionError`` or a huge allocation.

Example (an encoder's ``load``)::

    config = ConfigFile.read(os.path.join(input_path, "config.json"), "MyEncoder config")
    size = config.integer("size")
    on_disk = config.boolean("on_disk", default=False)
    names = config.sequence("aggregations", item=str)
"""

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Optional, Union

from quaterion_models.utils.class_source import check_class_source
from quaterion_models.utils.classes import restore_class
from quaterion_models.utils.import_origin import check_import_origin
from quaterion_models.utils.errors import DamagedFileError, WrongClassError
from quaterion_models.utils.trust import is_loading_trusted

#: Largest integer accepted by :meth:`ConfigFile.integer` unless a caller allows more.
MAX_CONFIG_INT = 2**31 - 1

#: Largest config file :meth:`ConfigFile.read` parses (a saved config is a few KiB).
MAX_CONFIG_BYTES = 16 * 2**20

_DOTTED_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
_REQUIRED: Any = object()


def _kind(value: Any) -> str:
    """JSON-ish name of ``value``'s type for messages (``123`` -> ``int 123``)."""
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{type(value).__name__} {text}"


def read_json(
    path: Union[str, "os.PathLike[str]"],
    what: str = "a JSON config file written by save()",
    max_bytes: Optional[int] = None,
) -> Any:
    """Read a JSON file (refused as damaged if larger than ``max_bytes``, when given).

    Raises:
        FileNotFoundError: ``path`` does not exist (named in the message).
        DamagedFileError: ``path`` is not valid UTF-8 JSON.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: expected {what}")
    size = path.stat().st_size
    if max_bytes is not None and size > max_bytes:
        raise DamagedFileError(
            f"{path} is damaged or not a saved model file: expected {what}, but it is {size} "
            f"bytes (at most {max_bytes} expected); save the model again"
        )
    try:
        with open(path, encoding="utf-8") as file:
            return json.load(file)
    except (ValueError, RecursionError) as err:  # bad UTF-8 or JSON, a 5000-digit number
        detail = "nested too deeply" if isinstance(err, RecursionError) else str(err)
        raise DamagedFileError(
            f"{path} is damaged or not a saved model file: expected {what}, but it is not "
            f"valid JSON ({detail}); save the model again or copy the directory again"
        ) from None if isinstance(err, RecursionError) else err


class ConfigFile:
    """A JSON object read from ``path``; each getter checks one field.

    Args:
        path: the file (named in every error).
        data: the parsed JSON object.
        what: what the file should be, e.g. ``"the GatedHead config written by save()"``.
    """

    def __init__(self, path: Any, data: Mapping, what: str):
        self.path = str(path)
        self.what = what
        if not isinstance(data, Mapping):
            raise DamagedFileError(
                f"{self.path} is damaged or not a saved model file: expected {what} holding a "
                f"JSON object, got {type(data).__name__}; save the model again"
            )
        self.data = dict(data)

    @classmethod
    def read(cls, path: Any, what: str) -> "ConfigFile":
        """Parse ``path`` (at most :data:`MAX_CONFIG_BYTES`) as a JSON object.

        Raises:
            FileNotFoundError: ``path`` does not exist.
            DamagedFileError: not UTF-8 JSON, nested too deeply, too large, or not an object.
        """
        return cls(path, read_json(path, what, MAX_CONFIG_BYTES), what)

    def damaged(self, field: str, problem: str) -> DamagedFileError:
        """A :class:`DamagedFileError` naming this file and ``field``."""
        return DamagedFileError(
            f"{self.path} is damaged or was edited: field {field!r} {problem}; the file should "
            f"be {self.what}. Save the model again or copy the directory again"
        )

    def get(self, name: str, types: tuple, default: Any = _REQUIRED, label: str = "") -> Any:
        """``data[name]`` checked to be an instance of ``types`` (bools only if ``bool`` is)."""
        field = label or name
        if name not in self.data:
            if default is _REQUIRED:
                raise self.damaged(field, f"is missing (keys present: {sorted(self.data)})")
            return default
        return self.check(self.data[name], types, field)

    def check(self, value: Any, types: tuple, field: str) -> Any:
        """``value`` if it is an instance of ``types``, else :meth:`damaged` for ``field``."""
        if isinstance(value, bool) and bool not in types:
            ok = False
        else:
            ok = isinstance(value, types)
        if not ok:
            names = " or ".join(t.__name__ for t in types)
            raise self.damaged(field, f"must be {names}, got {_kind(value)}")
        return value

    def integer(
        self,
        name: str,
        default: Any = _REQUIRED,
        minimum: int = 1,
        maximum: int = MAX_CONFIG_INT,
        label: str = "",
    ) -> int:
        """An int (not a bool) in ``[minimum, maximum]``."""
        value = self.get(name, (int,), default, label)
        if value is not default and not minimum <= value <= maximum:
            raise self.damaged(
                label or name, f"must be an integer in [{minimum}, {maximum}], got {value}"
            )
        return value

    def boolean(self, name: str, default: Any = _REQUIRED) -> bool:
        """A JSON ``true`` / ``false``."""
        return self.get(name, (bool,), default)

    def string(self, name: str, default: Any = _REQUIRED, label: str = "") -> str:
        """A non-empty string."""
        value = self.get(name, (str,), default, label)
        if value is not default and value == "":
            raise self.damaged(label or name, "must be a non-empty string, got ''")
        return value

    def mapping(self, name: str, non_empty: bool = True, label: str = "") -> dict:
        """A JSON object (non-empty unless ``non_empty=False``)."""
        value = self.get(name, (dict,), label=label)
        if non_empty and not value:
            raise self.damaged(label or name, "must be a non-empty object, got {}")
        return value

    def sequence(
        self, name: str, item: Optional[type] = None, non_empty: bool = True, label: str = ""
    ) -> list:
        """A JSON array (non-empty unless ``non_empty=False``), items of type ``item`` if given."""
        field = label or name
        value = self.get(name, (list,), label=label)
        if non_empty and not value:
            raise self.damaged(field, "must be a non-empty list, got []")
        if item is not None:
            for index, element in enumerate(value):
                self.check(element, (item,), f"{field}[{index}]")
        return value

    def class_record(self, record: Any, base: type, field: str) -> type:
        """Import the class of a ``{"module": ..., "class": ...}`` record, checked to subclass ``base``.

        The names are checked to be dotted Python identifiers before anything is imported
        (no relative imports, no empty names); unless loading is trusted, the module must not
        lie inside the directory being loaded and its source must define the class
        (:func:`~quaterion_models.utils.class_source.check_class_source`), so a config edited
        to name another module never runs that module's code.

        Raises:
            DamagedFileError: the record is malformed (names the field).
            WrongClassError: it names something that is not a ``base`` subclass (also a
                ``TypeError``), a module of the standard library, or a module whose source
                does not define the class.
            UnsafeFileError: the module lies inside the loaded directory, or has no source to
                check (import it first, or load with ``trusted=True``).
            ImportError: the module or class does not exist here.
        """
        record = self.check(record, (dict,), field)
        names = {}
        for part in ("module", "class"):
            value = record.get(part, _REQUIRED)
            if value is _REQUIRED:
                raise self.damaged(
                    f"{field}.{part}",
                    f'is missing: expected {{"module": ..., "class": ...}}, got {record!r}',
                )
            self.check(value, (str,), f"{field}.{part}")
            if not _DOTTED_NAME.fullmatch(value):
                raise self.damaged(
                    f"{field}.{part}",
                    f"must be a dotted Python name such as 'package.module', got {value!r}",
                )
            names[part] = value
        if not is_loading_trusted():
            check_import_origin(names["module"], str(self.path), field, False)
            check_class_source(names["module"], names["class"], str(self.path), field)
        restored = restore_class(names)
        if not (isinstance(restored, type) and issubclass(restored, base)):
            raise WrongClassError(
                f"{self.path} names {names['module']}.{names['class']} in field {field!r}, "
                f"which is not a {base.__name__} subclass; the config is corrupted or not a "
                "saved model: save the model again"
            )
        return restored


#: A field's declared type: a type or a tuple of types (``float`` also takes ints, ``bool`` never
#: passes as ``int``).
FieldType = Union[type, tuple]


def read_config_fields(
    path: Union[str, "os.PathLike[str]"],
    fields: dict,
    what: str,
    optional: Optional[dict] = None,
) -> dict:
    """Read the JSON object at ``path`` and check every declared field with :class:`ConfigFile`.

    Args:
        path: the JSON file.
        fields: required ``{name: type or tuple of types}``.
        what: what the file is, for messages (e.g. "the TransformerEncoder config").
        optional: ``{name: (type, default)}`` for fields that may be missing.

    Returns:
        the JSON object, with the defaults of missing optional fields filled in.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        DamagedFileError: not a JSON object, or a field is missing or mistyped (names the field).
    """
    config = ConfigFile.read(path, what)
    values = dict(config.data)
    declared = {name: (kind, _REQUIRED) for name, kind in fields.items()}
    declared.update(optional or {})
    for name, (kind, default) in declared.items():
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if float in kinds and int not in kinds:
            kinds = kinds + (int,)
        values[name] = config.get(name, kinds, default)
    return values
