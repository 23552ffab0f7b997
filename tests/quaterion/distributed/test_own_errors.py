"""An error one rank raises on its own (its step, a callback) stops every rank with a clear
error: 2 real processes per case (gloo on 127.0.0.1, joined by Lightning's DDP)."""

import json
import os
import sys
import time

import pytest

from tests.quaterion.distributed import own_error_script as script
from tests.quaterion.distributed._launch import free_port, start_script, wait_scripts
from tests.quaterion.distributed.test_ddp_fit import REPO

pytestmark = pytest.mark.slow
TIMEOUT_S = 240  # a whole case, on a loaded 2-core machine
BOUND_S = 20  # every rank stops within this of the failure (the collective timeout is 90 s)


def run_case(case: str, out) -> list:
    """Start both ranks; ``[(exit status, output, seconds alive)]`` per rank."""
    port = free_port()
    processes, started = [], time.monotonic()
    for rank in range(2):
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([REPO, os.environ.get("PYTHONPATH", "")]),
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
            "WORLD_SIZE": "2",
            "NODE_RANK": "0",
            "LOCAL_RANK": str(rank),
            "GLOO_SOCKET_IFNAME": "lo",
            "OMP_NUM_THREADS": "1",
        }
        env.pop("PL_GLOBAL_SEED", None)
        command = [sys.executable, "-m", script.__name__, case, str(out)]
        processes.append(start_script(command, env, REPO))
    return [
        (code, output, finished - started)
        for code, output, finished in wait_scripts(processes, TIMEOUT_S)
    ]


def recorded(out, rank: int) -> dict:
    path = out / f"rank{rank}.json"
    return json.loads(path.read_text()) if path.is_file() else {}


@pytest.mark.parametrize(
    "case",
    [
        "training_step_rank1",
        "training_step_rank0",
        "validation_step_rank1",
        "callback_rank1",
        "callback_setup_rank1",
        "cache_fill_rank1",
    ],
)
def test_own_error_on_one_rank_stops_every_rank_with_its_message(tmp_path, case):
    failing, where, _ = script.CASES[case]
    where = "a callback" if where.startswith("callback") else where
    message = script.MESSAGE.format(where=where, rank=failing)
    results = run_case(case, tmp_path)
    got = [recorded(tmp_path, rank) for rank in range(2)]
    for rank, (status, output, _) in enumerate(results):
        assert status != 0, output[-4000:]
        assert got[rank], output[-4000:]
    other = 1 - failing
    assert got[failing]["type"] == "ValueError" and got[failing]["message"] == message, got
    assert got[other]["type"] == "RankFailedError", (got, results[other][1][-4000:])
    stage = "the encoder cache fill (epoch 0" if where == "cache fill" else ""
    for words in (
        f"rank {failing} failed in {stage}",
        f"ValueError: {message}",
        f"rank {other} stops",
    ):
        assert words in got[other]["message"], got[other]["message"]
    assert abs(got[0]["at"] - got[1]["at"]) < BOUND_S, got


def test_plain_trainer_fit_prints_the_failing_rank_on_every_rank(tmp_path):
    results = run_case("trainer_fit_rank1", tmp_path)
    assert [status != 0 for status, _, _ in results] == [True, True], results
    message = script.MESSAGE.format(where="training_step", rank=1)
    # rank 0 stops with the backend's error, after printing what happened on rank 1
    line = f"RankFailedError: rank 1 failed in train (epoch 0, global step {script.FAIL_BATCH})"
    assert line in results[0][1], results[0][1][-4000:]
    assert f"ValueError: {message}" in results[0][1]
    assert recorded(tmp_path, 1)["message"] == message


def test_rank_blocked_after_another_rank_failed_ends_after_the_grace_period(tmp_path):
    results = run_case("hung_rank1", tmp_path)
    status, output, alive = results[0]
    assert status == 1, output[-4000:]
    assert "rank 1 failed in train" in output and "its process ends now" in output, output[-4000:]
    failed_at = recorded(tmp_path, 1)["at"]
    # rank 0 never returned from its collective: it was ended by the watcher, not the timeout
    assert not recorded(tmp_path, 0)
    assert alive < results[1][2], (alive, results[1][2])  # before rank 1 stopped sleeping
    assert failed_at > 0
