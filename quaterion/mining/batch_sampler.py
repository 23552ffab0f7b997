"""``HardNegativeBatchSampler``: batches that hold each anchor's mined negatives."""

import math
import random
from collections.abc import Iterator
from typing import Any, Optional

import torch
from torch.utils.data import Sampler

from quaterion.distributed import require_one_process
from quaterion.mining.mined import MinedNegatives
from quaterion.mining.positives import as_group_ids


class HardNegativeBatchSampler(Sampler[list[int]]):
    """Batch sampler for group losses: every anchor comes with one of its positives and its
    mined negatives, so in-batch mining (e.g. ``TripletLoss(mining="hard")``) sees them.

    Per epoch every dataset index is an *anchor* exactly once (shuffled with ``seed`` and
    the epoch); a batch is ``anchors_per_batch`` anchors, each followed by a random other
    item of its group (``with_positive``) and its valid mined negatives, without repeats in
    a batch. Positives and negatives may also be anchors of other batches, so batches hold
    up to ``anchors_per_batch * (2 + num_negatives)`` items.

    Args:
        mined: result of ``mine_hard_negatives(embeddings, groups=...)`` over the dataset
            itself (``corpus=None``), so indices are dataset positions.
        anchors_per_batch: anchors per batch.
        groups: ``(n,)`` group ids (default: ``mined.groups``).
        with_positive: add one same-group item per anchor (if its group has another).
        shuffle: shuffle the anchors each epoch.
        seed: base seed; epoch ``e`` uses ``seed + e`` (see :meth:`set_epoch`).
        drop_last: drop the last batch if it has fewer anchors.

    One process only: iterating it in a process group of several ranks raises
    ``RuntimeError`` (every rank would read the same batches).

    Example::

        mined = mine_hard_negatives(embeddings, groups=labels, num_negatives=3)
        loader = GroupSimilarityDataLoader(
            dataset, batch_sampler=HardNegativeBatchSampler(mined, anchors_per_batch=32)
        )
    """

    def __init__(
        self,
        mined: MinedNegatives,
        anchors_per_batch: int,
        groups: Optional[Any] = None,
        with_positive: bool = True,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
    ):
        if isinstance(anchors_per_batch, bool) or not isinstance(anchors_per_batch, int):
            raise TypeError(f"anchors_per_batch must be an int, got {anchors_per_batch!r}.")
        if anchors_per_batch < 1:
            raise ValueError(f"anchors_per_batch must be >= 1, got {anchors_per_batch}.")
        n = mined.indices.shape[0]
        groups = mined.groups if groups is None else as_group_ids(groups, n, "groups")
        if with_positive and groups is None:
            raise ValueError(
                "with_positive=True needs the groups: mine with groups=... or pass groups=..."
            )
        if not mined.over_queries or (mined.indices.numel() and int(mined.indices.max()) >= n):
            raise ValueError(
                "mined negatives point past the dataset: mine over the dataset itself "
                "(corpus=None) so that indices are dataset positions."
            )
        self.negatives = [[i for i in row if i >= 0] for row in mined.indices.tolist()]
        self.members = _members(groups) if with_positive else None
        self.groups = None if groups is None else groups.tolist()
        self.anchors_per_batch = anchors_per_batch
        self.shuffle, self.seed, self.drop_last = shuffle, seed, drop_last
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Use the order of ``epoch`` for the next iteration (each iteration also advances it)."""
        self.epoch = epoch

    def __len__(self) -> int:
        rounding = math.floor if self.drop_last else math.ceil
        return rounding(len(self.negatives) / self.anchors_per_batch)

    def __iter__(self) -> Iterator[list[int]]:
        for _, batch in self.batches_with_anchors():
            yield batch

    def batches_with_anchors(self) -> Iterator[tuple[list[int], list[int]]]:
        """``(anchors, batch)`` for one epoch (what iteration yields, with its anchors).

        Raises:
            RuntimeError: in a process group of several ranks (batches are not sharded).
        """
        require_one_process(type(self).__name__)
        rng = random.Random(self.seed + self.epoch)
        self.epoch += 1
        order = list(range(len(self.negatives)))
        if self.shuffle:
            rng.shuffle(order)
        for start in range(0, len(order), self.anchors_per_batch):
            anchors = order[start : start + self.anchors_per_batch]
            if self.drop_last and len(anchors) < self.anchors_per_batch:
                return
            batch: dict[int, None] = {}
            for anchor in anchors:
                batch[anchor] = None
                partner = self._partner(anchor, rng)
                if partner is not None:
                    batch[partner] = None
                batch.update(dict.fromkeys(self.negatives[anchor]))
            yield anchors, list(batch)

    def _partner(self, anchor: int, rng: random.Random) -> Optional[int]:
        """A random other item of the anchor's group, if any."""
        if self.members is None:
            return None
        members = self.members[self.groups[anchor]]
        if len(members) < 2:
            return None
        pick = members[rng.randrange(len(members) - 1)]
        return members[-1] if pick == anchor else pick


def _members(groups: torch.Tensor) -> dict[int, list[int]]:
    """Dataset indices of every group."""
    members: dict[int, list[int]] = {}
    for index, group in enumerate(groups.tolist()):
        members.setdefault(group, []).append(index)
    return members
