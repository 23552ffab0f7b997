"""2-rank fits whose ranks pass different batch sizes to a gathered loss, on the device
path of the gather (forced on CPU). Fewer rows than agreed on one rank (one bad batch, or
every rank's smaller last batch): the rows are padded and masked, the fit trains through
and ends with the weights of a one-process fit over the concatenated batches. More rows
than agreed: every rank stops with the same ``RankMismatchError`` within two batches of
the bad one, and no step from the bad one on was applied (SGD: the weights are those from
before the bad batch); rank 1 cannot send the layout, answers with stand-ins, and DDP's
gradient reduction still completes on both ranks."""

import pytest
import torch

from quaterion import Quaterion
from quaterion.loss import TripletLoss
from tests.quaterion.distributed import device_gather_fit_script as script
from tests.quaterion.distributed._launch import free_port
from tests.quaterion.distributed.test_multinode_torchrun import launch_nodes, wait_all
from tests.quaterion.train.helpers import Model, group_loader
from tests.quaterion.train.helpers import trainer as quiet_trainer

pytestmark = pytest.mark.slow


def run(tmp_path_factory, scenario: str) -> list:
    out = tmp_path_factory.mktemp(f"device_fit_{scenario}")
    launched = launch_nodes(out, free_port(), "device_gather_fit_script", (scenario,))
    outputs = wait_all(launched)
    found = []
    for rank, (_, output) in enumerate(outputs):
        path = out / f"rank{rank}.pt"
        assert path.is_file(), output[-6000:]
        found.append(torch.load(path, weights_only=False))
    return found


@pytest.fixture(scope="module", params=["more", "more_unchecked"])
def more(request, tmp_path_factory):
    # more_unchecked: the finite checks are off, the failed gather still stops every step
    return run(tmp_path_factory, request.param)


@pytest.fixture(scope="module", params=["fewer", "last_smaller"])
def trained(request, tmp_path_factory):
    return request.param, run(tmp_path_factory, request.param)


def one_process_fit(scenario: str) -> dict:
    """The reference: one process, batch k = rank 0's batch k then rank 1's batch k."""
    samples, batches, offset = [], [], 0
    for rank in range(2):
        sizes = script.BATCHES[scenario][rank]
        samples += script.samples_of(rank, scenario)
        for k, indices in enumerate(script.batches(sizes)):
            if rank == 0:
                batches.append([])
            batches[k] += [offset + i for i in indices]
        offset += sum(sizes)
    loader = group_loader(samples, batch_size=1, batch_sampler=batches)
    model = Model(loss=TripletLoss(mining="hard"), lr=script.LR)
    Quaterion.fit(model, quiet_trainer(), loader)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_fewer_rows_on_a_rank_train_through_like_one_process(trained):
    scenario, results = trained
    expected = one_process_fit(scenario)
    for rank, result in enumerate(results):
        assert result["type"] is None, (rank, result["message"])
        assert result["last_batch"] == len(script.BATCHES[scenario][rank]) - 1
        assert result["after"].keys() == expected.keys()
        for name, weight in result["after"].items():
            assert torch.isfinite(weight).all(), (rank, name)
            torch.testing.assert_close(weight, expected[name], rtol=1e-5, atol=1e-6)
        # the fit trained: the comparison above is not vacuous
        assert any(
            float((weight - result["initial"][name]).abs().max()) > 1e-3
            for name, weight in result["after"].items()
        ), rank


def test_more_rows_stop_every_rank_with_the_mismatch_not_the_nan(more):
    assert [r["type"] for r in more] == ["RankMismatchError"] * 2, more
    message = more[0]["message"]
    assert message == more[1]["message"]
    assert "gather_rows call 2 " in message  # the bad batch is the second gather
    assert "rank 0: 4 rows" in message and "rank 1: 6 rows, more than the 4 rows agreed" in message
    assert "reset_gathers()" in message
    # raised at the same batch on both ranks, within two batches: on CPU the deferred guard
    # reads the NaN loss's verdict at the next batch start and reports the gather's cause
    # (on a GPU it reads by age, and the gather's own check two calls later comes first)
    stopped = [r["last_batch"] for r in more]
    assert stopped[0] == stopped[1] and script.BAD_BATCH <= stopped[0] <= script.BAD_BATCH + 2


def test_no_step_from_the_bad_one_on_was_applied(more):
    for rank, result in enumerate(more):
        before, after = result["before_bad"], result["after"]
        assert before is not None and before.keys() == after.keys()
        for name, weight in after.items():
            assert torch.isfinite(weight).all(), (rank, name)
            torch.testing.assert_close(weight, before[name], rtol=0, atol=0)
        # the step before the bad one trained: the comparison above is not vacuous
        assert any(
            float((weight - result["initial"][name]).abs().max()) > 1e-6
            for name, weight in before.items()
        ), rank
