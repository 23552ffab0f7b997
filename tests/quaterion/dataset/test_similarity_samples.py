import dataclasses
import pickle

import pytest

from quaterion.dataset import SimilarityGroupSample, SimilarityPairSample
from quaterion.dataset.similarity_samples import SimilaritySample


def test_pair_sample_defaults_and_positional_order():
    sample = SimilarityPairSample("a", "b")
    assert (sample.obj_a, sample.obj_b, sample.score, sample.subgroup) == ("a", "b", 1.0, 0)
    assert SimilarityPairSample("a", "b", 0.5, 2) == SimilarityPairSample(
        obj_a="a", obj_b="b", score=0.5, subgroup=2
    )
    assert [f.name for f in dataclasses.fields(SimilarityPairSample)] == [
        "obj_a",
        "obj_b",
        "score",
        "subgroup",
    ]


def test_group_sample_requires_both_fields():
    with pytest.raises(TypeError):
        SimilarityGroupSample("orange")  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        SimilarityGroupSample()  # type: ignore[call-arg]
    assert SimilarityGroupSample("orange", 3) == SimilarityGroupSample(obj="orange", group=3)


def test_samples_replace_and_pickle():
    pair = SimilarityPairSample("a", "b", 0.0, 1)
    assert dataclasses.replace(pair, obj_a=None) == SimilarityPairSample(None, "b", 0.0, 1)
    group = SimilarityGroupSample("x", 4)
    assert pickle.loads(pickle.dumps(pair)) == pair
    assert pickle.loads(pickle.dumps(group)) == group
    assert pair != SimilarityPairSample("a", "b", 1.0, 1)


def test_similarity_sample_alias_is_the_union():
    assert set(SimilaritySample.__args__) == {SimilarityGroupSample, SimilarityPairSample}
