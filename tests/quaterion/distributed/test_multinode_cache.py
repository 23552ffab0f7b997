"""The encoder cache on two "machines" (two torchrun launches) with node-local ``save_dir``."""

import json
import os
import shutil

import pytest

from tests.quaterion.distributed import multinode_cache_script as script
from tests.quaterion.distributed._launch import free_port
from tests.quaterion.train.cache.test_save_dir import lock_holder
from tests.quaterion.distributed.test_multinode_torchrun import launch_nodes, wait_all

pytestmark = pytest.mark.slow


def run_nodes(out, succeed: bool = True) -> list:
    for name in os.listdir(out):
        if name.endswith(".json"):
            os.remove(out / name)
    outputs = []
    for returncode, output in wait_all(launch_nodes(out, free_port(), "multinode_cache_script")):
        assert (returncode == 0) == succeed, output[-6000:]
        outputs.append(output)
    return [json.load(open(out / f"rank{rank}.json")) for rank in range(2)], outputs


def current_generation(save_dir) -> str:
    return os.readlink(os.path.join(save_dir, "current"))


def test_node_local_save_dirs_each_get_a_copy_and_are_reused(tmp_path):
    distinct = script.TRAIN + script.VAL  # every sample is a different object

    first, _ = run_nodes(tmp_path)
    # the fill is split across the nodes: each object is encoded once in total
    assert sum(r["calls"] for r in first) == distinct
    assert all(r["calls"] > 0 for r in first)
    # each node's disk holds a complete copy (node 1 cannot see what node 0 wrote)
    for node in (0, 1):
        assert os.path.isfile(tmp_path / f"node{node}" / "manifest.json")
        current_generation(tmp_path / f"node{node}")

    second, _ = run_nodes(tmp_path)
    assert [r["calls"] for r in second] == [0, 0]  # both nodes load their own copy

    # one node loses its copy: every rank fills again (no rank waits alone in a collective)
    kept = current_generation(tmp_path / "node0")
    shutil.rmtree(tmp_path / "node1")
    third, outputs = run_nodes(tmp_path)
    assert sum(r["calls"] for r in third) == distinct
    assert os.path.isfile(tmp_path / "node1" / "manifest.json")
    assert "loaded here, but not on rank(s) [1]" in outputs[0]
    assert current_generation(tmp_path / "node0") != kept  # rewritten by the new fill


def test_a_node_local_copy_in_use_by_another_process_stops_every_rank(tmp_path):
    """Node 1's own copy is locked: another process reads it (a shared hold), so node 1 may
    not rewrite it. Every rank stops, node 1 with CacheDirInUseError naming the holder."""
    holder = lock_holder(tmp_path / "node1", "shared")
    try:
        results, outputs = run_nodes(tmp_path, succeed=False)
    finally:
        holder.kill()
        holder.wait(30)
    assert results[1]["error"] == "CacheDirInUseError", results
    assert "(a reader of the cache)" in results[1]["message"]
    assert results[0]["error"] == "RankFailedError", results
    assert "rank 1: CacheDirInUseError" in results[0]["message"]
    assert not os.path.exists(tmp_path / "node1" / "manifest.json")  # left alone
    assert [r["calls"] for r in results] == [0, 0]  # stopped before the fill


def test_a_save_dir_every_node_shares_is_locked_once_and_filled_once(tmp_path, monkeypatch):
    monkeypatch.setenv("CACHE_DIR_MODE", "shared")
    first, _ = run_nodes(tmp_path)  # node 1 recognises rank 0's lock of the same directory
    assert sum(r["calls"] for r in first) == script.TRAIN + script.VAL
    assert os.path.isfile(tmp_path / "shared" / "manifest.json")
    second, _ = run_nodes(tmp_path)
    assert [r["calls"] for r in second] == [0, 0]
