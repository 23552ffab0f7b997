"""A side channel on which a failing rank tells the other ranks why it stops.

Global rank 0 opens a :class:`torch.distributed.TCPStore` on a free port of ``MASTER_ADDR``
and shares its address with one collective when the channel opens; every rank connects and
starts a daemon thread that polls the store (a cheap ``check`` every ``poll_interval``
seconds, off the training step's path). A rank that fails posts one line
(``"rank R failed in <where>: <Type>: <message>"``); the first post wins, and the watchers
of the other ranks remember it and acknowledge it.

A rank that learnt of another rank's failure and is still running ``grace_period`` seconds
later (blocked in a collective that will never complete: NCCL may wait until its timeout)
prints the failure to stderr and ends its process with ``os._exit(1)``: the only public way
to leave a collective that does not return.
"""

import json
import os
import sys
import threading
import time
import warnings
from datetime import timedelta
from typing import Optional

import torch.distributed as dist

from quaterion import distributed

_FAILURE = "failure"
_ACKS = "acks"
_JOINED = "joined"
_LEFT = "left"


class FailureChannel:
    """The store and watcher thread of one rank; open with :meth:`open` on every rank.

    Args:
        store: the store (rank 0 hosts it, the others are its clients).
        rank: this rank.
        world: the number of ranks.
        poll_interval: seconds between two looks at the store.
        ack_timeout: longest wait, in :meth:`post` and :meth:`close`, for the other ranks.
        grace_period: seconds a rank that learnt of another rank's failure may go on before
            its process is ended (``None``: never end it).
    """

    def __init__(
        self,
        store: dist.TCPStore,
        rank: int,
        world: int,
        poll_interval: float,
        ack_timeout: float,
        grace_period: Optional[float],
    ):
        self._store: Optional[dist.TCPStore] = store
        self.rank = rank
        self.world = world
        self.poll_interval = poll_interval
        self.ack_timeout = ack_timeout
        self.grace_period = grace_period
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._seen: Optional[str] = None
        self._posted = False
        if rank != 0:
            store.add(_JOINED, 1)  # rank 0 waits for the ranks that joined to leave
        self._thread = threading.Thread(
            target=self._watch, name=f"quaterion-failure-watcher-{self.rank}", daemon=True
        )
        self._thread.start()

    @classmethod
    def open(
        cls,
        poll_interval: float = 0.2,
        ack_timeout: float = 5.0,
        grace_period: Optional[float] = 30.0,
        connect_timeout: float = 10.0,
    ) -> Optional["FailureChannel"]:
        """Open the channel on every rank (a collective); ``None`` in a single process.

        A rank that cannot open or reach the store warns and goes on without the channel.
        """
        if distributed.world_size() == 1:
            return None
        store, address = None, None
        if distributed.global_rank() == 0:
            host = os.environ.get("MASTER_ADDR", "127.0.0.1")
            try:
                store = dist.TCPStore(
                    host,
                    0,
                    None,
                    True,
                    timeout=timedelta(seconds=connect_timeout),
                    wait_for_workers=False,
                )
                address = (host, store.port)
            except Exception as error:  # the channel is a help, never a reason to stop
                _warn_off(f"rank 0 could not open a TCPStore on {host}: {error}")
        address = distributed.broadcast_from_rank_zero(address)
        if address is None:
            return None
        rank, world = distributed.global_rank(), distributed.world_size()
        try:
            if store is None:
                store = dist.TCPStore(
                    address[0], address[1], None, False, timeout=timedelta(seconds=connect_timeout)
                )
            return cls(store, rank, world, poll_interval, ack_timeout, grace_period)
        except Exception as error:
            _warn_off(f"could not reach rank 0's TCPStore at {address[0]}:{address[1]}: {error}")
            return None

    @property
    def other_failure(self) -> Optional[str]:
        """The first failure another rank posted, as far as this rank has seen; else ``None``."""
        with self._lock:
            return self._seen

    def look(self) -> Optional[str]:
        """Look at the store now (not waiting for the watcher); :attr:`other_failure` after."""
        if self.other_failure is None and not self._posted:
            self._check()
        return self.other_failure

    def post(self, report: str) -> Optional[str]:
        """Post this rank's failure and wait (``ack_timeout`` at most) for the others to see it.

        Returns ``None`` when this post is the first failure, else the failure another rank
        posted first (this rank's report is then dropped).
        """
        store = self._store
        if store is None:
            return self.other_failure
        payload = json.dumps({"rank": self.rank, "report": report})
        try:
            first = store.compare_set(_FAILURE, "", payload).decode()
        except Exception:
            return self.other_failure  # rank 0's store is gone: it has stopped already
        if first != payload:
            return self._remember(first)
        self._posted = True
        deadline = time.monotonic() + self.ack_timeout
        try:
            while store.add(_ACKS, 0) < self.world - 1 and time.monotonic() < deadline:
                time.sleep(0.05)
        except Exception:
            pass  # the host went away: nobody is left to tell
        return None

    def close(self) -> None:
        """Stop the watcher, take a last look for a failure, and leave the store.

        Rank 0 first waits (``ack_timeout`` at most) for the others to leave, so that no rank
        polls a store that is gone, and notices a failure posted meanwhile (a rank that
        failed while this one was finishing). Idempotent.
        """
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join()
        store = self._store
        if store is None:
            return
        try:
            if self.rank == 0 and not self._posted:
                deadline = time.monotonic() + self.ack_timeout
                while self.other_failure is None and store.add(_LEFT, 0) < store.add(_JOINED, 0):
                    if time.monotonic() > deadline:
                        break
                    self._check()
                    time.sleep(0.05)
            if not self._posted:
                self._check()
            if self.rank != 0:
                store.add(_LEFT, 1)
        except Exception:
            pass  # the host has gone: nothing to leave
        self._store = None
        del store

    def _check(self) -> bool:
        """One look at the store; ``True`` once there is nothing more to watch for."""
        store = self._store
        if store is None:
            return True
        try:
            if not store.check([_FAILURE]):
                return False
            self._remember(store.get(_FAILURE).decode())
            return True  # the first failure never changes
        except Exception:
            return True  # rank 0 has closed the store: it stopped, and so will this rank

    def _remember(self, payload: str) -> Optional[str]:
        posted = json.loads(payload)
        if posted["rank"] == self.rank:
            return None
        with self._lock:
            first_time = self._seen is None
            if first_time:
                self._seen = posted["report"]
        store = self._store
        if first_time and store is not None:
            try:
                store.add(_ACKS, 1)
            except Exception:
                pass
        return self._seen

    def _watch(self) -> None:
        while not self._stop.wait(self.poll_interval):
            if self._check():
                break
        failure = self.other_failure
        if failure is None or self.grace_period is None:
            return
        if self._stop.wait(self.grace_period):
            return  # this rank reached its own error handling or finished in time
        print(
            f"{failure}; rank {self.rank} is still waiting {self.grace_period:g} s later "
            "(a collective that will not complete), so its process ends now.",
            file=sys.stderr,
            flush=True,
        )
        os._exit(1)


def _warn_off(reason: str) -> None:
    warnings.warn(
        f"Failure reports between ranks are off ({reason}). An error on one rank reaches the "
        "others only as the backend's error.",
        RuntimeWarning,
        stacklevel=3,
    )
