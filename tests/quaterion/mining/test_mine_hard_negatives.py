"""mine_hard_negatives against a naive loop over the full similarity matrix."""

import math

import numpy as np
import pytest
import torch

from quaterion.mining import MinedNegatives, mine_hard_negatives, mine_pair_negatives
from quaterion.dataset import SimilarityPairSample
from tests.quaterion.mining.naive import assert_same_negatives, cosine_matrix, naive_mine

CONTROLS = [
    {},
    {"range_min": 2},
    {"range_min": 1, "range_max": 6},
    {"absolute_margin": 0.05},
    {"absolute_margin": 0.0},
    {"relative_margin": 0.1},
    {"max_score": 0.4, "min_score": -0.2},
    {"range_min": 1, "relative_margin": 0.05, "absolute_margin": -0.1},
]


def _data(n=37, m=53, d=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g), torch.randn(m, d, generator=g)


def _pair_positives(n, m, seed=1):
    g = torch.Generator().manual_seed(seed)
    first = torch.randint(0, m, (n,), generator=g).tolist()
    second = torch.randint(0, m, (n,), generator=g).tolist()
    # every third query has two positives
    return [[a, b] if i % 3 == 0 else [a] for i, (a, b) in enumerate(zip(first, second))]


def _check(mined, expected_idx, expected_scores, reference):
    assert_same_negatives(mined, expected_idx, expected_scores, reference)
    assert torch.isneginf(mined.scores[expected_idx < 0]).all()


@pytest.mark.parametrize("controls", CONTROLS)
@pytest.mark.parametrize("block_size", [None, 5])
def test_pair_data_matches_naive_loop(controls, block_size):
    queries, corpus = _data()
    positives = _pair_positives(len(queries), len(corpus))
    mined = mine_hard_negatives(
        queries,
        corpus,
        positives=positives,
        num_negatives=4,
        block_size=block_size,
        show_progress=False,
        **controls,
    )
    full = cosine_matrix(queries, corpus).tolist()
    expected = naive_mine(full, [set(p) for p in positives], num_negatives=4, **controls)
    _check(mined, *expected, full)
    if controls.get("absolute_margin") is not None or controls.get("relative_margin") is not None:
        want = torch.tensor([min(full[i][j] for j in p) for i, p in enumerate(positives)])
        torch.testing.assert_close(mined.positive_scores, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("controls", CONTROLS)
def test_group_data_matches_naive_loop(controls):
    items, _ = _data(n=41)
    groups = torch.arange(41) % 6
    groups[40] = 99  # a singleton group: no positive, so no margin applies
    mined = mine_hard_negatives(
        items, groups=groups, num_negatives=3, block_size=7, show_progress=False, **controls
    )
    full = cosine_matrix(items, items).tolist()
    members = [{j for j in range(41) if groups[j] == groups[i]} for i in range(41)]
    expected = naive_mine(full, members, own=list(range(41)), num_negatives=3, **controls)
    _check(mined, *expected, full)
    assert torch.equal(mined.groups, groups)
    own_or_group = (mined.indices >= 0) & (groups[mined.indices.clamp(min=0)] == groups[:, None])
    assert not own_or_group.any()


@pytest.mark.parametrize("distance", ["dot_product", "euclidean", "manhattan"])
def test_other_distances_use_their_similarity_scale(distance):
    queries, corpus = _data(n=20, m=30)
    positives = [[i] for i in range(20)]
    mined = mine_hard_negatives(
        queries,
        corpus,
        positives=positives,
        distance=distance,
        num_negatives=3,
        relative_margin=0.02,
        show_progress=False,
    )
    if distance == "dot_product":
        full = queries @ corpus.T
    else:
        p = 2 if distance == "euclidean" else 1
        diff = queries[:, None, :] - corpus[None, :, :]
        full = 1 / (1 + diff.abs().pow(p).sum(-1).pow(1 / p))
    expected = naive_mine(
        full.tolist(), [set(p) for p in positives], num_negatives=3, relative_margin=0.02
    )
    _check(mined, *expected, full)


@pytest.mark.parametrize("extra", [{}, {"range_min": 2, "range_max": 12, "max_score": 0.5}])
def test_random_sampling_matches_naive_draw_and_is_seeded(extra):
    queries, corpus = _data()
    positives = [[i] for i in range(len(queries))]
    kwargs = dict(
        positives=positives, num_negatives=3, sampling="random", show_progress=False, **extra
    )
    kwargs.setdefault("range_max", 10)
    first = mine_hard_negatives(queries, corpus, seed=7, block_size=4, **kwargs)
    again = mine_hard_negatives(queries, corpus, seed=7, **kwargs)
    other = mine_hard_negatives(queries, corpus, seed=8, **kwargs)
    assert torch.equal(first.indices, again.indices)
    assert not torch.equal(first.indices, other.indices)
    width = kwargs["range_max"] - kwargs.get("range_min", 0)
    keys = torch.rand(len(queries), width, generator=torch.Generator().manual_seed(7))
    full = cosine_matrix(queries, corpus).tolist()
    ctrl = {k: v for k, v in kwargs.items() if k in ("range_min", "range_max", "max_score")}
    expected = naive_mine(
        full,
        [set(p) for p in positives],
        num_negatives=3,
        sampling="random",
        keys=keys.tolist(),
        **ctrl,
    )
    _check(first, *expected, full)


def test_random_sampling_covers_the_window_uniformly():
    queries, corpus = _data(n=1, m=30)
    top = mine_hard_negatives(
        queries, corpus, positives=[[0]], num_negatives=6, show_progress=False
    )
    window = set(top.indices[0].tolist())
    counts = dict.fromkeys(window, 0)
    for seed in range(300):
        drawn = mine_hard_negatives(
            queries,
            corpus,
            positives=[[0]],
            num_negatives=2,
            range_max=6,
            sampling="random",
            seed=seed,
            show_progress=False,
        )
        assert set(drawn.indices[0].tolist()) <= window
        assert drawn.scores[0, 0] >= drawn.scores[0, 1]
        for j in drawn.indices[0].tolist():
            counts[j] += 1
    # each of 6 slots is drawn with probability 1/3: 100 of 300 expected, sd about 8
    assert all(60 < c < 140 for c in counts.values()), counts


def test_too_few_survivors_pad_with_minus_one():
    queries, corpus = _data(n=4, m=5)
    mined = mine_hard_negatives(
        queries, corpus, positives=[[0, 1], [1], [2], [3]], num_negatives=4, show_progress=False
    )
    assert (mined.indices[0] == -1).sum() == 1 and mined.missing == 1
    assert torch.isneginf(mined.scores[0, -1])


def test_pair_samples_and_mine_pair_negatives():
    queries, corpus = _data(n=10, m=10)
    pairs = [SimilarityPairSample(f"a{i}", f"b{i}", 1.0, subgroup=i % 2) for i in range(10)]
    pairs.append(SimilarityPairSample("a0", "b_extra", 1.0))  # a second positive of "a0"
    corpus_ext = torch.cat([corpus, torch.randn(1, 6)])
    anchors = torch.cat([queries, queries[:1]])
    negatives = mine_pair_negatives(
        pairs,
        anchor_embeddings=anchors,
        positive_embeddings=corpus_ext,
        num_negatives=2,
        show_progress=False,
    )
    mined = mine_hard_negatives(
        anchors,
        corpus_ext,
        positives=[[i, 10] if i in (0, 10) else [i] for i in range(11)],
        num_negatives=2,
        show_progress=False,
    )
    objects_b = [p.obj_b for p in pairs]
    expected = [
        (pairs[i].obj_a, objects_b[j], pairs[i].subgroup)
        for i in range(11)
        for j in mined.indices[i].tolist()
    ]
    assert [(s.obj_a, s.obj_b, s.subgroup) for s in negatives] == expected
    assert all(s.score == 0.0 for s in negatives)
    assert all(s.obj_b not in ("b0", "b_extra") for s in negatives if s.obj_a == "a0")


def test_mine_pair_negatives_names_bad_input():
    queries, corpus = _data(n=4, m=4)
    negatives_only = [SimilarityPairSample(f"a{i}", f"b{i}", 0.0) for i in range(4)]
    kwargs = {"anchor_embeddings": queries, "positive_embeddings": corpus, "show_progress": False}
    with pytest.raises(ValueError, match="no pair has a score > 0"):
        mine_pair_negatives(negatives_only, **kwargs)
    pairs = [SimilarityPairSample(f"a{i}", f"b{i}", 1.0) for i in range(4)]
    with pytest.raises(ValueError, match="3 positive_embeddings for 4 pairs"):
        mine_pair_negatives(pairs, **(kwargs | {"positive_embeddings": corpus[:3]}))


def test_pair_samples_name_a_corpus_too_short():
    mined = MinedNegatives(torch.tensor([[2, -1], [0, 1]]), torch.zeros(2, 2))
    assert [(s.obj_a, s.obj_b) for s in mined.pair_samples(["q0", "q1"], ["c0", "c1", "c2"])] == [
        ("q0", "c2"),
        ("q1", "c0"),
        ("q1", "c1"),
    ]
    with pytest.raises(ValueError, match="index 2 but the corpus has 2 objects"):
        mined.pair_samples(["q0", "q1"], ["c0", "c1"])


class _Encoder:
    """Stands in for a SimilarityModel: embeddings looked up by object."""

    def __init__(self, table):
        self.table = table
        self.calls = 0

    def encode(self, objects, batch_size=32, to_numpy=True):
        self.calls += 1
        return torch.stack([self.table[o] for o in objects])


def test_objects_are_encoded_with_the_model():
    queries, corpus = _data(n=8, m=9)
    table = {f"q{i}": v for i, v in enumerate(queries)} | {f"c{i}": v for i, v in enumerate(corpus)}
    model = _Encoder(table)
    by_objects = mine_hard_negatives(
        [f"q{i}" for i in range(8)],
        [f"c{i}" for i in range(9)],
        positives=list(range(8)),
        model=model,
        show_progress=False,
    )
    by_vectors = mine_hard_negatives(queries, corpus, positives=list(range(8)), show_progress=False)
    assert torch.equal(by_objects.indices, by_vectors.indices) and model.calls == 2


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"num_negatives": 0}, ValueError, "num_negatives"),
        ({"range_min": 3, "range_max": 4}, ValueError, "rank window"),
        ({"sampling": "best"}, ValueError, "sampling"),
        ({"relative_margin": float("nan")}, ValueError, "finite"),
        ({"positives": None}, ValueError, "exactly one of"),
        ({"positives": [[99]] * 5}, ValueError, "corpus indices"),
        ({"positives": [0] * 4}, ValueError, "one corpus index"),
        ({"block_size": 0}, ValueError, "block_size"),
        ({"positives": [0.0] * 5}, TypeError, r"positives\[0\] must be a corpus index"),
        ({"positives": ["3"] * 5}, TypeError, r"positives\[0\] must be a corpus index"),
    ],
)
def test_bad_input_is_named(kwargs, error, match):
    queries, corpus = _data(n=5, m=6)
    call = {"positives": [0] * 5, "show_progress": False} | kwargs
    with pytest.raises(error, match=match):
        mine_hard_negatives(queries, corpus, **call)


def test_positives_as_arrays_and_tensors_equal_lists():
    queries, corpus = _data(n=5, m=6)
    lists = [[0], [1, 2], [3], [4], [5]]
    forms = [
        np.array([[0], [1], [3], [4], [5]]),  # one positive per row, as 1-element rows
        [np.array(row) for row in lists],
        [torch.tensor(row) for row in lists],
    ]
    expected = [[0], [1], [3], [4], [5]], lists, lists
    for given, plain in zip(forms, expected):
        via_arrays = mine_hard_negatives(queries, corpus, positives=given, show_progress=False)
        via_lists = mine_hard_negatives(queries, corpus, positives=plain, show_progress=False)
        assert via_arrays.indices.tolist() == via_lists.indices.tolist()


def test_bad_embeddings_are_named():
    queries, corpus = _data(n=5, m=6)
    queries[2, 0] = math.nan
    with pytest.raises(ValueError, match="NaN"):
        mine_hard_negatives(queries, corpus, positives=[0] * 5, show_progress=False)
    with pytest.raises(TypeError, match="model=..."):
        mine_hard_negatives(["a"] * 5, corpus, positives=[0] * 5, show_progress=False)
    with pytest.raises(ValueError, match="dim"):
        mine_hard_negatives(corpus[:5, :3], corpus, positives=[0] * 5, show_progress=False)
    assert isinstance(
        MinedNegatives(torch.zeros(1, 1, dtype=torch.long), torch.zeros(1, 1)).missing, int
    )


@pytest.mark.parametrize("length", [32 * 40, 32 * 40 + 7, 50])
@pytest.mark.parametrize("k", [1, 5])
def test_two_pass_top_k_equals_torch_topk(length, k):
    from quaterion.mining.selection import top_k

    g = torch.Generator().manual_seed(length + k)
    scores = torch.randn(9, length, generator=g)
    scores[0, :] = float("-inf")
    scores[1, ::3] = float("-inf")
    scores[2, -3:] = torch.tensor([10.0, 12.0, 11.0])  # best items in the last columns (the tail)
    values, columns = top_k(scores, k)
    expected = torch.topk(scores, k, dim=1)
    torch.testing.assert_close(values, expected.values)
    finite = torch.isfinite(expected.values)
    assert torch.equal(columns[finite], expected.indices[finite])
    torch.testing.assert_close(scores.gather(1, columns), values)


class _Cube:
    """A model whose inputs are tensors: encodes ``x`` to ``x ** 3``."""

    def encode(self, objects, batch_size=32, to_numpy=True):
        return torch.stack(objects) ** 3


def test_tensor_objects_are_encoded_when_a_model_is_given():
    queries, corpus = _data(n=20, m=40)
    common = dict(positives=list(range(20)), num_negatives=3, show_progress=False)
    encoded = mine_hard_negatives(queries, corpus, model=_Cube(), **common)
    expected = mine_hard_negatives(queries**3, corpus**3, **common)
    raw = mine_hard_negatives(queries, corpus, **common)
    assert torch.equal(encoded.indices, expected.indices)
    assert not torch.equal(encoded.indices, raw.indices)


@pytest.mark.parametrize(
    "groups, error, match",
    [
        (["a", "b", "a", "b", "c"], TypeError, "integer group ids.*numpy.unique"),
        ([None, 1, 2, 3, 4], TypeError, "integer group ids"),
        ([0.0, 1.0, 0.0, 1.0, 2.0], TypeError, "integer group ids"),
        ([True, False, True, False, True], TypeError, "integer group ids"),
        ([], ValueError, "one group id per item"),
    ],
)
def test_group_ids_that_are_not_integers_are_named(groups, error, match):
    """String labels failed inside torch ("can't convert np.ndarray of type numpy.str_")."""
    queries, _ = _data(n=5, m=6)
    with pytest.raises(error, match=match):
        mine_hard_negatives(queries, groups=groups, show_progress=False)
    labels = np.array(["a", "b", "a", "b", "c"])
    as_ints = np.unique(labels, return_inverse=True)[1]  # the fix the message names
    mined = mine_hard_negatives(queries, groups=as_ints, num_negatives=2, show_progress=False)
    scores = cosine_matrix(queries, queries)
    for row, picked in enumerate(mined.indices.tolist()):
        allowed = [j for j in range(5) if labels[j] != labels[row]]
        expected = sorted(allowed, key=lambda j: -float(scores[row, j]))[:2]
        assert picked == expected


def test_random_window_larger_than_the_corpus_costs_only_the_corpus():
    """range_max far past the corpus drew (n, range_max) random keys: 2**40 of them per query
    failed in the allocator (smaller ones could exhaust memory)."""
    queries, _ = _data(n=5, m=6)
    groups = [0, 1, 0, 2, 3]
    kwargs = dict(groups=groups, num_negatives=2, sampling="random", seed=4, show_progress=False)
    huge = mine_hard_negatives(queries, range_max=2**40, **kwargs)
    whole = mine_hard_negatives(queries, range_max=5, **kwargs)  # the window = every item
    assert huge.indices.tolist() == whole.indices.tolist()
    for row, picked in enumerate(huge.indices.tolist()):
        candidates = {j for j in range(5) if groups[j] != groups[row]}
        assert len(set(picked)) == 2 and set(picked) <= candidates
