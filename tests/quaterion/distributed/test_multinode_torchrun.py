"""Two "machines" on localhost: two torchrun launches (node ranks 0 and 1), one process each."""

import os
import sys

import pytest
import torch

from quaterion_models import SimilarityModel
from tests.quaterion.distributed import ddp_fit_script as script
from tests.quaterion.distributed._launch import free_port, start_script, wait_scripts
from tests.quaterion.distributed.test_ddp_fit import REPO

pytestmark = pytest.mark.slow
TIMEOUT_S = 480  # generous: a loaded 2-core CI machine runs two torchrun nodes of 2 ranks each


def launch_nodes(out, port: int, module: str = "multinode_script", args=()) -> list:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([REPO, os.environ.get("PYTHONPATH", "")]),
        "GLOO_SOCKET_IFNAME": "lo",
        "OMP_NUM_THREADS": "1",
    }
    env.pop("LOCAL_RANK", None)
    env.pop("PL_GLOBAL_SEED", None)  # it would seed the DistributedSampler
    processes = []
    for node_rank in (0, 1):
        command = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nnodes=2",
            "--nproc-per-node=1",
            f"--node-rank={node_rank}",
            "--master-addr=127.0.0.1",
            f"--master-port={port}",
            "-m",
            f"tests.quaterion.distributed.{module}",
            str(out),
            *args,
        ]
        processes.append(start_script(command, env, REPO))
    return processes


def wait_all(processes) -> list:
    return [(code, output) for code, output, _ in wait_scripts(processes, TIMEOUT_S)]


@pytest.fixture(scope="module")
def node_results(tmp_path_factory):
    out = tmp_path_factory.mktemp("nodes")
    for returncode, output in wait_all(launch_nodes(out, free_port())):
        assert returncode == 0, output[-6000:]
    return out, [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(2)]


def test_two_nodes_form_one_world_and_train_in_step(node_results):
    out, results = node_results
    assert [r["global_rank"] for r in results] == [0, 1]
    assert [r["node_rank"] for r in results] == [0, 1]
    assert all(r["world_size"] == 2 for r in results)
    steps = script.TRAIN_SIZE // (2 * script.BATCH)
    assert all(r["global_step"] == steps for r in results)
    for name, weight in results[0]["weights"].items():
        assert torch.equal(results[1]["weights"][name], weight), name
    assert torch.equal(results[0]["validation_loss"], results[1]["validation_loss"])
    for (emb0, groups0), (emb1, groups1) in zip(results[0]["memories"], results[1]["memories"]):
        assert torch.equal(emb0, emb1) and torch.equal(groups0, groups1)
    # XBM runs from step 1; the last step sees the gathered batches of steps 1 .. steps - 2
    assert len(results[0]["memories"][-1][1]) == (steps - 2) * 2 * script.BATCH


def test_servable_written_once_by_global_rank_zero(node_results):
    out, results = node_results
    loaded = SimilarityModel.load(str(out / "servable"))
    probes = script.probe_inputs()
    trained = script.group_model().model
    trained.load_state_dict(results[0]["weights"])
    torch.testing.assert_close(
        loaded.encode(probes, to_numpy=False), trained.encode(probes, to_numpy=False)
    )
