import pytest
import torch

from quaterion.train.xbm import XbmConfig, XbmDevice
from quaterion.train.xbm.xbm_buffer import XbmBuffer


def _buffer(size=5, d=2):
    return XbmBuffer(XbmConfig(buffer_size=size, device=XbmDevice.CPU), embedding_size=d)


def _batch(start, b, d=2):
    values = torch.arange(start, start + b, dtype=torch.float32)
    return values[:, None].expand(b, d).clone(), torch.arange(start, start + b)


class _NaiveRing:
    """Independent reference: a Python list written one item at a time at a wrapping pointer.

    The spec keeps upstream's placement of a batch that wraps past the end (``e = p + b - N``
    items over): the same as a plain ring fed with the batch rotated left by ``e``. (So the
    buffer does not always hold the newest ``N`` items: see the hand-worked case below.)
    """

    def __init__(self, size):
        self.slots = [None] * size
        self.pointer = 0
        self.wrapped = False

    def queue(self, items):
        over = max(0, self.pointer + len(items) - len(self.slots))
        for item in items[over:] + items[:over]:
            self.slots[self.pointer] = item
            self.pointer += 1
            if self.pointer == len(self.slots):
                self.pointer = 0
                self.wrapped = True

    def held(self):
        return self.slots if self.wrapped else self.slots[: self.pointer]


@pytest.mark.parametrize("batches", [[2, 2], [2, 3, 1], [3, 3, 4], [5], [4, 4, 4, 2], [1] * 7])
def test_queue_matches_a_naive_ring(batches):
    size = 5
    buffer = _buffer(size)
    ring, start = _NaiveRing(size), 1
    for b in batches:
        buffer.queue(*_batch(start, b))
        ring.queue(list(range(start, start + b)))
        start += b
        assert buffer.p == ring.pointer
        assert buffer.is_full == ring.wrapped
        got_emb, got_targets = buffer.get()
        assert got_targets.tolist() == ring.held()
        assert got_emb[:, 0].tolist() == [float(v) for v in ring.held()]
        assert got_emb.dtype == torch.float32 and got_targets.dtype == torch.long


def test_wrapping_batch_uses_upstreams_placement():
    """Hand-worked: N=5, p=3, batch [4..7] (b=4): e=2, rows 3..4 <- items 6, 7 and
    rows 0..1 <- items 4, 5; row 2 keeps item 3. The next batch [8..10] (p=2, b=3, p+b=N)
    fills rows 2..4, so items 4 and 5 outlive the newer 6 and 7."""
    buffer = _buffer(5)
    buffer.queue(*_batch(1, 3))
    buffer.queue(*_batch(4, 4))
    assert buffer.get()[1].tolist() == [4, 5, 3, 6, 7]
    assert buffer.p == 2 and buffer.is_full
    buffer.queue(*_batch(8, 3))
    assert buffer.get()[1].tolist() == [4, 5, 8, 9, 10]
    assert buffer.p == 0


def test_get_returns_clones():
    buffer = _buffer()
    buffer.queue(*_batch(1, 2))
    emb, targets = buffer.get()
    emb += 100
    targets += 100
    assert buffer.get()[1].tolist() == [1, 2]


def test_empty_buffer_gets_nothing():
    emb, targets = _buffer(d=3).get()
    assert emb.shape == (0, 3) and targets.shape == (0,)


def test_batch_larger_than_buffer_keeps_last_items():
    buffer = _buffer(size=3)
    buffer.queue(*_batch(1, 5))
    assert buffer.is_full
    assert sorted(buffer.get()[1].tolist()) == [3, 4, 5]


def test_buffer_follows_embeddings_device():
    buffer = XbmBuffer(XbmConfig(buffer_size=4, device=XbmDevice.AUTO), embedding_size=2)
    buffer.queue(*_batch(1, 2))
    assert buffer.embeddings.device == torch.device("cpu")
    assert buffer.to("cpu").device == torch.device("cpu")


def test_config_defaults_and_enum_formatting():
    config = XbmConfig()
    assert (config.weight, config.buffer_size, config.start_iteration) == (1.0, 10000, 1000)
    assert config.device is XbmDevice.AUTO
    assert f"{XbmDevice.CUDA}" == "cuda" and str(XbmDevice.CPU) == "cpu"
    assert XbmDevice("auto") is XbmDevice.AUTO and XbmDevice.CPU == "cpu"


def test_invalid_buffer_size():
    with pytest.raises(ValueError, match="buffer_size"):
        XbmBuffer(XbmConfig(buffer_size=0), embedding_size=2)


@pytest.mark.parametrize("batches", [[2, 2], [2, 3, 1], [3, 3, 4], [5], [4, 4, 4, 2]])
def test_masks_follow_their_rows_through_the_ring(batches):
    """Padded batches (every third item marked padding) queue their mask with their rows:
    ``valid_rows`` marks exactly the held items that were real, in ``get``'s order."""
    size = 5
    buffer = _buffer(size)
    ring, start = _NaiveRing(size), 1
    assert buffer.valid_rows() is None  # nothing padded was ever queued
    for b in batches:
        items = list(range(start, start + b))
        valid = torch.tensor([item % 3 != 0 for item in items])
        buffer.queue(*_batch(start, b), valid)
        ring.queue(items)
        start += b
        held = ring.held()
        assert buffer.get()[1].tolist() == held
        assert buffer.valid_rows().tolist() == [item % 3 != 0 for item in held]


def test_unpadded_batches_after_a_padded_one_are_all_real():
    buffer = _buffer(5)
    buffer.queue(*_batch(1, 2), torch.tensor([True, False]))
    buffer.queue(*_batch(3, 2))
    assert buffer.valid_rows().tolist() == [True, False, True, True]


def test_a_padded_batch_larger_than_the_buffer_keeps_the_last_masks():
    buffer = _buffer(size=3)
    buffer.queue(*_batch(1, 5), torch.tensor([True, True, False, True, False]))
    assert sorted(zip(buffer.get()[1].tolist(), buffer.valid_rows().tolist())) == [
        (3, False),
        (4, True),
        (5, False),
    ]


def test_rows_of_another_width_are_refused_before_anything_is_written():
    # the buffer is as wide as the head's declared output_size; a head whose output differs
    # failed with a bare broadcasting error, after writing part of the batch
    buffer = _buffer(size=5, d=2)
    buffer.queue(*_batch(0, 2))
    with pytest.raises(ValueError, match=r"output_size.*\(3, 4\)"):
        buffer.queue(torch.zeros(3, 4), torch.arange(3))
    with pytest.raises(ValueError, match="targets"):
        buffer.queue(torch.zeros(3, 2), torch.arange(2))
    embeddings, targets = buffer.get()
    torch.testing.assert_close(embeddings, _batch(0, 2)[0], rtol=0, atol=0)
    torch.testing.assert_close(targets, torch.arange(2), rtol=0, atol=0)


@pytest.mark.parametrize(
    "settings, error, words",
    [
        ({"buffer_size": None}, TypeError, "buffer_size must be an int"),
        ({"buffer_size": 2.7}, TypeError, "buffer_size must be an int"),
        ({"buffer_size": "100"}, TypeError, "buffer_size must be an int"),
        ({"buffer_size": True}, TypeError, "buffer_size must be an int"),
        ({"buffer_size": -5}, ValueError, "positive int"),
        ({"start_iteration": None}, TypeError, "start_iteration must be an int"),
        ({"start_iteration": 1.5}, TypeError, "start_iteration must be an int"),
        ({"weight": None}, TypeError, "weight must be a real number"),
        ({"weight": "1"}, TypeError, "weight must be a real number"),
        ({"weight": float("nan")}, ValueError, "weight must be finite"),
        ({"device": "tpu"}, ValueError, "device must be one of"),
    ],
)
def test_invalid_settings_are_refused_when_the_memory_is_made(settings, error, words):
    # XBM starts after start_iteration steps: a bad value must not wait until then
    with pytest.raises(error, match=words):
        XbmBuffer(XbmConfig(**settings), embedding_size=2)


def test_numpy_integers_and_plain_numbers_are_accepted():
    import numpy as np

    config = XbmConfig(weight=np.float32(0.5), buffer_size=np.int64(8), start_iteration=0)
    buffer = XbmBuffer(config, embedding_size=2)
    assert buffer.embeddings.shape == (8, 2)
    XbmBuffer(XbmConfig(weight=2, device="cpu"), embedding_size=2)
