"""What every rank sees when one rank saves, exits or fails (2 spawned gloo ranks under
Lightning's DDP; see ``_rank_failure_cases``)."""

import json

import pytest
import torch

from quaterion_models import SimilarityModel
from tests.quaterion.distributed import _rank_failure_cases as cases
from tests.quaterion.distributed._launch import free_port, spawn_ranks

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
    out = tmp_path_factory.mktemp("failures")
    spawn_ranks(cases.run_rank, (free_port(), str(out)), world=cases.WORLD, timeout=300)
    per_rank = []
    for rank in range(cases.WORLD):
        lines = (out / f"rank{rank}.json").read_text().splitlines()
        per_rank.append({entry["scenario"]: entry for entry in map(json.loads, lines)})
    return out, per_rank


def probe_encodes(path) -> torch.Tensor:
    model = SimilarityModel.load(str(path))
    return model.encode([torch.ones(4), torch.arange(4.0)], to_numpy=False)


def test_save_on_rank_zero_only_does_not_wait_for_a_rank_that_goes_on(outcomes):
    out, per_rank = outcomes
    for rank in range(cases.WORLD):
        assert per_rank[rank]["save_on_rank_zero_then_fit_again"]["finished"], per_rank[rank]
    assert torch.isfinite(probe_encodes(out / "rank_zero_only")).all()


def test_save_on_every_rank_writes_on_rank_zero_only(outcomes):
    out, per_rank = outcomes
    got = [per_rank[rank]["save_on_every_rank"] for rank in range(cases.WORLD)]
    assert [outcome.get("wrote") for outcome in got] == [True, False], got
    assert (out / "every_rank" / "config.json").is_file()


def test_save_on_rank_zero_after_the_other_rank_exited(outcomes):
    out, per_rank = outcomes
    for rank in range(cases.WORLD):
        assert per_rank[rank]["save_on_rank_zero_after_rank_one_exited"]["finished"]
    assert torch.isfinite(probe_encodes(out / "after_exit")).all()


@pytest.mark.parametrize("scenario", ["nan_on_rank_one", "nan_on_rank_one_deferred"])
def test_nan_loss_on_one_rank_raises_the_same_error_on_every_rank(outcomes, scenario):
    out, per_rank = outcomes
    got = [per_rank[rank][scenario] for rank in range(cases.WORLD)]
    assert [outcome.get("error") for outcome in got] == ["NonFiniteLossError"] * 2, got
    assert got[0]["message"] == got[1]["message"]
    message = got[0]["message"]
    step = f"step {cases.NAN_BATCH} (batch {cases.NAN_BATCH})"
    for words in ("Training loss is nan on rank 1 of 2", f"epoch 0, {step}"):
        assert words in message, message
    # both ranks stopped at the same step, not one after a peer's connection closed
    assert abs(got[0]["at"] - got[1]["at"]) < 5


def test_nan_loss_on_one_rank_leaves_every_rank_with_the_same_finite_weights(outcomes):
    out, _ = outcomes
    for scenario_index in range(2):  # immediate, deferred
        weights = []
        for rank in range(cases.WORLD):
            lines = (out / f"weights{rank}.json").read_text().splitlines()
            weights.append(torch.tensor(sum(json.loads(lines[scenario_index])["weights"], [])))
        assert torch.isfinite(weights[0]).all()
        torch.testing.assert_close(weights[0], weights[1])


@pytest.mark.parametrize(
    "scenario, words",
    [
        (
            "iterable_of_unequal_lengths",
            "train loader of rank(s) [1] ends its epoch 0 with batch 3",
        ),
        ("sized_of_unequal_lengths", "train loaders have different lengths: [5, 4] batches"),
        (
            "iterable_validation_of_unequal_lengths",
            "validation loader of rank(s) [1] ends its epoch 0 with batch 3",
        ),
        (
            "sized_validation_of_unequal_lengths",
            "validation loaders have different lengths: [5, 4] batches",
        ),
    ],
)
def test_ranks_with_unequal_batch_counts_stop_together_with_the_counts(outcomes, scenario, words):
    # without the check, rank 1 "finished" its fit (its epoch-end collectives paired with
    # rank 0's step collectives) and rank 0 failed on the closed connection, or waited
    _, per_rank = outcomes
    got = [per_rank[rank][scenario] for rank in range(cases.WORLD)]
    assert [outcome.get("error") for outcome in got] == ["BatchCountMismatchError"] * 2, got
    assert got[0]["message"] == got[1]["message"]
    assert words in got[0]["message"], got[0]["message"]
    assert abs(got[0]["at"] - got[1]["at"]) < 5


def test_ranks_with_equal_batch_counts_of_an_iterable_dataset_train_through(outcomes):
    _, per_rank = outcomes
    for rank in range(cases.WORLD):
        outcome = per_rank[rank]["iterable_of_equal_lengths"]
        assert outcome["finished"] and outcome["global_step"] == 2 * 4, outcome
