"""Gradient cache with 2 DDP ranks gathering negatives: every rank ends with the gradient of
one process training on both ranks' records at once, without the cache."""

import pytest
import torch

from quaterion import Quaterion
from tests.quaterion.distributed import gradient_cache_script as script
from tests.quaterion.distributed.test_ddp_fit import run_module
from tests.quaterion.train import gradient_cache_helpers as h
from tests.quaterion.train.helpers import trainer

# Two Lightning-launched processes doing five one-step fits; .ci/run runs slow tests too.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("gradient_cache_ddp")
    run_module("tests.quaterion.distributed.gradient_cache_script", str(out), timeout=400)
    return [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(script.WORLD)]


@pytest.mark.parametrize("case", script.CASES)
def test_each_rank_gets_the_full_batch_gradient(ranks, case):
    reference = script.model_for(case, None)
    Quaterion.fit(reference, trainer(max_steps=1), script.loader_for(case, reference=True))
    expected = h.grads_of(reference)
    for rank, results in enumerate(ranks):
        assert results[case].keys() == expected.keys(), f"rank {rank}"
        h.assert_same_grads(results[case], expected, 1e-10)


def test_leaves_outside_the_parameters_get_what_plain_ddp_gives_them(ranks):
    for results in ranks:
        plain, cached = results["leaves"]["plain"], results["leaves"]["cached"]
        assert {name for name in plain if name.startswith("outside.")} == {
            "outside.scale",
            "outside.shift",
            "outside.hidden.weight",
            "outside.hidden.bias",
        }
        h.assert_same_grads(cached, plain, 1e-10)
