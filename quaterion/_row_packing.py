"""Several tensors with one row dimension packed side by side as bytes, and unpacked.

:func:`quaterion.distributed.gather_rows` moves all tensors of a call (embeddings and labels,
whatever their dtypes) in one collective: row ``i`` of the packed ``uint8`` matrix holds the
bytes of row ``i`` of every tensor, one after the other.
"""

from typing import List, Sequence

import torch
from torch import Tensor


def row_elements(tensor: Tensor) -> int:
    """Elements of one row of ``tensor`` (the product of its trailing sizes)."""
    count = 1
    for size in tensor.shape[1:]:
        count *= size
    return count


def row_bytes(tensors: Sequence[Tensor]) -> int:
    """Bytes of one packed row of ``tensors``."""
    return sum(row_elements(tensor) * tensor.element_size() for tensor in tensors)


def pack_into(out: Tensor, tensors: Sequence[Tensor]) -> None:
    """Write the tensors' bytes side by side into the first rows of ``out``
    (``(capacity, bytes per row)``, ``uint8``)."""
    start = 0
    for tensor in tensors:
        rows = tensor.detach().contiguous().reshape(tensor.shape[0], row_elements(tensor))
        column = rows.view(torch.uint8)
        out[: column.shape[0], start : start + column.shape[1]] = column
        start += column.shape[1]


def unpack(gathered: Tensor, like: Sequence[Tensor]) -> List[Tensor]:
    """The tensors (with the dtypes and trailing shapes of ``like``) packed in ``gathered``
    (``(rows, bytes per row)``, ``uint8``)."""
    out, start = [], 0
    for tensor in like:
        width = row_elements(tensor) * tensor.element_size()
        column = gathered[:, start : start + width].contiguous()
        start += width
        out.append(column.view(tensor.dtype).reshape(gathered.shape[0], *tensor.shape[1:]))
    return out
