"""Crafted weight files for the persistence tests: a malicious pickle and a "saved on GPU" file."""

import contextlib
import pathlib
import threading
import zipfile
from collections.abc import Iterator

import torch


def plant_marker(path: str) -> None:
    """Side effect that a malicious pickle would trigger on load."""
    pathlib.Path(path).write_text("pwned")


class MarkerPayload:
    """Unpickling this object calls ``plant_marker(path)``."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return plant_marker, (self.path,)


def write_malicious_state_dict(weights_path, marker_path, state_dict: dict) -> None:
    """``torch.save`` a state dict that also carries a code-running payload."""
    torch.save({**state_dict, "payload": MarkerPayload(str(marker_path))}, weights_path)


def retag_storages(weights_path, location: str = "cuda:0") -> None:
    """Rewrite a ``torch.save`` zip so every storage is recorded on ``location`` (e.g. a GPU).

    ``torch.save`` pickles each storage's location as the string ``"cpu"``; a file written on
    a GPU holds ``"cuda:0"`` there instead. Only the pickled location string is changed.
    """
    old = b"X\x03\x00\x00\x00cpu"
    new = b"X" + len(location).to_bytes(4, "little") + location.encode()
    with zipfile.ZipFile(weights_path) as source:
        entries = [(info, source.read(info)) for info in source.infolist()]
    patched = 0
    with zipfile.ZipFile(weights_path, "w", compression=zipfile.ZIP_STORED) as target:
        for info, data in entries:
            if info.filename.endswith("data.pkl"):
                patched = data.count(old)
                data = data.replace(old, new)
            target.writestr(info, data)
    if patched == 0:
        raise AssertionError("no storage location found to retag")


@contextlib.contextmanager
def lock_held_by_another_thread(directory) -> Iterator[None]:
    """Hold the exclusive save lock of ``directory`` in another thread (a different flock
    holder, like another process) for the duration of the block."""
    from quaterion_models.utils import directory_swap

    holding, release = threading.Event(), threading.Event()

    def hold():
        with directory_swap.directory_lock(directory):
            holding.set()
            release.wait(30)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert holding.wait(30)
        yield
    finally:
        release.set()
        holder.join(30)
