"""DISK fill joined across 2 real gloo processes: a rank file rank 0 cannot read, or one
cut short, is the same clear error on both ranks, within seconds."""

import json
import os
import socket
import subprocess
import sys

import pytest
import torch

from tests.quaterion.train.helpers import IN_DIM, CountingEncoder

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(__file__)))))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _run(tmp_path, mode):
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": ROOT}
    command = [sys.executable, "-m", "tests.quaterion.train.cache.disk_gather_ranks"]
    outs = [tmp_path / f"rank{rank}.json" for rank in range(2)]
    processes = [
        subprocess.Popen(
            command + [str(rank), str(port), str(tmp_path), mode, str(outs[rank])],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for rank in range(2)
    ]
    try:
        logs = [process.communicate(timeout=200)[0] for process in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
    assert [p.returncode for p in processes] == [0, 0], logs
    return [json.load(open(out)) for out in outs]


@pytest.mark.parametrize(
    "mode, message",
    [
        ("node_local", "rank 0 cannot read the rows the other ranks wrote"),
        ("truncated", "rank 0 cannot read the rows the other ranks wrote"),
    ],
)
def test_unreadable_rank_file_is_the_same_error_on_every_rank(tmp_path, mode, message):
    ranks = _run(tmp_path, mode)
    assert all("error" in rank for rank in ranks), ranks
    assert ranks[0]["error"] == ranks[1]["error"]
    assert message in ranks[0]["error"] and "rank1.rows" in ranks[0]["error"]


def test_shared_save_dir_joins_both_ranks_rows(tmp_path):
    ranks = _run(tmp_path, "shared")
    assert ranks[0] == ranks[1]
    encoder = CountingEncoder()
    expected = torch.cat(
        [
            encoder(torch.randn(4, IN_DIM, generator=torch.Generator().manual_seed(rank)))
            for rank in range(2)
        ]
    ).detach()
    assert ranks[0]["keys"] == [0, 1, 2, 3, 10, 11, 12, 13]
    torch.testing.assert_close(torch.tensor(ranks[0]["rows"]), expected)
