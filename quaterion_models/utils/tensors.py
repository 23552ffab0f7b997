"""Move tensors nested in containers to a device."""

from collections.abc import Mapping
from typing import Any, Union

import torch
from torch import Tensor


def move_to_device(obj: Any, device: Union[str, torch.device]) -> Any:
    """Recursively move every tensor inside ``obj`` to ``device``.

    Tensors are moved with ``tensor.to(device)`` (any device type, CPU included).
    ``dict``, ``list``, namedtuples and plain tuples are rebuilt with the same type; other
    mappings with a ``to`` method (e.g. a Hugging Face ``BatchEncoding``) are moved by
    ``obj.to(device)``; anything else is returned unchanged.

    Args:
        obj: a tensor or a nested container of tensors (e.g. a collated batch).
        device: target device, as ``torch.device`` or string (``"cpu"``, ``"cuda:0"``).

    Returns:
        An object of the same structure with tensors on ``device``.
    """
    if not isinstance(device, (str, torch.device)):
        raise TypeError(
            f"move_to_device: `device` must be a str or torch.device, got "
            f"{type(device).__name__} ({device!r}); pass e.g. 'cpu' or torch.device('cuda:0')"
        )
    return _move(obj, torch.device(device))


def _move(obj: Any, device: torch.device) -> Any:
    if isinstance(obj, Tensor):
        return obj.to(device)
    if isinstance(obj, dict):
        return {key: _move(value, device) for key, value in obj.items()}
    if isinstance(obj, Mapping) and callable(getattr(obj, "to", None)):
        return obj.to(device)  # e.g. a tokenizer's BatchEncoding: it knows how to move itself
    if isinstance(obj, list):
        return [_move(value, device) for value in obj]
    if isinstance(obj, tuple):
        moved = [_move(value, device) for value in obj]
        if hasattr(obj, "_fields"):  # namedtuple: rebuild the same type field by field
            return type(obj)(*moved)
        return tuple(moved)
    return obj


def check_materialised(module: torch.nn.Module, action: str) -> None:
    """Refuse to ``action`` (save, export) a module holding meta-device tensors.

    A tensor on the ``meta`` device has a shape but no values (the module was built under
    ``torch.device("meta")`` or an "empty weights" context and never loaded): saving it would
    write a model that cannot be loaded, exporting it a graph of nothing.

    Raises:
        ValueError: naming the first such parameter or buffer and the fix.
    """
    for kind, named in (("parameter", module.named_parameters), ("buffer", module.named_buffers)):
        for name, tensor in named():
            if tensor.is_meta:
                raise ValueError(
                    f"{action}: {kind} {name!r} is on the meta device: it has a shape but no "
                    "values (the model was built under torch.device('meta') or with empty "
                    "weights and never loaded). Give it values first, e.g. "
                    "model.to_empty(device='cpu') then load_state_dict(...)"
                )
