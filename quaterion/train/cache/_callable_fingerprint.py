"""Fingerprint of a key extractor by what it computes, not by its name or address.

Covered: a function's bytecode, constants (nested functions included), the names it uses,
its defaults, the values of its closure cells, and the globals it reads when they are plain
constants or functions (fingerprinted the same way; modules by name). ``functools.partial``:
its function, arguments and keywords. A bound method: its function and its object. A
callable object: its class's ``__call__`` and its public attributes (names without a leading
``_``). Values are taken by ``repr`` when that is stable (no memory address in it), tensors
and arrays by their bytes; any other value only by its type. Classes and built-ins are
identified by their import path.
"""

import contextlib
import enum
import functools
import hashlib
import re
import types
from typing import Any, Set

import numpy as np
import torch

ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")  # in a repr: an object identified by its address
_PLAIN = (type(None), bool, int, float, complex, str, bytes, enum.Enum)


def _path(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', type(obj).__name__)}"


def _code(code: types.CodeType, seen: Set[int]) -> str:
    consts = ",".join(_value(const, seen) for const in code.co_consts)
    return f"code({code.co_code.hex()};{consts};{code.co_names};{code.co_varnames})"


def _globals_read(function: types.FunctionType) -> dict:
    """Globals of ``function`` named in its code (nested code included)."""
    names, stack = set(), [function.__code__]
    while stack:
        code = stack.pop()
        names.update(code.co_names)
        stack.extend(c for c in code.co_consts if isinstance(c, types.CodeType))
    scope = function.__globals__
    return {name: scope[name] for name in sorted(names) if name in scope}


def _function(function: types.FunctionType, seen: Set[int]) -> str:
    cells = []
    for cell in function.__closure__ or ():
        with contextlib.suppress(ValueError):  # an empty cell has no contents
            cells.append(cell.cell_contents)
    used = {
        name: value
        for name, value in _globals_read(function).items()
        if isinstance(value, _PLAIN + (types.FunctionType, types.ModuleType, tuple, frozenset))
    }
    parts = [
        _code(function.__code__, seen),
        _value(function.__defaults__, seen),
        _value(function.__kwdefaults__, seen),
        _value(cells, seen),
        _value(used, seen),
    ]
    return "function(" + ";".join(parts) + ")"


def _object(obj: Any, seen: Set[int]) -> str:
    cls = type(obj)
    call = next((c.__dict__["__call__"] for c in cls.__mro__ if "__call__" in c.__dict__), None)
    state = {k: v for k, v in sorted(vars(obj).items()) if not k.startswith("_")}
    return f"object({_path(cls)};{_value(call, seen)};{_value(state, seen)})"


def _value(value: Any, seen: Set[int]) -> str:  # noqa: C901 (one branch per kind of value)
    if isinstance(value, _PLAIN):
        return repr(value)
    if id(value) in seen:  # met before in this walk (recursion, a value used twice)
        return "<seen>"
    seen.add(id(value))
    if isinstance(value, (list, tuple)):
        return f"{type(value).__name__}[" + ",".join(_value(v, seen) for v in value) + "]"
    if isinstance(value, (set, frozenset)):
        return "set[" + ",".join(sorted(_value(v, seen) for v in value)) + "]"
    if isinstance(value, dict):
        items = sorted((_value(k, seen), _value(v, seen)) for k, v in value.items())
        return "dict[" + ",".join(f"{k}:{v}" for k, v in items) + "]"
    if isinstance(value, types.CodeType):
        return _code(value, seen)
    if isinstance(value, types.ModuleType):
        return f"module({value.__name__})"
    if isinstance(value, (torch.Tensor, np.ndarray)):
        array = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else value
        data = np.ascontiguousarray(array)
        return f"array({data.dtype.str};{data.shape};{hashlib.sha256(data.tobytes()).hexdigest()})"
    if isinstance(value, functools.partial):
        parts = (value.func, value.args, value.keywords)
        return "partial(" + ";".join(_value(part, seen) for part in parts) + ")"
    if isinstance(value, types.MethodType):
        return f"method({_value(value.__func__, seen)};{_value(value.__self__, seen)})"
    if isinstance(value, types.FunctionType):
        return _function(value, seen)
    if isinstance(value, (type, types.BuiltinFunctionType, types.WrapperDescriptorType)):
        return _path(value)
    if hasattr(value, "__dict__"):
        return _object(value, seen)
    text = repr(value)
    return f"<{_path(type(value))}>" if ADDRESS.search(text) else text


def callable_fingerprint(function: Any) -> str:
    """Hex SHA-256 of what ``function`` computes (see the module docstring for what is
    covered); stable across processes and runs."""
    return hashlib.sha256(_value(function, set()).encode("utf-8")).hexdigest()
