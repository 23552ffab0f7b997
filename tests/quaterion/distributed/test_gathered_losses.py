"""Gathered negatives: 2 DDP ranks equal one process over the concatenated batch.

Scaling: the gather's backward sums, on each rank, every rank's gradient for that rank's
rows; DDP then averages parameter gradients over ranks. Together they give exactly the
gradient of the loss of the concatenated batch in one process, which is what is checked.
"""

import pytest
import torch

from quaterion.loss import MultipleNegativesRankingLoss, TripletLoss
from tests.quaterion.distributed import _gather_cases as cases
from tests.quaterion.distributed._launch import spawn_ranks


@pytest.fixture(scope="module")
def rank_results(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gather")
    spawn_ranks(cases.run_rank, (str(tmp / "store"), str(tmp)), world=2, timeout=180)
    return [torch.load(tmp / f"rank{r}.pt", weights_only=True) for r in range(2)]


@pytest.mark.parametrize("case", cases.CASES)
def test_two_ranks_equal_one_process_over_concatenated_batch(rank_results, case):
    expected = cases.single_process(case)
    assert expected["loss"].abs() > 0, "degenerate case: the loss should not be 0"
    for rank, results in enumerate(rank_results):
        got = results[case]
        torch.testing.assert_close(got["loss"], expected["loss"], rtol=1e-9, atol=1e-12)
        assert got["grads"].keys() == expected["grads"].keys()
        for name, grad in expected["grads"].items():
            assert grad.abs().sum() > 0, f"{case}: zero reference gradient for {name}"
            torch.testing.assert_close(
                got["grads"][name], grad, rtol=1e-7, atol=1e-10, msg=f"{case} rank {rank} {name}"
            )


def test_local_loss_differs_from_gathered_loss(rank_results):
    """Sanity check that the ranks really saw each other's rows: a rank's own shard alone
    gives another loss."""
    features, targets = cases.rank_batches("triplet_hard")[0]
    local = cases.Net("triplet_hard")(features, targets).detach()
    assert not torch.allclose(local, rank_results[0]["triplet_hard"]["loss"])


@pytest.mark.parametrize("case", cases.CASES)
def test_without_process_group_gathering_changes_nothing(case):
    features, targets = cases.concatenated_batch(case)
    net = cases.Net(case)
    gathered = net(features, targets)
    net.loss.gather_across_ranks = False
    plain = net(features, targets)
    assert torch.equal(gathered, plain)


def test_config_dict_round_trips_gather_flag():
    assert "gather_across_ranks" not in TripletLoss().get_config_dict()
    config = TripletLoss(margin=0.3, gather_across_ranks=True).get_config_dict()
    assert config["gather_across_ranks"] is True
    assert TripletLoss(**config).gather_across_ranks
    mnrl = MultipleNegativesRankingLoss(gather_across_ranks=True).get_config_dict()
    assert MultipleNegativesRankingLoss(**mnrl).gather_across_ranks
