"""RankFailureCallback and its FailureChannel in one process (the 2-rank runs are in
``tests/quaterion/distributed/test_own_errors.py``)."""

import socket
import threading
import time
from datetime import timedelta

import pytest
import torch.distributed as dist

from quaterion import Quaterion
from quaterion.train.callbacks import RankFailureCallback
from quaterion.train.callbacks.failure_channel import FailureChannel
from tests.quaterion.train import helpers


@pytest.fixture()
def channels():
    """Rank 0 hosting a store and rank 1 connected to it, as two channels of one process."""
    host = dist.TCPStore("127.0.0.1", 0, None, True, timeout=timedelta(seconds=5))
    client = dist.TCPStore("127.0.0.1", host.port, None, False, timeout=timedelta(seconds=5))
    opened = [
        FailureChannel(store, rank, 2, poll_interval=0.02, ack_timeout=5.0, grace_period=None)
        for rank, store in enumerate((host, client))
    ]
    opened.append(host.port)
    del host, client  # the channels hold the only references: closing frees the port
    yield opened
    for channel in reversed(opened[:2]):
        channel.close()


def watchers() -> list:
    return [t for t in threading.enumerate() if t.name.startswith("quaterion-failure-watcher")]


@pytest.mark.parametrize("failing", [0, 1])
def test_first_post_reaches_the_other_rank_and_is_acknowledged(channels, failing):
    other = channels[1 - failing]
    start = time.monotonic()
    assert channels[failing].post(f"rank {failing} failed in train: ValueError: x") is None
    # the post returned on the other watcher's acknowledgement, well before ack_timeout
    assert time.monotonic() - start < channels[failing].ack_timeout
    assert other.other_failure == f"rank {failing} failed in train: ValueError: x"
    assert channels[failing].other_failure is None  # a rank never reports itself


def test_a_later_post_loses_and_gets_the_first_failure(channels):
    assert channels[1].post("rank 1 failed in validate: KeyError: 'a'") is None
    assert channels[0].post("rank 0 failed in train: RuntimeError: closed") == (
        "rank 1 failed in validate: KeyError: 'a'"
    )


def test_look_reads_the_store_without_waiting_for_the_watcher(channels):
    store = dist.TCPStore("127.0.0.1", channels[2], None, False, timeout=timedelta(seconds=5))
    slow = FailureChannel(store, 2, 3, poll_interval=60.0, ack_timeout=0.1, grace_period=None)
    try:
        channels[1].post("rank 1 failed in train: ValueError: y")
        assert slow.look() == "rank 1 failed in train: ValueError: y"
    finally:
        slow.close()


def test_close_is_idempotent_and_stops_the_watcher(channels):
    assert len(watchers()) == 2
    start = time.monotonic()
    for channel in (channels[1], channels[0]):
        channel.close()
        channel.close()
    # rank 0 did not wait ack_timeout: rank 1 had left
    assert time.monotonic() - start < channels[0].ack_timeout
    assert watchers() == []
    assert channels[1].post("rank 1 failed in train: late") is None  # nothing to post to


def test_single_process_fit_opens_no_store(monkeypatch):
    def no_store(*args, **kwargs):
        raise AssertionError("a single process must not open a TCPStore")

    monkeypatch.setattr(dist, "TCPStore", no_store)
    model, trainer = helpers.Model(), helpers.trainer()
    Quaterion.fit(model, trainer, helpers.group_loader())
    assert sum(isinstance(cb, RankFailureCallback) for cb in trainer.callbacks) == 1


def test_plain_trainer_fit_gets_the_callback_from_the_model():
    model, trainer = helpers.Model(), helpers.trainer()
    loader = helpers.group_loader()
    model.setup_dataloader(loader)
    trainer.fit(model, loader)
    assert sum(isinstance(cb, RankFailureCallback) for cb in trainer.callbacks) == 1
    own = RankFailureCallback(grace_period=None)
    trainer = helpers.trainer(callbacks=[own])
    trainer.fit(model, loader)
    assert [cb for cb in trainer.callbacks if isinstance(cb, RankFailureCallback)] == [own]
    assert own.other_failure is None and own.rank_failed_error() is None


def test_failure_posted_while_rank_zero_closes_is_noticed_and_the_port_freed(channels):
    closing = threading.Thread(target=channels[0].close)
    closing.start()  # rank 0 finished its fit and waits for rank 1 to leave
    start = time.monotonic()
    assert channels[1].post("rank 1 failed in train: OSError: disk full") is None
    assert time.monotonic() - start < channels[1].ack_timeout  # rank 0's last look acked it
    channels[1].close()
    closing.join(10)
    assert not closing.is_alive()
    assert channels[0].other_failure == "rank 1 failed in train: OSError: disk full"
    with socket.socket() as probe:  # the store is gone: its port can be taken again
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("", channels[2]))


class _Stage:
    stage, fn = None, None


class _TrainerStub:
    """What the callback reads of a trainer when it posts a failure."""

    state = _Stage()
    current_epoch = 0
    global_step = 3


def _callback_on(monkeypatch, channel) -> RankFailureCallback:
    """A callback whose set-up opens ``channel`` (one rank of the fixture's pair)."""
    monkeypatch.setattr(FailureChannel, "open", classmethod(lambda cls, **kwargs: channel))
    callback = RankFailureCallback(grace_period=None)
    callback.setup(_TrainerStub(), None, "fit")
    return callback


@pytest.mark.parametrize(
    "exception, posted",
    [(ValueError("bad row"), True), (KeyboardInterrupt(), False)],
)
def test_own_errors_are_posted_but_a_ctrl_c_is_not(monkeypatch, channels, exception, posted):
    callback = _callback_on(monkeypatch, channels[1])
    callback.on_exception(_TrainerStub(), None, exception)
    seen = channels[0].look()
    if posted:
        assert seen.startswith("rank ") and "ValueError: bad row" in seen
    else:  # every rank got the SIGINT: none of them is another rank's consequence
        assert seen is None
    assert callback.other_failure is None


def test_forget_clears_a_failure_an_earlier_fit_saw(monkeypatch, channels):
    channels[0].post("rank 0 failed in train: ValueError: x")
    callback = _callback_on(monkeypatch, channels[1])
    callback.on_exception(_TrainerStub(), None, RuntimeError("Connection closed by peer"))
    assert callback.other_failure == "rank 0 failed in train: ValueError: x"
    assert "rank 0 failed" in str(callback.rank_failed_error())
    callback.forget()
    assert callback.other_failure is None and callback.rank_failed_error() is None


def test_quaterion_fit_forgets_a_failure_of_an_earlier_fit(monkeypatch, channels):
    channels[0].post("rank 0 failed in train: ValueError: x")
    callback = _callback_on(monkeypatch, channels[1])
    callback.on_exception(_TrainerStub(), None, RuntimeError("Connection closed by peer"))
    monkeypatch.undo()  # the next fit is a single process: no channel at all
    model, trainer = helpers.Model(), helpers.trainer(callbacks=[callback])

    def broken_callbacks():  # fails inside trainer.fit, before any callback's setup
        raise LookupError("the next fit's own error")

    monkeypatch.setattr(model, "configure_callbacks", broken_callbacks)
    with pytest.raises(LookupError, match="the next fit's own error"):
        Quaterion.fit(model, trainer, helpers.group_loader())  # not the stale RankFailedError
    assert callback.other_failure is None
