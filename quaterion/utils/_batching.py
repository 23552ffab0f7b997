"""Chunk any sequence or iterable into lists."""

from collections.abc import Iterable, Iterator
from typing import Any

from tqdm import tqdm


def iter_by_batch(
    sequence: Iterable[Any], batch_size: int, log_progress: bool = True
) -> Iterator[list[Any]]:
    """Yield lists of up to ``batch_size`` items of ``sequence`` (the last one may be short).

    Indexable sequences (``sequence[0]`` works) are read by index; anything else whose probe
    raises ``AttributeError``, ``NotImplementedError`` or ``IndexError`` (empty list,
    ``IterableDataset``, generator) is iterated. Empty input yields nothing.

    Args:
        sequence: list, map-style dataset, iterator or iterable.
        batch_size: maximum length of every yielded list.
        log_progress: wrap the iteration in ``tqdm``.
    """
    try:
        sequence.__getitem__(0)  # type: ignore[attr-defined]
    except (AttributeError, NotImplementedError, IndexError):
        yield from _iter_chunks(sequence, batch_size, log_progress)
        return
    size = len(sequence)  # type: ignore[arg-type]
    step = min(batch_size, size)
    starts = range(0, size, step)
    for start in tqdm(starts) if log_progress else starts:
        yield [sequence[i] for i in range(start, min(start + step, size))]  # type: ignore[index]


def _iter_chunks(iterable: Iterable[Any], batch_size: int, log_progress: bool) -> Iterator[list]:
    batch: list[Any] = []
    for item in tqdm(iterable) if log_progress else iterable:
        batch.append(item)
        if len(batch) >= batch_size:
            yield batch
            batch = []
    if batch:
        yield batch
