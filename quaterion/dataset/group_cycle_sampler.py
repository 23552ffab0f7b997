"""``GroupCycleBatchSampler``: batches that visit the groups in a shuffled cycle."""

from __future__ import annotations

import warnings
import zlib
from numbers import Integral
from collections.abc import Hashable, Iterable, Iterator, Sequence
from typing import Any, Optional

import numpy as np
import torch
from torch.utils.data import Sampler

from quaterion.dataset.random_state import random_state_from_dict, random_state_to_dict
from quaterion.distributed import require_one_process
from quaterion_models.utils.checks import check_positive_int

_STATE_FORMAT = 1  # version of state_dict's layout


def _draw_state(generator: np.random.RandomState, order: np.ndarray) -> dict[str, Any]:
    """What the next epoch is drawn from, as plain data (a copy)."""
    return {
        "order": torch.from_numpy(order.astype(np.int64)),
        "generator": random_state_to_dict(generator),
    }


def _from_draw_state(state: dict[str, Any]) -> tuple[np.random.RandomState, np.ndarray]:
    """Inverse of :func:`_draw_state`."""
    generator = np.random.RandomState()
    generator.set_state(random_state_from_dict(state["generator"]))
    return generator, np.asarray(state["order"], dtype=np.int64)


def _group_list(groups: Any) -> list[Hashable]:
    """Group ids as a list of hashables (a 1-D tensor or array gives Python scalars)."""
    values = groups.tolist() if hasattr(groups, "tolist") else groups
    if not isinstance(values, Iterable):
        shape = "a 0-d tensor or array" if values is not groups else type(groups).__name__
        raise TypeError(
            f"GroupCycleBatchSampler: groups must hold one id per record (a sequence, or a 1-D "
            f"tensor or array), got {shape}."
        )
    values = [_scalar(value) for value in values]
    if any(isinstance(value, list) for value in values):
        raise ValueError("groups must hold one id per record (a flat sequence, not a matrix).")
    unhashable = next((value for value in values if not isinstance(value, Hashable)), None)
    if unhashable is not None:
        raise TypeError(
            "GroupCycleBatchSampler: group ids must be hashable (ints, strings, tuples), got "
            f"{type(unhashable).__name__} {unhashable!r}; pass e.g. sample.group for each record."
        )
    return values


def _scalar(value: Any) -> Any:
    """A 0-d tensor or array as its Python scalar: tensors hash by identity, so equal ids
    held in different 0-d tensors would otherwise count as different groups."""
    if isinstance(value, (torch.Tensor, np.ndarray)):
        if value.ndim != 0:
            raise TypeError(
                "GroupCycleBatchSampler: each group id must be a scalar, got a "
                f"{type(value).__name__} of shape {tuple(value.shape)}; pass one id per "
                "record (e.g. int(sample.group))."
            )
        return value.item()
    return value


class GroupCycleBatchSampler(Sampler[list[int]]):
    """Batch sampler for group losses that takes ``samples_per_group`` records of one
    group after another, in a shuffled order of the groups, so that every batch holds
    groups with several records each (batch-hard mining needs positives in the batch).

    The order is that of sentence-transformers' ``SentenceLabelDataset`` read by a
    ``DataLoader(batch_size=..., drop_last=True)``: the groups are shuffled once, then
    visited in that order, ``samples_per_group`` distinct records drawn at random from
    each; after the last group the order is shuffled again and the records of every group
    may be drawn again. An epoch is as many records as the groups used hold (rounded up to
    a multiple of ``samples_per_group``), cut into full batches, the rest dropped; a batch
    may span two cycles, and then can hold a group twice (even the same record twice).

    The random numbers come from ``numpy.random.RandomState(seed)``, and the generator and
    the group order carry over from one epoch to the next (build a new sampler to start
    over). With ``seed=s`` the batches equal those of sentence-transformers' loop run with
    ``numpy.random.seed(s)`` just before building its ``SentenceLabelDataset``.

    Resuming: :meth:`state_dict` holds the generator, the group order, the number of
    epochs drawn and, once a training loop noted it (:meth:`note_batches_trained`), the
    batches taken of the current epoch, as plain data (a weights-only ``torch.load`` reads
    it); :meth:`load_state_dict` puts them back, so that the next iteration continues the
    order (the rest of the current epoch, or the next epoch). A
    :class:`~quaterion.dataset.SimilarityDataLoader` hands them to Lightning's
    checkpoints, and a fit resumed with ``ckpt_path`` trains on exactly the batches of an
    uninterrupted fit, from a checkpoint written at an epoch's end or inside one (see
    Resuming in the training guide). An epoch draws all its random numbers when its first
    batch is taken.

    Groups with fewer than ``samples_per_group`` records are left out (with a warning),
    as sentence-transformers does. One process only: it does not shard batches across
    ranks, and iterating it in a process group of several ranks raises ``RuntimeError``.

    Args:
        groups: the group id of each dataset record, in dataset order (a sequence, or a
            1-D tensor or array).
        batch_size: records per batch.
        samples_per_group: records drawn from a group at each visit.
        seed: seed of the generator, an int in ``[0, 2**32)``.

    Example (three groups of 2 or 3 records, batches of 2 visits; the second batch spans
    two cycles and holds record 6 twice):

    >>> sampler = GroupCycleBatchSampler(list("abacbcac"), batch_size=4, seed=0)
    >>> len(sampler), list(sampler)
    (2, [[7, 3, 1, 4], [0, 6, 6, 2]])

    With a data loader::

        groups = [sample.group for sample in train]
        loader = GroupSimilarityDataLoader(
            train, batch_sampler=GroupCycleBatchSampler(groups, batch_size=32, seed=42)
        )
    """

    def __init__(
        self, groups: Sequence[Hashable], batch_size: int, samples_per_group: int = 2, seed: int = 0
    ):
        name = type(self).__name__
        self.batch_size = check_positive_int(name, "batch_size", batch_size, "e.g. 32")
        self.samples_per_group = check_positive_int(
            name, "samples_per_group", samples_per_group, "e.g. 2"
        )
        if isinstance(seed, bool) or not isinstance(seed, Integral):
            raise TypeError(f"{name}: seed must be an int, got {seed!r}.")
        if not 0 <= seed < 2**32:
            raise ValueError(
                f"{name}: seed must be in [0, 2**32) (numpy's RandomState), got {seed}."
            )
        seed = int(seed)
        members: dict[Hashable, list[int]] = {}
        ids = _group_list(groups)
        self.num_records = len(ids)  # the dataset length the loader must have
        for index, group in enumerate(ids):
            members.setdefault(group, []).append(index)
        kept = [rows for rows in members.values() if len(rows) >= self.samples_per_group]
        if len(kept) < len(members):
            warnings.warn(
                f"{name}: {len(members) - len(kept)} group(s) have fewer than "
                f"samples_per_group={self.samples_per_group} records and are left out.",
                stacklevel=2,
            )
        if len(kept) == 1:
            warnings.warn(
                f"{name}: only one group has at least samples_per_group="
                f"{self.samples_per_group} records, so every batch holds that group alone and "
                "a group loss finds no negatives in it; check the group ids.",
                stacklevel=2,
            )
        self.members = kept
        flat = [value for rows in kept for value in (len(rows), *rows)]
        self._groups_crc = zlib.crc32(np.asarray(flat, dtype=np.int64).tobytes())
        used = sum(len(rows) for rows in kept)
        per_epoch = -(-used // self.samples_per_group) * self.samples_per_group
        self._per_epoch = per_epoch
        if per_epoch < self.batch_size:
            raise ValueError(
                f"{name}: the groups with at least {self.samples_per_group} records hold "
                f"{used} records, fewer than one batch of {self.batch_size}; lower batch_size."
            )
        self.generator = np.random.RandomState(seed)
        self.order = np.arange(len(kept))
        self.generator.shuffle(self.order)
        self.epochs_drawn = 0  # epochs whose random numbers were drawn (restored on resume)
        self.batches_trained: Optional[int] = None  # see note_batches_trained
        self._epoch_start: Optional[dict[str, Any]] = None  # draw state of the last epoch
        self._skip = 0  # batches of the next epoch already trained (a mid-epoch resume)
        self._resumed: Optional[dict[str, Any]] = None  # the state that set _skip

    def __len__(self) -> int:
        return self._per_epoch // self.batch_size

    def check_dataset(self, dataset: Any) -> None:
        """Raise ``ValueError`` unless ``dataset`` (if sized) has one record per group id."""
        try:
            size = len(dataset)
        except TypeError:
            return
        if size != self.num_records:
            raise ValueError(
                f"{type(self).__name__} was given {self.num_records} group ids, but the "
                f"loader's dataset has {size} records; pass the group of every record of the "
                "dataset, in dataset order (e.g. [sample.group for sample in dataset])."
            )

    def __iter__(self) -> Iterator[list[int]]:
        require_one_process(type(self).__name__)
        skip, self._skip, self._resumed = self._skip, 0, None
        stream = self._epoch_stream()
        for start in range(skip * self.batch_size, len(self) * self.batch_size, self.batch_size):
            yield stream[start : start + self.batch_size]

    def note_batches_trained(self, count: Optional[int]) -> None:
        """Record that a training loop has taken ``count`` batches of the epoch drawn last
        (``None``: all it will take of it). ``TrainableModel`` calls this at every training
        step, so that a checkpoint written inside an epoch holds where the epoch stopped."""
        self.batches_trained = count

    def state_dict(self) -> dict[str, Any]:
        """The generator, the group order and the epochs drawn so far, as plain data
        (ints and ``int64`` tensors), with the layout they belong to; when a training loop
        noted (:meth:`note_batches_trained`) that it took only part of the epoch drawn
        last, also that epoch's starting state and the batches taken (``"partial"``)."""
        if self._resumed is not None:  # loaded inside an epoch, not drawn again yet
            return dict(self._resumed)
        partial = None
        if self.batches_trained is not None and self._epoch_start is not None:
            partial = {**self._epoch_start, "batches": self.batches_trained}
        return {
            "format": _STATE_FORMAT,
            "layout": self._layout(),
            "epochs_drawn": self.epochs_drawn,
            **_draw_state(self.generator, self.order),
            "partial": partial,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Continue the order of the sampler whose :meth:`state_dict` this is: the next
        epoch draws the batches that sampler's next epoch draws, or, for a state written
        inside an epoch, the rest of that epoch (its batches after the ones taken).

        Raises ``ValueError`` when the state is of another layout (other group sizes,
        ``batch_size`` or ``samples_per_group``): its order would not fit these groups.
        """
        name = type(self).__name__
        if not isinstance(state_dict, dict) or state_dict.get("format") != _STATE_FORMAT:
            raise ValueError(
                f"{name}.load_state_dict: not a state written by {name}.state_dict "
                f"(format {_STATE_FORMAT}); pass the dict state_dict() returned."
            )
        saved = state_dict["layout"]
        if saved != self._layout():
            changed = sorted(key for key in saved if saved[key] != self._layout().get(key))
            raise ValueError(
                f"{name}.load_state_dict: the state belongs to a sampler with other "
                f"{', '.join(changed)} than this one, so its group order does not apply "
                "here; resume with the groups, batch_size and samples_per_group of the run "
                "that wrote it (or build a new sampler to start a new order)."
            )
        partial = state_dict.get("partial")
        skip = 0 if partial is None else int(partial["batches"])
        if not 0 <= skip < len(self):
            raise ValueError(
                f"{name}.load_state_dict: the state says {skip} batches of an epoch of "
                f"{len(self)} were trained, which cannot be; pass an undamaged state."
            )
        self.generator, self.order = _from_draw_state(partial or state_dict)
        # a state written inside an epoch: draw that epoch again, then skip what was trained
        self.epochs_drawn = int(state_dict["epochs_drawn"]) - (partial is not None)
        self._skip, self._resumed = skip, (None if partial is None else state_dict)
        self.batches_trained, self._epoch_start = None, None

    def _layout(self) -> dict[str, Any]:
        """What a state must match: the batch shape and the kept groups (their records,
        as a CRC-32 of the record indices of each group in turn, sizes included)."""
        return {
            "batch_size": self.batch_size,
            "samples_per_group": self.samples_per_group,
            "records": self.num_records,
            "groups": self._groups_crc,
        }

    def _epoch_stream(self) -> list[int]:
        """The records of one epoch, in order (draws every random number of the epoch)."""
        self._epoch_start = _draw_state(self.generator, self.order)
        self.batches_trained = None
        self.epochs_drawn += 1
        stream: list[int] = []
        position = 0
        while len(stream) < self._per_epoch:
            rows = self.members[self.order[position]]
            picks = self.generator.choice(len(rows), self.samples_per_group, replace=False)
            stream.extend(rows[pick] for pick in picks)
            position += 1
            if position == len(self.order):
                position = 0
                self.generator.shuffle(self.order)
        return stream
