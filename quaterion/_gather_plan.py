"""What the next :func:`quaterion.distributed.gather_rows` call is expected to send.

Every rank keeps the same :class:`GatherPlan`: it changes only with outcomes every rank
saw identically (the layouts agreed at a full check, the row counts read from a gather),
so the expectation it hands out — and with it the size of the next collective — is the
same on every rank, whatever each rank's own input is.
"""

from dataclasses import dataclass, replace
from typing import Dict, Optional, Tuple

import torch

# at most this many remembered transitions; more (layouts that keep changing) start over
_MAX_TRANSITIONS = 64
# the state after a call whose layout is not predicted (digests are never negative)
_UNPREDICTED = -1
# an agreed capacity shrinks to the rows actually sent after this many calls in a row that
# used at most a quarter of it (a one-off large batch does not pad every later call)
_SHRINK_AFTER = 8


@dataclass(frozen=True)
class AgreedLayout:
    """A layout every rank passed at one full check, and the rows each rank may send.

    Attributes:
        digest: digest of the layout's description (tensor count, dtypes, trailing shapes,
            ``requires_grad``, device type), as :func:`gather_rows` computes it locally.
        row_bytes: bytes of one row with every tensor packed side by side.
        capacity: rows every rank sends (its own rows, then zero padding); the largest
            row count any rank has passed in this layout at this point of the sequence.
        device: the device type of the tensors (``"cpu"``, ``"cuda"``).
        specs: per tensor, its dtype, trailing shape and ``requires_grad`` (what a rank
            that cannot send this layout reproduces on the device path).
    """

    digest: int
    row_bytes: int
    capacity: int
    device: str = "cpu"
    specs: Tuple[Tuple[torch.dtype, Tuple[int, ...], bool], ...] = ()

    def payload_bytes(self, header: int) -> int:
        """Bytes every rank sends: ``capacity`` padded rows and a ``header``."""
        return self.capacity * self.row_bytes + header


class GatherPlan:
    """The layout expected after each agreed layout, learned from the calls so far.

    Training code calls :func:`gather_rows` in the same order on every rank and usually in
    a loop (the loss's gather, then the XBM queue's, then the loss's again), so the layout
    that followed a layout last time is the best guess for the next call. A wrong guess
    costs one wasted collective, never a wrong result: every rank reports in the gather
    whether it could send the expected layout, and all ranks fall back together. A layout
    seen for the first time is expected to repeat (a loop over one gather).
    """

    def __init__(self) -> None:
        self._previous: Optional[int] = None
        self._next: Dict[Optional[int], Optional[AgreedLayout]] = {}
        self._small: Dict[Optional[int], int] = {}  # calls in a row far below capacity

    def expected(self) -> Optional[AgreedLayout]:
        """The layout to send now, or ``None`` for a full check."""
        return self._next.get(self._previous)

    def confirm(self, agreed: AgreedLayout, largest: int) -> None:
        """Every rank sent ``agreed``, at most ``largest`` rows each: the next guess follows
        it. After :data:`_SHRINK_AFTER` such calls in a row with ``largest`` at most a
        quarter of the capacity, the capacity becomes ``largest`` (the device path passes
        the capacity itself: its row counts are not read on the host, so it never shrinks)."""
        key = self._previous
        if 4 * largest <= agreed.capacity:
            self._small[key] = self._small.get(key, 0) + 1
            if self._small[key] >= _SHRINK_AFTER:
                self._next[key] = replace(agreed, capacity=largest)
                self._small.pop(key)
        else:
            self._small.pop(key, None)
        self._previous = agreed.digest

    def learn(self, agreed: Optional[AgreedLayout]) -> None:
        """A full check ended with ``agreed`` (``None``: a layout not worth predicting)."""
        if len(self._next) >= _MAX_TRANSITIONS:
            self._next.clear()
        self._small.pop(self._previous, None)
        self._next[self._previous] = agreed
        if agreed is None:  # what follows such a call is learned apart from the first call
            self._previous = _UNPREDICTED
            return
        self._next.setdefault(agreed.digest, agreed)  # first guess: the same layout again
        self._previous = agreed.digest

    def forget(self) -> None:
        """Start over (after an error that every rank raised)."""
        self._previous = None
        self._next.clear()
        self._small.clear()

    def transitions(self) -> Tuple[Optional[int], ...]:
        """The layouts that have a remembered successor (for tests and debugging)."""
        return tuple(self._next)
