"""Fixtures shared by the example tests: no network, one torch thread, a scratch working dir."""

import socket

import pytest
import torch


class NetworkAttempt(OSError):
    """Raised by the patched socket layer: a test tried to reach the network."""


@pytest.fixture
def no_network(monkeypatch):
    """Make every socket connection and host lookup fail; returns the list of attempts."""
    attempts = []

    def refuse(self, address, *args, **kwargs):
        attempts.append(address)
        raise NetworkAttempt(f"network access attempted in a test: {address!r}")

    def refuse_lookup(host, *args, **kwargs):
        attempts.append(host)
        raise NetworkAttempt(f"network lookup attempted in a test: {host!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse_lookup)
    return attempts


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """The examples' tests run on a small shared CPU: one intra-op thread avoids oversubscription."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """Run the example in an empty working directory (lightning_logs, caches, split files)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path
