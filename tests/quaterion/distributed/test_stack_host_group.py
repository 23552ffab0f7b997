"""``stack_across_ranks`` sends a CPU tensor over the host (gloo) group when the default group
is NCCL only: NCCL cannot reduce CPU tensors. Checked in one process by recording the group
each ``all_reduce`` is given (a real NCCL group needs GPUs)."""

import torch
import torch.distributed as dist

from quaterion import distributed


def test_a_cpu_tensor_under_nccl_goes_over_the_host_group(monkeypatch):
    host = object()
    calls = []
    monkeypatch.setattr(distributed, "world_size", lambda: 2)
    monkeypatch.setattr(distributed, "global_rank", lambda: 1)
    monkeypatch.setattr(dist, "get_backend", lambda group=None: "nccl")
    monkeypatch.setattr(distributed, "_host_group", lambda: host)
    monkeypatch.setattr(dist, "all_reduce", lambda tensor, group=None: calls.append(group))
    stacked = distributed.stack_across_ranks(torch.tensor([3.0, 4.0]))
    assert calls == [host]
    # the reduce is recorded, not run: this rank's row is in place, the other is still zero
    torch.testing.assert_close(stacked, torch.tensor([[0.0, 0.0], [3.0, 4.0]]))
