"""A torchrun launch that outlives its time leaves no worker behind: the workers run in
sessions of their own, so stopping torchrun's process group alone would not reach them."""

import os
import subprocess
import sys
import time

import pytest

from tests.quaterion.distributed._launch import free_port, start_script, wait_scripts

pytestmark = pytest.mark.slow

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(__file__))))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:  # a zombie has ended; only its parent is late
        return stat.read().split(")")[-1].split()[0] != "Z"


def test_hung_torchrun_workers_are_stopped(tmp_path):
    env = {**os.environ, "PYTHONPATH": REPO, "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node=2",
        "--master-addr=127.0.0.1",
        f"--master-port={free_port()}",
        "-m",
        "tests.quaterion.distributed.hanging_worker_script",
        str(tmp_path),
    ]
    process = start_script(command, env, REPO)
    deadline = time.monotonic() + 60
    while len(list(tmp_path.glob("pid?"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    pids = [int(path.read_text()) for path in sorted(tmp_path.glob("pid?"))]
    assert len(pids) == 2, "the workers did not start"
    assert all(_alive(pid) for pid in pids)
    with pytest.raises(subprocess.TimeoutExpired):  # the run hangs
        wait_scripts([process], timeout_s=1)
    deadline = time.monotonic() + 15
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(_alive(pid) for pid in pids), "a worker outlived its torchrun"
