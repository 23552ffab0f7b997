"""ServerBackend.optimize waits for the server's indexing for a bounded time."""

import time
from types import SimpleNamespace

import pytest
from qdrant_client import models

from quaterion_models.index.server import ServerBackend


class StatusClient:
    """Stands in for a QdrantClient whose collection reports ``statuses`` in turn (the last
    one from then on)."""

    def __init__(self, *statuses):
        self.statuses = list(statuses)
        self.updates = 0

    def update_collection(self, collection, optimizers_config=None):
        self.updates += 1

    def get_collection(self, collection):
        status = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
        return SimpleNamespace(status=status, optimizer_status="ok")


def test_optimize_returns_once_the_collection_is_green():
    yellow, green = models.CollectionStatus.YELLOW, models.CollectionStatus.GREEN
    client = StatusClient(yellow, yellow, green)
    ServerBackend(client, "c", False, "a stub", optimize_wait_s=30).optimize()
    assert client.statuses == [green]


def test_optimize_of_a_collection_that_stays_yellow_times_out_with_a_clear_error():
    client = StatusClient(models.CollectionStatus.YELLOW)
    backend = ServerBackend(client, "c", False, "a stub", optimize_wait_s=0.5)
    start = time.monotonic()
    with pytest.raises(TimeoutError, match="still indexes collection 'c' on a stub after 0.5 s"):
        backend.optimize()
    assert time.monotonic() - start < 10


def test_optimize_of_a_failed_collection_raises_at_once():
    client = StatusClient(models.CollectionStatus.RED)
    with pytest.raises(RuntimeError, match="failed to optimize"):
        ServerBackend(client, "c", False, "a stub", optimize_wait_s=30).optimize()
