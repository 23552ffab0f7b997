"""RankFailureCallback: an error on one rank becomes the same clear error on every rank."""

import sys
from typing import Optional

import pytorch_lightning as pl
from typing_extensions import override

from quaterion import distributed
from quaterion.train.callbacks.failure_channel import FailureChannel


class RankFailureCallback(pl.Callback):
    """Tells every rank of a multi-process fit which rank failed, where and why.

    When the trainer sets up, every rank opens a :class:`FailureChannel` (a ``TCPStore`` on
    global rank 0 and a daemon watcher thread per rank; nothing runs on the step's path).
    When a rank's fit raises, :meth:`on_exception` posts
    ``"rank R failed in <stage> (epoch E, global step S): <Type>: <message>"`` and waits up
    to ``ack_timeout`` seconds for the other ranks to see it; that rank then stops with its
    own exception. The other ranks stop with the backend's error a moment later (the failing
    rank left a collective): this callback prints the failing rank's line to stderr, and
    ``Quaterion.fit`` raises :class:`~quaterion.distributed.RankFailedError` naming it. A rank
    that ends its fit normally after another rank failed prints the line as well, and
    ``Quaterion.fit`` raises the same error.

    A rank still blocked ``grace_period`` seconds after learning of another rank's failure
    (NCCL may wait for its collective timeout) prints the line and ends its process with
    ``os._exit(1)``. Errors every rank raises together
    (:class:`~quaterion.distributed.ErrorOnEveryRank`) and ``KeyboardInterrupt`` (a Ctrl-C
    reaches every rank) are not posted. In a single process
    the callback does nothing.

    ``Quaterion.fit`` adds one to the trainer, and ``TrainableModel.configure_callbacks``
    returns one, so a direct ``trainer.fit`` gets it too.

    Args:
        poll_interval: seconds between two looks of the watcher at the store.
        ack_timeout: longest wait of a failing rank for the others to see its failure.
        grace_period: seconds before a rank blocked after another rank's failure is ended;
            ``None`` never ends it.
    """

    def __init__(
        self,
        poll_interval: float = 0.2,
        ack_timeout: float = 5.0,
        grace_period: Optional[float] = 30.0,
    ):
        self.poll_interval = poll_interval
        self.ack_timeout = ack_timeout
        self.grace_period = grace_period
        self._channel: Optional[FailureChannel] = None
        self._other_failure: Optional[str] = None

    @property
    def other_failure(self) -> Optional[str]:
        """Another rank's failure line if the last run on this trainer saw one, else ``None``."""
        return self._other_failure

    def forget(self) -> None:
        """Drop :attr:`other_failure` (a new fit on this trainer starts clean)."""
        self._other_failure = None

    def rank_failed_error(self) -> Optional[distributed.RankFailedError]:
        """:class:`~quaterion.distributed.RankFailedError` for :attr:`other_failure`, if any."""
        if self._other_failure is None:
            return None
        return distributed.RankFailedError(
            f"{self._other_failure}; so rank {distributed.global_rank()} stops as well. See "
            "the failing rank's output for its traceback."
        )

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._close()
        self._other_failure = None
        self._channel = FailureChannel.open(
            poll_interval=self.poll_interval,
            ack_timeout=self.ack_timeout,
            grace_period=self.grace_period,
        )

    @override
    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        channel = self._channel
        self._close()  # a last look at the store included
        if channel is not None:
            self._other_failure = channel.other_failure
        self._report()

    @override
    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        channel = self._channel
        if channel is None:
            return
        if _posted(exception):
            # another rank's failure posted before this one fails makes this its consequence;
            # a rank whose post loses a race against another post keeps its own error
            self._other_failure = channel.look()
            if self._other_failure is None:
                channel.post(_report(trainer, pl_module, exception))
        self._close()
        if _posted(exception):
            self._report()

    def _report(self) -> None:
        error = self.rank_failed_error()
        if error is not None:
            print(f"RankFailedError: {error}", file=sys.stderr, flush=True)

    def _close(self) -> None:
        channel, self._channel = self._channel, None
        if channel is not None:
            channel.close()


def _posted(exception: BaseException) -> bool:
    """Whether ``exception`` is this rank's own failure, to tell the others about: not one
    every rank raises together, nor a Ctrl-C (the terminal interrupts every rank at once)."""
    return not isinstance(exception, (distributed.ErrorOnEveryRank, KeyboardInterrupt))


def _stage(trainer: pl.Trainer, pl_module: pl.LightningModule) -> str:
    """Where the fit is: Lightning's stage, or the encoder cache fill (which runs as a
    ``predict`` before ``Quaterion.fit`` trains)."""
    # imported here: the cache set-up imports the callbacks
    from quaterion.train.cache.cache_model import CacheModel

    if isinstance(pl_module, CacheModel):
        return "the encoder cache fill"
    state = trainer.state.stage or trainer.state.fn
    return state.value if state is not None else "setup"


def _report(trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> str:
    stage = _stage(trainer, pl_module)
    where = f"{stage} (epoch {trainer.current_epoch}, global step {trainer.global_step})"
    return (
        f"rank {distributed.global_rank()} failed in {where}: "
        f"{type(exception).__name__}: {exception}"
    )
