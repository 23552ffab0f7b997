"""End-to-end fits under Lightning's DDP on 2 CPU processes (see ``ddp_fit_script``)."""

import os
import subprocess
import sys

import pytest
import torch

from quaterion import Quaterion
from quaterion_models import SimilarityModel
from tests.quaterion.distributed import ddp_fit_script as script
from tests.quaterion.train.helpers import (
    epoch_mean_of_defined_batches,
    naive_r_precision_counts,
    trainer,
)

# Two Lightning-launched processes doing four fits: about 25 s on an idle 2-core machine,
# over a minute on a shared one. .ci/run runs the slow distributed tests too.
pytestmark = pytest.mark.slow

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
STEPS_PER_EPOCH = script.TRAIN_SIZE // (script.WORLD * script.BATCH)


def run_module(module: str, *args: str, timeout: float = 300) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([REPO, os.environ.get("PYTHONPATH", "")])}
    env.pop("LOCAL_RANK", None)
    env.pop("PL_GLOBAL_SEED", None)  # it would seed the DistributedSampler: not the reference's
    completed = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-5000:]


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    run_module("tests.quaterion.distributed.ddp_fit_script", str(out))
    results = [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(script.WORLD)]
    return out, results


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The same training in one process, over batches of ``WORLD * BATCH`` rows."""
    model = script.group_model()
    fit_trainer = trainer(max_epochs=2)
    train, val = script.group_loaders(script.WORLD * script.BATCH, one_process_reference=True)
    Quaterion.fit(model, fit_trainer, train, val)
    path = tmp_path_factory.mktemp("reference") / "servable"
    model.save_servable(str(path))
    return path, {k: v.detach().clone() for k, v in fit_trainer.callback_metrics.items()}


def test_xbm_memory_is_identical_on_every_rank(ranks):
    _, results = ranks
    memories = [r["group"]["memories"] for r in results]
    assert len(memories[0]) == 2 * STEPS_PER_EPOCH - 1  # every step after start_iteration=0
    for step, (embeddings, groups) in enumerate(memories[0]):
        # the memory grows by the gathered batch of both ranks each step
        assert len(groups) == step * script.WORLD * script.BATCH
        for other in memories[1:]:
            assert torch.equal(other[step][0], embeddings)
            assert torch.equal(other[step][1], groups)


def test_epoch_values_are_reduced_across_ranks(ranks, reference):
    _, results = ranks
    _, reference_metrics = reference
    keys = ("validation_loss", "rrp_validation", "train_loss")
    for result in results[1:]:
        for key in keys:
            assert torch.equal(result["group"]["metrics"][key], results[0]["group"]["metrics"][key])
    # gathered negatives: the loss does not depend on the world size, only on the batch
    torch.testing.assert_close(
        results[0]["group"]["metrics"]["validation_loss"],
        reference_metrics["validation_loss"],
        rtol=1e-4,
        atol=1e-5,
    )


def test_servable_from_ddp_fit_encodes_like_one_process_fit(ranks, reference):
    out, results = ranks
    assert all(r["servable_seen_by_every_rank"] for r in results)
    ddp_model = SimilarityModel.load(str(out / "servable"))
    one_process = SimilarityModel.load(str(reference[0]))
    probes = script.probe_inputs()
    ddp_vectors = ddp_model.encode(probes, to_numpy=False)
    expected = one_process.encode(probes, to_numpy=False)
    assert not torch.allclose(expected, script.group_model().model.encode(probes, to_numpy=False))
    torch.testing.assert_close(ddp_vectors, expected, rtol=1e-4, atol=1e-5)


def test_resumed_ddp_run_continues_from_its_checkpoint(ranks):
    _, results = ranks
    for result in results:
        resume, first = result["resume"], result["group"]
        assert (resume["start_epoch"], resume["start_step"]) == (2, 2 * STEPS_PER_EPOCH)
        assert (resume["epoch"], resume["global_step"]) == (3, 3 * STEPS_PER_EPOCH)
        for name, weight in first["weights"].items():
            assert torch.equal(resume["start_weights"][name], weight), name


def test_ddp_run_resumed_inside_an_epoch_ends_like_the_uninterrupted_run(ranks):
    # the rest of the epoch replays the DistributedSampler's order, and the XBM memory is
    # restored: the weights equal those of scenario 1's fit, which was not stopped
    _, results = ranks
    for result in results:
        inside = result["resume_inside"]
        assert inside["warnings"] == []
        for name, weight in result["group"]["weights"].items():
            torch.testing.assert_close(inside["weights"][name], weight, rtol=1e-5, atol=1e-6)


def test_pair_loader_and_trainer_defaults_under_ddp(ranks):
    _, results = ranks
    for result in results:
        assert result["pairs"]["global_step"] == 16 // (script.WORLD * 2)
        assert result["defaults"]["global_step"] == 2 * STEPS_PER_EPOCH
        # the defaults' trainer trains exactly like the hand-built one
        torch.testing.assert_close(
            result["defaults"]["metrics"]["validation_loss"],
            result["group"]["metrics"]["validation_loss"],
        )


def test_batches_where_a_metric_is_undefined_are_left_out_on_every_rank(ranks):
    _, results = ranks
    batches = [batch for r in results for batch in r["undefined"]["batches"]]
    defined = [naive_r_precision_counts(e, g)[1] > 0 for e, g in batches]
    assert defined == [True, True, False, True]  # rank 0's two batches, then rank 1's
    expected = epoch_mean_of_defined_batches(batches)
    for result in results:
        logged = result["undefined"]["metrics"]["rrp_validation"]
        assert logged.item() == pytest.approx(expected, abs=1e-6)
