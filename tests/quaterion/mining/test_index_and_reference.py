"""Mining through a SimilarityIndex equals exact mining; exact mining equals
sentence-transformers' mine_hard_negatives on the same embeddings."""

import pytest
import torch
from datasets import Dataset
from sentence_transformers.util import cos_sim, mine_hard_negatives as st_mine

from quaterion.mining import mine_hard_negatives
from quaterion_models import SimilarityModel
from quaterion_models.index import ModelMismatchError, SimilarityIndex, servable_fingerprint
from tests.quaterion.mining.naive import assert_same_negatives, cosine_matrix
from tests.quaterion_models.index.conftest import make_model


@pytest.mark.parametrize(
    "controls",
    [{}, {"range_min": 2}, {"relative_margin": 0.02}, {"sampling": "random", "range_max": 9}],
)
def test_index_path_equals_exact_mode(tmp_path, controls):
    model = make_model(dim=8)
    generator = torch.Generator().manual_seed(5)
    corpus = torch.randn(60, 8, generator=generator)
    queries = torch.randn(12, 8, generator=generator)
    positives = [[i, i + 12] if i % 2 else [i] for i in range(12)]
    with SimilarityIndex(
        model, path=tmp_path / "idx", distance="cosine", show_progress=False
    ) as index:
        index.add_vectors(corpus.numpy(), ids=list(range(60)))
        via_index = mine_hard_negatives(
            queries,
            index=index,
            positives=positives,
            num_negatives=4,
            exact=True,
            show_progress=False,
            **controls,
        )
    exact = mine_hard_negatives(
        queries, corpus, positives=positives, num_negatives=4, show_progress=False, **controls
    )
    assert_same_negatives(
        via_index, exact.indices, exact.scores, cosine_matrix(queries, corpus), atol=1e-5
    )


def test_index_refetches_when_margins_empty_the_first_hits(tmp_path):
    model = make_model(dim=8)
    generator = torch.Generator().manual_seed(6)
    corpus = torch.randn(80, 8, generator=generator)
    queries = corpus[:5] + 0.01 * torch.randn(5, 8, generator=generator)
    with SimilarityIndex(
        model, path=tmp_path / "idx", distance="cosine", show_progress=False
    ) as index:
        index.add_vectors(corpus.numpy(), ids=list(range(80)))
        # a tight max_score drops the nearest tens of items: the first search is too short
        kwargs = dict(positives=list(range(5)), num_negatives=3, max_score=0.0, show_progress=False)
        via_index = mine_hard_negatives(queries, index=index, **kwargs)
    exact = mine_hard_negatives(queries, corpus, **kwargs)
    assert (exact.indices >= 0).all()
    assert_same_negatives(
        via_index, exact.indices, exact.scores, cosine_matrix(queries, corpus), atol=1e-5
    )


def test_index_positives_missing_from_the_index_are_named(tmp_path):
    model = make_model(dim=8)
    corpus = torch.randn(20, 8, generator=torch.Generator().manual_seed(7))
    with SimilarityIndex(
        model, path=tmp_path / "idx", distance="cosine", show_progress=False
    ) as index:
        index.add_vectors(corpus.numpy(), ids=list(range(20)))
        with pytest.raises(KeyError, match="positive point ids not in the index.*99"):
            mine_hard_negatives(
                corpus[:3],
                index=index,
                positives=[0, 1, 99],
                relative_margin=0.05,
                show_progress=False,
            )
        with pytest.raises(KeyError, match="positive point ids not in the index.*99"):
            # without a margin too: the query's real positive would be mined as a negative
            mine_hard_negatives(corpus[:3], index=index, positives=[0, 1, 99], show_progress=False)
        with pytest.raises(TypeError, match=r"positives\[2\] must be integer point ids"):
            mine_hard_negatives(corpus[:3], index=index, positives=[0, 1, 2.0], show_progress=False)


def test_index_mining_encodes_queries_only_with_the_index_model(tmp_path):
    """Objects encoded by another model than the index's were searched against the index's
    vectors: negatives of a model the index does not hold, without a word."""
    model = make_model(dim=8, seed=0)
    objects = [torch.randn(8, generator=torch.Generator().manual_seed(i)) for i in range(30)]
    positives = [[i] for i in range(6)]
    kwargs = dict(positives=positives, num_negatives=3, show_progress=False)
    with SimilarityIndex(
        model, path=tmp_path / "idx", distance="cosine", show_progress=False
    ) as index:
        index.add(objects, ids=list(range(30)))
        copy_dir = tmp_path / "copy"
        model.save(str(copy_dir))
        same = SimilarityModel.load(str(copy_dir))  # another object, the same servable
        via_model = mine_hard_negatives(objects[:6], model=same, index=index, **kwargs)
        other = make_model(dim=8, seed=1)
        with pytest.raises(ModelMismatchError, match="model=index.model") as info:
            mine_hard_negatives(objects[:6], model=other, index=index, **kwargs)
        assert servable_fingerprint(other) in str(info.value)
        assert servable_fingerprint(model) in str(info.value)
        wider = make_model(dim=9)
        with pytest.raises(ModelMismatchError):
            mine_hard_negatives(objects[:6], model=wider, index=index, **kwargs)
    # independent: the index model's vectors (input * tanh(gates)) mined exactly
    gates = torch.tanh(model.head.gates.detach())
    vectors = torch.stack(objects) * gates
    exact = mine_hard_negatives(vectors[:6], vectors, **kwargs)
    assert_same_negatives(
        via_model, exact.indices, exact.scores, cosine_matrix(vectors[:6], vectors), atol=1e-5
    )


class _Precomputed:
    """Stands in for a SentenceTransformer: returns the given embeddings by text."""

    device = torch.device("cpu")
    similarity = staticmethod(cos_sim)

    def __init__(self, table):
        self.table = table

    class model_card_data:  # noqa: N801 - attribute read by sentence-transformers
        base_model = "precomputed"

    def _encode(self, texts, **kwargs):
        return torch.nn.functional.normalize(
            torch.stack([self.table[t] for t in texts]), dim=1
        ).numpy()

    encode_query = encode_document = _encode

    @staticmethod
    def similarity_pairwise(a, b):
        a, b = torch.as_tensor(a), torch.as_tensor(b)
        return torch.nn.functional.cosine_similarity(a, b)

    def get_embedding_dimension(self):
        return next(iter(self.table.values())).shape[0]


@pytest.mark.parametrize(
    "controls",
    [
        {"num_negatives": 3},
        {"num_negatives": 3, "range_min": 2},
        {"num_negatives": 2, "range_max": 40, "absolute_margin": 0.1, "relative_margin": 0.05},
    ],
)
def test_exact_mode_equals_sentence_transformers(controls):
    generator = torch.Generator().manual_seed(11)
    n = 30
    queries = torch.randn(n, 6, generator=generator)
    answers = queries + 0.8 * torch.randn(n, 6, generator=generator)
    table = {f"q{i}": queries[i] for i in range(n)} | {f"a{i}": answers[i] for i in range(n)}
    dataset = Dataset.from_dict(
        {"query": [f"q{i}" for i in range(n)], "answer": [f"a{i}" for i in range(n)]}
    )
    st = st_mine(dataset, _Precomputed(table), output_format="n-tuple", verbose=False, **controls)
    ours = mine_hard_negatives(
        queries, answers, positives=list(range(n)), show_progress=False, **controls
    )
    k = controls["num_negatives"]
    complete = (ours.indices >= 0).all(1)  # st's n-tuple keeps the rows with k negatives
    expected = [[f"a{j}" for j in row] for row in ours.indices[complete].tolist()]
    got = [[st[f"negative_{c}"][r] for c in range(1, k + 1)] for r in range(len(st))]
    assert got == expected and len(got) > n // 2


@pytest.mark.parametrize("distance", ["euclidean", "manhattan", "dot_product"])
def test_index_mining_scores_by_the_index_distance_and_refuses_another(tmp_path, distance):
    """distance= was ignored with an index: distance='cosine' over a Euclidean index mined by
    Euclidean scores without a word."""
    generator = torch.Generator().manual_seed(8)
    corpus = torch.randn(30, 8, generator=generator)
    queries = torch.randn(6, 8, generator=generator)
    kwargs = dict(positives=[[i] for i in range(6)], num_negatives=3, show_progress=False)
    with SimilarityIndex(
        make_model(dim=8), path=tmp_path / "idx", distance=distance, show_progress=False
    ) as index:
        index.add_vectors(corpus.numpy(), ids=list(range(30)))
        other = "cosine"
        with pytest.raises(ValueError, match=f"distance='{other}'.*built for '{distance}'"):
            mine_hard_negatives(queries, index=index, distance=other, **kwargs)
        given = mine_hard_negatives(queries, index=index, distance=distance, **kwargs)
        default = mine_hard_negatives(queries, index=index, **kwargs)
    exact = mine_hard_negatives(queries, corpus, distance=distance, **kwargs)
    # independent scores on the mining scale: x.y, or 1 / (1 + ||x - y||_p)
    if distance == "dot_product":
        reference = queries @ corpus.T
    else:
        order = 1 if distance == "manhattan" else 2
        reference = 1 / (1 + torch.cdist(queries, corpus, p=order))
    for mined in (given, default):
        assert_same_negatives(mined, exact.indices, exact.scores, reference, atol=1e-4)
