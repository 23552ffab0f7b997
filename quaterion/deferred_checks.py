"""Checks of device values without a host sync: verdicts read a few calls later.

Reading a value of a CUDA tensor makes the host wait for the device. A loss called directly
with device tensors, and :func:`quaterion.distributed.gather_rows` on its one-collective
device path, therefore compute their check on the device, queue a copy of the verdict to
the host, and read it :data:`LAG` calls later, when the device has long finished it (like
``GuardCallback``'s deferred checks).
"""

from collections import deque
from typing import Callable, Deque, Optional, Tuple

import torch
from torch import Tensor

# A verdict is read at the start of the call LAG calls after the one that queued it.
LAG = 2


class DeferredChecks:
    """Verdicts queued on the device, read on the host :data:`LAG` calls later.

    Each call starts with ``raise_late()``, which counts the call, reads the verdicts old
    enough and raises the first failed one; then ``record(verdict, error)`` queues this
    call's: ``verdict`` is an int64 device tensor whose first element is 1 when the check
    passed, and ``error(call, verdict_values)`` builds the exception raised when it did not.
    ``raise_all()`` waits for every queued verdict (end of a loop).
    """

    def __init__(self) -> None:
        self._pending: Deque[Tuple[int, Tensor, Optional[object], Callable]] = deque()
        self._calls = 0
        self._failed: Optional[Tensor] = None

    @property
    def failed(self) -> Optional[Tensor]:
        """A bool 0-d tensor on the verdicts' device, true once a recorded verdict failed
        (sticky until :meth:`discard`; computed on the device, never read here); ``None``
        before any verdict is recorded."""
        return self._failed

    def record(self, verdict: Tensor, error: Callable[[int, list], BaseException]) -> None:
        """Queue ``verdict`` of the current call (copied to the host without waiting)."""
        verdict = verdict.detach()
        bad = verdict.reshape(-1)[0] != 1  # a device op: nothing is read
        self._failed = bad if self._failed is None else self._failed | bad.to(self._failed.device)
        event = None
        if verdict.device.type == "cuda":
            host = torch.empty(verdict.shape, dtype=verdict.dtype, pin_memory=True)
            host.copy_(verdict, non_blocking=True)
            event = torch.cuda.Event()
            event.record()
        else:  # CPU (and devices without events): kept as is, read when old enough
            host = verdict
        self._pending.append((self._calls, host, event, error))

    def raise_late(self) -> None:
        """Start a call: read every verdict with :data:`LAG` newer calls behind it and raise
        a failed one (each failed verdict raises once)."""
        self._calls += 1
        while len(self._pending) >= LAG:
            self._read_oldest()

    def raise_all(self) -> None:
        """Read every queued verdict (waits for the device); raise a failed one."""
        while self._pending:
            self._read_oldest()

    def discard(self) -> None:
        """Drop every queued verdict unread (after an error that made them moot) and clear
        :attr:`failed`."""
        self._pending.clear()
        self._failed = None

    def _read_oldest(self) -> None:
        call, host, event, error = self._pending.popleft()
        if event is not None:
            event.synchronize()  # long finished by now: the verdict is LAG calls old
        values = host.tolist()
        if values[0] != 1:  # the verdicts behind it stay queued: each bad call raises once
            raise error(call, values)
