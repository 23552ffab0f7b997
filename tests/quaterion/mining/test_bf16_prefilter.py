"""Exact mining through bf16 candidates (quaterion.mining.prefilter) against float32 mining.

The bf16 path is forced on any CPU (bf16 matrix products run everywhere, only slower without
bf16 units), on corpora large enough that candidates, not whole rows, are ranked.
"""

import pytest
import torch

import quaterion.mining.hard_negatives as hard_negatives
from quaterion.mining import mine_hard_negatives
from quaterion.mining import prefilter
from tests.quaterion.mining.naive import assert_same_negatives, cosine_matrix, naive_mine


@pytest.fixture
def bf16(monkeypatch):
    """Route mining through the bf16 prefilter; record which blocks it served."""
    monkeypatch.setattr(prefilter, "cpu_has_bf16_units", lambda: True)
    calls = []
    real = prefilter.BlockMiner.mine

    def mine(self, start, approx, *args):
        calls.append((start, approx.dtype))
        return real(self, start, approx, *args)

    monkeypatch.setattr(prefilter.BlockMiner, "mine", mine)
    return calls


def _latent(n, m, d=32, seed=0):
    """Queries and a corpus with low intrinsic dimension (many close scores at the top)."""
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(4, d, generator=g)
    corpus = torch.randn(m, 4, generator=g) @ mix + 0.3 * torch.randn(m, d, generator=g)
    queries = corpus[:n] + 0.3 * torch.randn(n, d, generator=g)
    return queries, corpus


CONTROLS = [
    {},
    {"range_min": 3},
    {"absolute_margin": 0.02},
    {"relative_margin": 0.05, "max_score": 0.97},
    {"sampling": "random", "range_max": 12, "seed": 3},
]


@pytest.mark.parametrize("controls", CONTROLS)
@pytest.mark.parametrize("distance", ["cosine", "dot_product"])
def test_pair_data_equals_the_naive_loop(bf16, controls, distance):
    queries, corpus = _latent(60, 900)
    positives = [[i] if i % 4 else [i, (7 * i) % 900] for i in range(60)]
    mined = mine_hard_negatives(queries, corpus, positives=positives, num_negatives=4,
                                distance=distance, block_size=16, show_progress=False,
                                **controls)  # fmt: skip
    assert bf16 and all(dtype == torch.bfloat16 for _, dtype in bf16)
    full = cosine_matrix(queries, corpus) if distance == "cosine" else queries @ corpus.T
    keys = None
    if controls.get("sampling") == "random":
        width = controls["range_max"]
        keys = torch.rand(60, width, generator=torch.Generator().manual_seed(3))
    expected = naive_mine(full.tolist(), [set(p) for p in positives], num_negatives=4,
                          keys=keys, **controls)  # fmt: skip
    # dot products reach ~10 here: float32 rounding of two summation orders is ~1e-6 of it
    atol = 1e-6 if distance == "cosine" else 1e-5 * float(full.abs().max())
    assert_same_negatives(mined, *expected, full, atol=atol)


@pytest.mark.parametrize("controls", [{}, {"range_min": 2, "max_score": 0.9}])
def test_group_data_equals_the_naive_loop(bf16, controls):
    _, items = _latent(1, 700, seed=1)
    groups = torch.arange(700) % 40  # groups of 17-18: many positives near the top
    mined = mine_hard_negatives(items, groups=groups, num_negatives=5, block_size=64,
                                show_progress=False, **controls)  # fmt: skip
    assert bf16
    full = cosine_matrix(items, items)
    members = [set(torch.nonzero(groups == groups[i]).flatten().tolist()) for i in range(700)]
    expected = naive_mine(full.tolist(), members, own=list(range(700)), num_negatives=5,
                          **controls)  # fmt: skip
    assert_same_negatives(mined, *expected, full)


def test_uncertified_rows_widen_then_score_in_float32(bf16, monkeypatch):
    """Near-duplicates crowd the top: first candidates cannot be certified, so rows are
    retried wider and finally scored against the whole corpus; the result stays exact."""
    widths = []
    real = prefilter.BlockMiner._select

    def select(self, start, rows, exact, cand, *args):
        widths.append(None if cand is None else cand.shape[1])
        return real(self, start, rows, exact, cand, *args)

    monkeypatch.setattr(prefilter.BlockMiner, "_select", select)
    queries, corpus = _latent(40, 1200, seed=2)
    g = torch.Generator().manual_seed(5)
    base = corpus[:3].repeat(200, 1) + 1e-3 * torch.randn(600, corpus.shape[1], generator=g)
    corpus = torch.cat([corpus, base])  # 600 near copies of three items
    queries[:20] = corpus[:20] + 1e-3 * torch.randn(20, corpus.shape[1], generator=g)
    positives = [[i] for i in range(40)]
    mined = mine_hard_negatives(queries, corpus, positives=positives, num_negatives=30,
                                block_size=8, show_progress=False)  # fmt: skip
    first = 30 + 1 + 1 + prefilter.FIRST_SLACK  # window, one positive, the own item, slack
    assert widths[0] == first and None in widths
    assert 4 * first in widths
    full = cosine_matrix(queries, corpus)
    expected = naive_mine(full.tolist(), [{i} for i in range(40)], num_negatives=30)
    assert_same_negatives(mined, *expected, full)


def test_a_kernel_beyond_its_bound_falls_back_to_float32(bf16, monkeypatch):
    monkeypatch.setattr(prefilter, "error_bound", lambda norms, *_: torch.zeros_like(norms))
    queries, corpus = _latent(30, 800, seed=3)
    common = dict(positives=list(range(30)), num_negatives=3, show_progress=False)
    mined = mine_hard_negatives(queries, corpus, **common)
    assert bf16  # tried, then redone in float32
    full = cosine_matrix(queries, corpus)
    expected = naive_mine(full.tolist(), [{i} for i in range(30)], num_negatives=3)
    assert_same_negatives(mined, *expected, full)


def test_error_bound_holds_for_the_bf16_product():
    """The stated bound against float64 on unit and non-unit rows."""
    g = torch.Generator().manual_seed(0)
    for scale in (1.0, 37.0):
        q = torch.randn(64, 128, generator=g) * scale
        c = torch.randn(3000, 128, generator=g)
        c[:10] = q[:10]  # scores at the top of the range
        approx = torch.mm(q.bfloat16(), c.bfloat16().T).double()
        exact = q.double() @ c.double().T
        c_max = float(c.double().norm(dim=1).max())
        bound = prefilter.error_bound(q.norm(dim=1), c_max, 128).double()
        assert ((approx - exact).abs() <= bound[:, None]).all()
        # and it is not vacuous: within 20x of the largest observed error
        assert bound.max() < 20 * (approx - exact).abs().max()


def test_not_used_where_it_cannot_help(monkeypatch):
    from quaterion.mining.options import MiningOptions
    from quaterion.mining.positives import GroupPositives, PairPositives

    monkeypatch.setattr(prefilter, "cpu_has_bf16_units", lambda: True)
    groups = GroupPositives(torch.zeros(3, dtype=torch.long), torch.zeros(3, dtype=torch.long))
    pairs = PairPositives.from_lists([[0, 1]] * 3, 3, 5)
    cpu = torch.device("cpu")
    assert prefilter.bf16_prefilter_applies(cpu, pairs, MiningOptions())
    assert prefilter.bf16_prefilter_applies(cpu, groups, MiningOptions())
    # a group's positive score needs its whole row
    assert not prefilter.bf16_prefilter_applies(cpu, groups, MiningOptions(absolute_margin=0.1))
    assert not prefilter.bf16_prefilter_applies(torch.device("meta"), pairs, MiningOptions())
    many = PairPositives.from_lists([list(range(prefilter.MAX_PAIR_POSITIVES + 1))], 1, 100)
    assert not prefilter.bf16_prefilter_applies(cpu, many, MiningOptions())
    assert hard_negatives.mine_hard_negatives is mine_hard_negatives


@pytest.mark.parametrize("k", [1, 7])
def test_two_pass_top_k_on_bf16_bits_orders_non_negative_scores(k):
    """The int16 view of bf16 scores ranks non-negative values like the floats."""
    from quaterion.mining.selection import top_k

    g = torch.Generator().manual_seed(k)
    scores = torch.randn(6, 64 * 50 + 5, generator=g).abs().bfloat16()
    scores[1, -2] = 9.0  # the best item in the tail past the last whole chunk
    values, columns = top_k(scores.view(torch.int16), k, prefilter.BITS_CHUNK)
    expected = torch.topk(scores.float(), k, dim=1)
    torch.testing.assert_close(values.view(torch.bfloat16).float(), expected.values)
    torch.testing.assert_close(scores.float().gather(1, columns), expected.values)


def test_widened_candidates_stay_within_the_float32_block_memory(bf16, monkeypatch):
    """A max_score that drops every query's top 15% leaves rows uncertified until their
    candidate lists are thousands wide; rescoring them must not allocate more than the float32
    path's block (rows x corpus floats), whatever the dimension."""
    g = torch.Generator().manual_seed(0)
    n, m, d = 200, 20000, 64
    queries = torch.nn.functional.normalize(torch.randn(n, d, generator=g) + 1.0, dim=1)
    corpus = torch.nn.functional.normalize(torch.randn(m, d, generator=g) + 1.0, dim=1)
    full = queries @ corpus.T
    controls = dict(positives=[[0]] * n, num_negatives=3, max_score=float(full.quantile(0.85)),
                    block_size=n, show_progress=False)  # fmt: skip
    activities = [torch.profiler.ProfilerActivity.CPU]
    with torch.profiler.profile(activities=activities, profile_memory=True) as profile:
        mined = mine_hard_negatives(queries, corpus, **controls)
    assert bf16
    largest = max(event.cpu_memory_usage for event in profile.events())
    assert largest <= n * m * 4, f"{largest} bytes at once, the float32 block is {n * m * 4}"
    monkeypatch.setattr(hard_negatives, "bf16_prefilter_applies", lambda *args: False)
    expected = mine_hard_negatives(queries, corpus, **controls)
    assert_same_negatives(mined, expected.indices, expected.scores, full)
