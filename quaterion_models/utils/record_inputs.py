"""What ``encode`` takes as records, and running them through a model in chunks.

Torch-free (the ONNX runtime serves without torch): shared by ``SimilarityModel.encode`` and
``OnnxSimilarityModel.encode`` so both read the same inputs the same way.
"""

import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from itertools import islice
from typing import Any, Callable, TypeVar

Chunk = TypeVar("Chunk")


def holds_records(inputs: Any) -> bool:
    """Whether ``inputs`` is a collection of records rather than one record.

    Lists, tuples, other sequences (``range``, ``deque``) and iterators (generators, ``map``,
    ``iter(...)``) hold records. Strings, bytes, dicts, named tuples, tensors, arrays and
    anything else are one record (as in the original, where only a list held records).
    """
    torch = sys.modules.get("torch")  # a tensor can only come from an imported torch
    if isinstance(inputs, (str, bytes, bytearray, Mapping)) or _is_namedtuple(inputs):
        return False
    if torch is not None and isinstance(inputs, torch.Tensor):
        return False
    return isinstance(inputs, (Sequence, Iterator))


def _is_namedtuple(obj: Any) -> bool:
    return isinstance(obj, tuple) and hasattr(type(obj), "_fields")


def chunks(records: Iterable, batch_size: int) -> Iterator[tuple[int, list]]:
    """``(index of the first record, list of up to batch_size records)``, read lazily."""
    iterator = iter(records)
    start = 0
    while chunk := list(islice(iterator, batch_size)):
        yield start, chunk
        start += len(chunk)


def encode_chunks(
    inputs: Any, batch_size: int, run: Callable[[list, int, bool], Chunk]
) -> tuple[list[Chunk], bool]:
    """Call ``run(records, index of the first, one_record)`` on ``inputs`` in chunks of
    ``batch_size``; return the results and whether ``inputs`` was one record.

    A tuple is one record, as in the original Quaterion, when ``run`` accepts it as one; when
    that fails, its items are the records (an error then says both were tried).
    """
    single = not holds_records(inputs)
    tuple_error = None
    if isinstance(inputs, tuple) and not single:
        try:
            return [run([inputs], 0, True)], True
        except Exception as err:  # noqa: BLE001 - not one record for this model: items are
            tuple_error = err
    results = []
    try:
        for start, part in chunks([inputs] if single else inputs, batch_size):
            results.append(run(part, start, single))
    except Exception as err:
        if tuple_error is not None:
            err.add_note(
                "encode read the tuple as several records after encoding it as one record "
                f"(as the original does) failed with {type(tuple_error).__name__}: "
                f"{tuple_error}; pass a list to choose: [record] or list(records)"
            )
        raise
    return results, single
