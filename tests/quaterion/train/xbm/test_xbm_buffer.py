import pytest
import torch

from quaterion.train.xbm import XbmConfig, XbmDevice
from quaterion.train.xbm.xbm_buffer import XbmBuffer


def _buffer(size=5, d=2):
    return XbmBuffer(XbmConfig(buffer_size=size, device=XbmDevice.CPU), embedding_size=d)


def _batch(start, b, d=2):
    values = torch.arange(start, start + b, dtype=torch.float32)
    return values[:, None].expand(b, d).clone(), torch.arange(start, start + b)


def _reference_queue(rows, p, full, batch, size):
    """Plain-list model of the spec's ring placement."""
    b = len(batch)
    if p + b < size:
        rows[p : p + b] = batch
        return rows, p + b, full
    if p + b == size:
        rows[size - b :] = batch
        return rows, 0, True
    e = p + b - size
    rows[p:] = batch[e:]
    rows[:e] = batch[:e]
    return rows, e, True


@pytest.mark.parametrize("batches", [[2, 2], [2, 3, 1], [3, 3, 4], [5], [4, 4, 4, 2], [1] * 7])
def test_queue_matches_reference_placement(batches):
    size = 5
    buffer = _buffer(size)
    rows, p, full, start = [0] * size, 0, False, 1
    for b in batches:
        emb, targets = _batch(start, b)
        buffer.queue(emb, targets)
        rows, p, full = _reference_queue(rows, p, full, list(range(start, start + b)), size)
        start += b
        assert buffer.p == p
        assert buffer.is_full == full
        expected = rows if full else rows[:p]
        got_emb, got_targets = buffer.get()
        assert got_targets.tolist() == expected
        assert got_emb[:, 0].tolist() == [float(v) for v in expected]
        assert got_emb.dtype == torch.float32 and got_targets.dtype == torch.long


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
