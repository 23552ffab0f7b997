"""Extreme magnitudes and low-precision dtypes rank as the embeddings' exact distances do.

``ranking_inputs`` upcasts float16/bfloat16 and rescales by a power of two; the references
here are float64 loops over the hand-written distance formulas.
"""

import math

import pytest
import torch

from quaterion.distances import Distance
from quaterion.eval.blocks import ranking_inputs
from quaterion.eval.evaluator import Evaluator
from quaterion.eval.group import RetrievalRPrecision
from quaterion.eval.pair import RetrievalPrecision, RetrievalReciprocalRank
from quaterion.eval.samplers import GroupSampler
from quaterion.utils.testing import count_host_syncs
from tests.quaterion.eval import _naive


def naive_distances(embeddings: torch.Tensor, distance: Distance) -> torch.Tensor:
    """float64 ``(N, N)`` from the formulas, one entry at a time (no eps, no matmul)."""
    rows = embeddings.double().tolist()
    n = len(rows)
    out = torch.zeros(n, n, dtype=torch.float64)
    for i in range(n):
        for j in range(n):
            x, y = rows[i], rows[j]
            dot = sum(a * b for a, b in zip(x, y))
            if distance == Distance.COSINE:
                norms = math.sqrt(sum(a * a for a in x)) * math.sqrt(sum(b * b for b in y))
                out[i, j] = (1 - dot / norms) / 2
            elif distance == Distance.EUCLIDEAN:
                out[i, j] = math.sqrt(sum((a - b) ** 2 for a, b in zip(x, y)))
            elif distance == Distance.MANHATTAN:
                out[i, j] = sum(abs(a - b) for a, b in zip(x, y))
            else:
                out[i, j] = -dot
        out[i, i] = math.inf  # the own item ranks last
    return out


def metric_values(embeddings, groups, pairs, scores, distance):
    """``{name: (compute, step_compute)}`` of the three metrics."""
    subgroups = torch.zeros(embeddings.shape[0])
    pair_targets = {"labels": scores, "pairs": pairs, "subgroups": subgroups}
    out = {}
    for name, metric, targets in (
        ("r-precision", RetrievalRPrecision(distance), {"groups": groups}),
        ("precision@2", RetrievalPrecision(2, distance, reduce_func=None), pair_targets),
        ("reciprocal rank", RetrievalReciprocalRank(distance, reduce_func=None), pair_targets),
    ):
        out[name] = (
            metric.compute(embeddings, **targets),
            metric.step_compute(embeddings, **targets),
        )
    return out


def naive_values(embeddings, groups, pairs, scores, distance):
    dist = naive_distances(embeddings, distance)
    n = embeddings.shape[0]
    pair_labels = _naive.pair_labels(scores, pairs, n)
    return {
        "r-precision": torch.tensor(_naive.r_precision(dist, _naive.group_labels(groups))),
        "precision@2": torch.tensor(_naive.precision(dist, pair_labels, 2)),
        "reciprocal rank": torch.tensor(_naive.reciprocal_rank(dist, pair_labels)),
    }


def integer_problem(seed: int):
    """Integer coordinates (exact in every dtype used), 12 items in 3 groups / 6 pairs."""
    generator = torch.Generator().manual_seed(seed)
    embeddings = torch.randint(-6, 7, (12, 3), generator=generator).double()
    groups = torch.randint(0, 3, (12,), generator=generator)
    pairs = torch.randperm(12, generator=generator).reshape(6, 2)
    scores = torch.tensor([1.0, 1.0, 0.5, 0.0, 1.0, 1.0])
    return embeddings, groups, pairs, scores


@pytest.mark.parametrize(
    "exponent, dtype",
    [(66, torch.float32), (-84, torch.float32), (0, torch.float32), (600, torch.float64)]
    + [(-600, torch.float64)],
)
@pytest.mark.parametrize("distance", [Distance.EUCLIDEAN, Distance.MANHATTAN, Distance.DOT_PRODUCT])
def test_extreme_magnitudes_rank_as_the_exact_formulas(distance, exponent, dtype):
    # 2**66 * 6: squares and dot products exceed float32's range (3.4e38); 2**-84: they
    # fall below its smallest subnormal; 2**+-600 does the same in float64. Powers of two
    # keep the coordinates exact and the ranking of the unscaled integers (the reference).
    for seed in range(3):
        embeddings, groups, pairs, scores = integer_problem(seed)
        scaled = torch.ldexp(embeddings, torch.tensor(exponent)).to(dtype)
        expected = naive_values(embeddings, groups, pairs, scores, distance)
        for name, values in metric_values(scaled, groups, pairs, scores, distance).items():
            for value in values:
                torch.testing.assert_close(value, expected[name].float(), msg=name)


@pytest.mark.parametrize("exponent", [66, -84, -140])  # -140: float32 subnormal rows
def test_cosine_ranks_rows_of_any_scale_by_their_angles(seeded, exponent):
    embeddings = torch.randn(12, 4)
    groups = torch.randint(0, 3, (12,))
    pairs, scores = torch.randperm(12).reshape(6, 2), torch.ones(6)
    plain = metric_values(embeddings, groups, pairs, scores, Distance.COSINE)
    # each row at its own extreme scale: cosine is invariant to every row's scale
    row_scales = torch.ldexp(
        torch.ones(12, 1), torch.full((12, 1), exponent) + torch.arange(12)[:, None] % 3
    )
    scaled = embeddings * row_scales  # subnormal rows keep fewer bits: a nearby direction
    expected = naive_values(scaled, groups, pairs, scores, Distance.COSINE)
    for name, values in metric_values(scaled, groups, pairs, scores, Distance.COSINE).items():
        for value in values:
            torch.testing.assert_close(value, expected[name].float(), msg=name)
        if exponent > -126:  # normal floats: the scaling was exact, so are the values
            for value, reference in zip(values, plain[name]):
                torch.testing.assert_close(value, reference, rtol=0, atol=0, msg=name)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("distance", list(Distance))
def test_half_precision_embeddings_rank_by_their_exact_distances(seeded, dtype, distance):
    # float16 values near 300 in 64 dimensions: a float16 dot product (~ 300**2 * 64) is
    # far past 65504, and bfloat16 keeps 8 bits, so their own arithmetic ties everything
    base = torch.randn(4, 64).repeat_interleave(3, 0)
    embeddings = (300 * (base + 0.3 * torch.randn(12, 64))).to(dtype)
    groups = torch.arange(12) // 3
    pairs, scores = torch.arange(12).reshape(6, 2), torch.ones(6)
    expected = naive_values(embeddings, groups, pairs, scores, distance)
    for name, values in metric_values(embeddings, groups, pairs, scores, distance).items():
        for value in values:
            torch.testing.assert_close(value, expected[name].float(), msg=name)


def test_inputs_needing_no_scaling_are_returned_as_they_are():
    x, y = torch.randn(5, 3), torch.randn(4, 3)
    for distance in (Distance.COSINE, Distance.EUCLIDEAN):
        queries, candidates = ranking_inputs(Distance.get_by_name(distance), x, y)
        assert queries is x and candidates is y


def test_step_mode_scales_without_a_host_sync():
    x = torch.ldexp(torch.randn(6, 3), torch.tensor(70))
    with count_host_syncs() as syncs:
        (scaled,) = ranking_inputs(Distance.get_by_name("euclidean"), x, exact=False)
    assert syncs.total == 0
    ratio = x / scaled  # one power of two for every value: exact, same ranking
    assert torch.all(ratio == ratio[0, 0]) and math.log2(float(ratio[0, 0])).is_integer()
    assert 0.5 <= float(scaled.abs().max()) < 1


@pytest.mark.parametrize(
    "embeddings", [torch.ones(4, 2, dtype=torch.int64), torch.ones(4, 2, dtype=torch.complex64)]
)
def test_non_real_float_embeddings_are_refused_naming_the_dtype(embeddings):
    groups = torch.tensor([0, 0, 1, 1])
    for call in (RetrievalRPrecision().compute, RetrievalRPrecision().step_compute):
        with pytest.raises(TypeError, match=f"real floating-point tensor, got {embeddings.dtype}"):
            call(embeddings, groups=groups)


@pytest.mark.parametrize("distance", [Distance.DOT_PRODUCT, Distance.EUCLIDEAN])
def test_sampler_paths_rank_float16_embeddings_exactly(seeded, model3, distance):
    # a float16 model's embeddings, put in the sampler's accumulator (a filled accumulator
    # is reused as is until reset, eval.md 8.2)
    base = torch.randn(4, 64).repeat_interleave(3, 0)
    embeddings = (300 * (base + 0.3 * torch.randn(12, 64))).half()
    groups = torch.arange(12) // 3
    expected = naive_values(embeddings, groups, torch.zeros(0, 2), torch.zeros(0), distance)
    metric = RetrievalRPrecision(distance)
    sampler = GroupSampler(log_progress=False)
    for evaluate in (
        lambda: Evaluator(metric, sampler).evaluate([None], model3)["RetrievalRPrecision"],
        lambda: metric.raw_compute(*reversed(sampler.sample([None], metric, model3))),
    ):
        sampler.accumulator.update(embeddings, groups)
        sampler.accumulator.set_filled()
        torch.testing.assert_close(evaluate(), expected["r-precision"].float())
